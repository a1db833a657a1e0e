"""The contract's permission table, read from the protos (``proto/trenchcoat/v1/auth.proto``:
each method's ``(trenchcoat.v1.callers)`` options name the roles that may call it), and the
one check the server interceptor makes on every call over mutual TLS. Health and
reflection answer any caller with a certificate of the cluster CA; a method the table does
not name answers no one."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from trenchcoat import tls
from trenchcoat.errors import PermissionDenied
from trenchcoat.v1 import (
    auth_pb2,
    cache_pb2,
    directory_pb2,
    f4_pb2,
    feed_pb2,
    router_pb2,
    store_pb2,
    transformer_pb2,
)

OPEN_SERVICES = frozenset({"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                           "grpc.reflection.v1.ServerReflection"})
"""Services any caller with a cluster certificate may call."""
EVERY_ROLE = frozenset(tls.ROLES)


@functools.cache
def contract() -> Mapping[str, frozenset[str]]:
    """``/package.Service/Method`` -> the roles that may call it, for every method of the contract."""
    table: dict[str, frozenset[str]] = {}
    for module in (cache_pb2, directory_pb2, f4_pb2, feed_pb2, router_pb2, store_pb2, transformer_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                callers = method.GetOptions().Extensions[auth_pb2.callers]
                table[f"/{service.full_name}/{method.name}"] = frozenset(callers)
    return table


def allowed(method: str, table: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """The roles that may call ``method`` (a full ``/package.Service/Method`` name)."""
    service = method.lstrip("/").rpartition("/")[0]
    if service in OPEN_SERVICES:
        return EVERY_ROLE
    return table.get(method, frozenset())


def check(method: str, role: str | None, roles: frozenset[str]) -> None:
    """Raises PermissionDenied unless ``role`` is one of ``roles``."""
    if role is None:
        raise PermissionDenied(f"{method} needs a certificate naming a trenchcoat role; the caller's names none")
    if role not in roles:
        who = ", ".join(sorted(roles)) or "no role"
        raise PermissionDenied(f"role {role!r} may not call {method} (it answers {who})")
