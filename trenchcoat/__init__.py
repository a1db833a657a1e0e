"""trenchcoat: the chassis every service is built on, in two parts.

The libraries, which every service process imports:
- the contract's shapes: ``ids`` (the 64-bit media_id), ``urls`` (photo URLs), ``needle_ref``
  and ``needle`` (a needle's reference and byte layout), ``media_types``, ``rendition_keys``,
  ``media_facts``, ``f4_types``, ``store_types``, ``transforms``;
- the process: ``config`` (the cluster config, a package), ``errors`` (typed errors and their
  status codes), ``server``, ``interceptor``, ``httpsite`` and ``rpc`` (the gRPC boot and the
  one client edge), ``workers`` (background loops), ``lograte``, ``kube``, ``siblings``;
- one of each mechanism: ``backoff``, ``retry`` (until a deadline), ``failover`` (across
  endpoints), ``choice`` (the write volume), ``locators`` (NeedleLocator <-> NeedleRef),
  ``singleflight``;
- the dependencies: ``postgres``, ``pgmigrate``, ``redisio``, ``etcd``, ``jobqueue``,
  ``rendition_jobs``;
- ``clients`` (a typed client of every service) and ``v1`` (generated stubs of
  ``proto/trenchcoat/v1``).

The operator's tools, ``ops``: the ``trenchcoat`` command, the local launcher and demo,
the dashboard and k8s generators, the CDN runner and process management. The libraries
never import them.
"""

__version__ = "0.1.0"
