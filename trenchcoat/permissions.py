"""The contract's permission table, read from the protos (``proto/trenchcoat/v1/auth.proto``:
each method's ``(trenchcoat.v1.callers)`` options name the roles that may call it), and the
one check the server interceptor makes on every call over mutual TLS. Health and
reflection answer any caller with a certificate of the cluster CA; a method the table does
not name answers no one."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

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
METRICS_READERS = frozenset({"prometheus", "admin"})
"""Roles that may read a process's /metrics (over TLS; /readyz and /livez answer anyone)."""
HTTP_TWINS = {"photo": "/trenchcoat.v1.CacheService/Read", "needle read": "/trenchcoat.v1.StoreService/ReadNeedle"}
"""The HTTP ports that mirror a gRPC method (a cache's photo port, a store's needle port):
each answers the roles the table lets call its twin."""


def http_callers(port: str) -> frozenset[str]:
    """The roles HTTP port ``port`` (of ``HTTP_TWINS``) answers."""
    return contract()[HTTP_TWINS[port]]


def _methods() -> Iterator[tuple[str, Any]]:
    """Every method of the contract: its ``/package.Service/Method`` name and descriptor
    (whose options the generated stubs type too narrowly to index by our extensions)."""
    for module in (cache_pb2, directory_pb2, f4_pb2, feed_pb2, router_pb2, store_pb2, transformer_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                yield f"/{service.full_name}/{method.name}", method


@functools.cache
def contract() -> Mapping[str, frozenset[str]]:
    """``/package.Service/Method`` -> the roles that may call it, for every method of the contract."""
    return {name: frozenset(method.GetOptions().Extensions[auth_pb2.callers]) for name, method in _methods()}


USER_FACING = frozenset({"app", "admin"})
"""Roles that call for users: their calls of a method that acts for one carry its token."""


@functools.cache
def acting_fields() -> Mapping[str, tuple[str, ...]]:
    """``/package.Service/Method`` -> the request field naming the user it acts for (a path
    of field names), for the methods that declare one (``(trenchcoat.v1.acts_for)``)."""
    fields = ((name, method.GetOptions().Extensions[auth_pb2.acts_for]) for name, method in _methods())
    return {name: tuple(field.split(".")) for name, field in fields if field}


def acting_for(request: Any, path: tuple[str, ...]) -> object:
    """The value at ``path`` in ``request``; None when a message on the way is not set (a
    malformed request, which the service refuses as such: an upload not led by its header)."""
    for name in path[:-1]:
        if not request.HasField(name):
            return None
        request = getattr(request, name)
    return getattr(request, path[-1])


def check_user(method: str, path: tuple[str, ...], request: object, subject: int) -> None:
    """Raises PermissionDenied unless the request acts for the token's ``subject``."""
    named = acting_for(request, path)
    if named is not None and named != subject:
        raise PermissionDenied(f"the user token acts for user {subject}, and {method} asks to act for user "
                               f"{named} ({'.'.join(path)}): a token may act only for its own user")


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


def stand_in_role(method: str, table: Mapping[str, frozenset[str]] | None = None) -> str:
    """The role a stand-in caller presents for ``method``: admin where the table lets the
    admin call it, else the first role of ``tls.ROLES`` it names (admin for a method the
    contract does not know)."""
    roles = allowed(method, contract() if table is None else table)
    if not roles or "admin" in roles:
        return "admin"
    return next(role for role in tls.ROLES if role in roles)


class StandIn(tls.ClientTls):
    """Every identity of a TLS directory, for a process that stands in for the cluster's
    services (the test suite and the benchmarks drive a store as its router would, a
    directory as its stores do): each call presents the role the permission table lets call
    its method (``stand_in_role``); channels not made for one method (health checks) present
    the admin's. Only a holder of every identity's key can be one: in a cluster, whoever
    holds the CA's key."""

    def __init__(self, directory: Path) -> None:
        super().__init__(tls.Identity(directory, "admin"))
        self.directory = directory

    def for_role(self, role: str) -> tls.ClientTls:
        return tls.ClientTls(tls.Identity(self.directory, role))


def table_lines() -> list[str]:
    """The permission table as a person reads it: each method, the roles that may call it,
    and the request field it acts for (a user token's subject) where it declares one."""
    acting = acting_fields()
    lines = []
    for method, roles in sorted(contract().items()):
        service, _, name = method.lstrip("/").rpartition("/")
        field = acting.get(method)
        lines.append(f"{service.rpartition('.')[2]}.{name}: {', '.join(sorted(roles))}"
                     + (f"  (acts for {'.'.join(field)})" if field else ""))
    table = contract()
    return [*lines, f"{', '.join(sorted(OPEN_SERVICES))}: any certificate of the cluster CA",
            *(f"HTTP {port} port: {', '.join(sorted(table[method]))}  (as {method.rpartition('.')[2]})"
              for port, method in HTTP_TWINS.items()),
            f"HTTP /metrics (every process): {', '.join(sorted(METRICS_READERS))}; /readyz, /livez: anyone over TLS"]
