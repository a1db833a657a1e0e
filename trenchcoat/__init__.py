"""trenchcoat: the shared chassis of every service.

``ids`` (the 64-bit media_id), ``urls`` (photo URLs), ``config`` (the cluster config),
``errors`` (typed errors and their status codes), ``server`` and ``interceptor`` (the gRPC
service boot), ``procs`` and ``launcher`` (the local cluster), ``cli`` (the ``trenchcoat``
command) and ``v1`` (generated stubs of ``proto/trenchcoat/v1``).
"""

__version__ = "0.1.0"
