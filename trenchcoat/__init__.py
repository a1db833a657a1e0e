"""trenchcoat: the chassis every service is built on, in two parts.

The libraries, which every service process imports: ``ids`` (the 64-bit media_id),
``urls`` (photo URLs), ``needle_ref`` and ``needle`` (a needle's reference and byte
layout), ``config`` (the cluster config), ``errors`` (typed errors and their status
codes), ``server``, ``interceptor`` and ``rpc`` (the gRPC boot and the one client edge),
``workers`` and ``backoff`` (background loops), ``postgres``, ``redisio``, ``etcd`` and
``jobqueue`` (the dependencies), ``clients`` (a typed client of every service) and ``v1``
(generated stubs of ``proto/trenchcoat/v1``).

The operator's tools, ``ops``: the ``trenchcoat`` command, the local launcher and demo,
the dashboard and k8s generators, the CDN runner and process management. The libraries
never import them.
"""

__version__ = "0.1.0"
