"""The one RPC edge: every gRPC call a trenchcoat process makes goes out through here.

Two jobs, done once:

- **Channels.** ``ChannelPool`` keeps one channel per address for the whole process (one
  per event loop), all configured alike: message-size limits big enough for a 64 MiB
  blob, keepalive pings so a peer that stops answering (paused, partitioned) breaks the
  calls and streams on it instead of leaving them hanging, and a reconnect backoff
  capped at a couple of seconds so a restarted peer is used again promptly (gRPC's own
  cap is two minutes). The servers accept those pings (``SERVER_OPTIONS``).
- **Errors.** A failed call becomes the typed error the other side raised
  (``trenchcoat.errors.from_wire``: the same class, its message kept, the remote named);
  transport failures become their status's class (``Unavailable``, ``DeadlineExceeded``,
  ``Cancelled``). Callers catch typed errors; a caller that deliberately reinterprets one
  (the upload path treating any replica failure as a failed replica, the cache failing
  over on DATA_LOSS) does it in one visible ``except`` at its call site.

The typed clients built on this edge live beside it: ``store_client`` (the Haystack
store), ``cache_client``, ``directory_client`` and ``media_client`` (the router's
MediaService). Nothing else in the tree touches ``grpc.aio.AioRpcError``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from pathlib import Path
from typing import Any, Self, TypeVar

import grpc
from grpc_health.v1 import health_pb2

from trenchcoat import permissions, tokens
from trenchcoat.errors import WIRE_NAME_KEY, TrenchcoatError, from_wire
from trenchcoat.tls import ClientTls, TlsError

MAX_MESSAGE_BYTES = 80 * 1024 * 1024
"""Largest message a process sends or accepts: a 64 MiB blob plus framing."""

KEEPALIVE_TIME_MS = 10_000
"""A channel pings its peer after this long without traffic."""
KEEPALIVE_TIMEOUT_MS = 5_000
"""A ping unanswered for this long breaks the connection (and every call on it)."""
MAX_RECONNECT_BACKOFF_MS = 2_000
"""Longest wait between attempts to reach a peer that is down."""
MIN_CONNECT_TIMEOUT_MS = 5_000
"""Least time one attempt to connect is given (TCP, then the TLS handshake): gRPC's
``grpc.min_reconnect_backoff_ms``, which despite its name bounds an attempt, not the pause
between attempts (``initial_reconnect_backoff_ms``). At 200 ms, handshakes on a busy
machine were cut off ("Handshake read failed (Endpoint closing)") and failed the call."""

CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", MIN_CONNECT_TIMEOUT_MS),
    ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
)

SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Accept the clients' keepalive pings (by default a server answers pings more often
    # than every five minutes with GOAWAY "too_many_pings").
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_TIME_MS // 2),
    ("grpc.http2.max_ping_strikes", 0),
    # A taken port must fail loudly, not be shared.
    ("grpc.so_reuseport", 0),
)

T = TypeVar("T")
Request = TypeVar("Request")
TLS_RECHECK_S = 5.0
"""How often a channel pool looks at its certificate files for a rotation."""
RETIRED_CLOSE_S = 60.0
"""How long channels made with a rotated-out certificate stay open for calls under way."""


_process_tls: ClientTls | None = None
"""This process's identity for every channel pool made without one (``use_tls``)."""


def use_tls(tls: ClientTls | None, *, user_keys: Path | None = None) -> None:
    """Sets the identity every ``ChannelPool`` of this process presents (mutual TLS), or
    plaintext (None). A service sets it at start from ``cluster.tls_dir``
    (``server.load_config``); the CLI as the ``admin`` role. ``user_keys``: a directory
    holding ``users.key``, from which the process mints the token of any user its calls act
    for (the operator's tools, the tests); without it they carry none (``tokens.use``)."""
    global _process_tls
    _process_tls = tls
    tokens.use(tokens.Minter(user_keys).token_for if user_keys is not None else None)


def process_tls() -> ClientTls | None:
    return _process_tls


class ChannelPool:
    """One channel per address, shared by every client of a process (or of one
    ``async with`` block in a command-line tool). Channels belong to the event loop that
    created them; ``close`` closes them all."""

    def __init__(self, options: Iterable[tuple[str, int]] = CHANNEL_OPTIONS, *,
                 tls: ClientTls | bool | None = True) -> None:
        """``tls``: the identity presented on every channel (mutual TLS): True (the
        default) for the process's (``use_tls``), False for plaintext; its
        files are looked at again every ``TLS_RECHECK_S``, and a rotated certificate is used
        by the channels made from then on (those open finish their calls and close)."""
        self._options = list(options)
        self._channels: dict[tuple[str | None, str], grpc.aio.Channel] = {}
        self._stubs: dict[tuple[Callable[[grpc.aio.Channel], Any], str, str | None], Any] = {}
        self._role_credentials: dict[str, grpc.ChannelCredentials] = {}
        self._tls: ClientTls | None = _process_tls if tls is True else (tls or None)
        self._credentials = self._tls.credentials() if self._tls is not None else None
        self._stamp = self._tls.stamp() if self._tls is not None else ()
        self._checked = time.monotonic()
        self._retired: list[grpc.aio.Channel] = []

    def channel(self, address: str, role: str | None = None) -> grpc.aio.Channel:
        """The pooled channel to ``address``; ``role``: presenting that identity of a
        stand-in's (``permissions.StandIn``) rather than the pool's own."""
        if self._tls is not None and time.monotonic() - self._checked > TLS_RECHECK_S:
            self._recheck()
        channel = self._channels.get((role, address))
        if channel is None:
            credentials = self._credentials if role is None else self._credentials_of(role)
            if credentials is not None:
                channel = grpc.aio.secure_channel(address, credentials, options=self._options)
            else:
                channel = grpc.aio.insecure_channel(address, options=self._options)
            self._channels[(role, address)] = channel
        return channel

    def _credentials_of(self, role: str) -> grpc.ChannelCredentials:
        if not isinstance(self._tls, permissions.StandIn):
            raise TypeError(f"a channel pool presents one identity; only a stand-in's may choose {role!r}")
        credentials = self._role_credentials.get(role)
        if credentials is None:
            credentials = self._role_credentials[role] = self._tls.for_role(role).credentials()
        return credentials

    def _recheck(self) -> None:
        assert self._tls is not None
        self._checked = time.monotonic()
        stamp = self._tls.stamp()
        if stamp == self._stamp:
            return
        try:
            credentials = self._tls.credentials()
        except (TlsError, OSError):
            return  # half-written (a rotation under way): looked at again shortly
        self._stamp, self._credentials = stamp, credentials
        self._role_credentials.clear()
        old = list(self._channels.values())
        self._retired += old
        self._channels.clear()
        self._stubs.clear()
        # Calls under way on the old channels finish; the channels close a while after.
        asyncio.get_running_loop().call_later(RETIRED_CLOSE_S, lambda: asyncio.ensure_future(self._close_retired(old)))

    async def _close_retired(self, channels: list[grpc.aio.Channel]) -> None:
        self._retired = [c for c in self._retired if c not in channels]
        await asyncio.gather(*(c.close(grace=None) for c in channels), return_exceptions=True)

    def stub(self, stub_class: Callable[[grpc.aio.Channel], T], address: str) -> T:
        """The generated stub on the pooled channel to ``address`` (made once: a stub builds a
        callable per method, ~10 µs, too much to pay on every read)."""
        return self._stub(stub_class, address, None)

    def _stub(self, stub_class: Callable[[grpc.aio.Channel], T], address: str, role: str | None) -> T:
        stub = self._stubs.get((stub_class, address, role))
        if stub is None:
            if role is None and isinstance(self._tls, permissions.StandIn):
                stub = _StandInStub(self, stub_class, address)
            else:
                stub = stub_class(self.channel(address, role))
            self._stubs[(stub_class, address, role)] = stub
        return stub  # type: ignore[return-value]

    async def close(self) -> None:
        self._stubs.clear()
        channels, self._channels = [*self._channels.values(), *self._retired], {}
        self._retired = []
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _StandInStub:
    """A stub of a stand-in's pool: each method is called on a channel presenting the role
    the permission table lets call it."""

    def __init__(self, pool: ChannelPool, stub_class: Callable[[grpc.aio.Channel], Any], address: str) -> None:
        self._pool, self._stub_class, self._address = pool, stub_class, address
        self._paths = _method_paths(stub_class)

    def __getattr__(self, name: str) -> Any:
        path = self._paths.get(name)
        if path is None:
            raise AttributeError(name)
        stub = self._pool._stub(self._stub_class, self._address, permissions.stand_in_role(path))
        return getattr(stub, name)


class _PathRecorder:
    """A channel whose "calls" are the full method names a generated stub asks it for."""

    def _record(self, path: str, *args: object, **kwargs: object) -> str:
        return path

    unary_unary = unary_stream = stream_unary = stream_stream = _record


@functools.cache
def _method_paths(stub_class: Callable[[Any], Any]) -> dict[str, str]:
    """A generated stub's attribute names and the full ``/package.Service/Method`` name of each."""
    stub = stub_class(_PathRecorder())
    return {name: value for name, value in vars(stub).items() if isinstance(value, str) and value.startswith("/")}


def error_from(exc: grpc.aio.AioRpcError, remote: str) -> TrenchcoatError:
    """The typed error a failed call stands for (the sender's class when it named one)."""
    name = ""
    for key, value in exc.trailing_metadata() or ():
        if key == WIRE_NAME_KEY:
            name = value if isinstance(value, str) else value.decode()
    return from_wire(exc.code().name, exc.details() or exc.code().name, name, remote)


Metadata = tuple[tuple[str, str], ...]


async def unary(method: Callable[..., Any], request: Any, *, remote: str, timeout: float | None,
                metadata: Metadata = ()) -> Any:
    """One request, one response: ``await unary(stub.Method, request, remote=..., timeout=...)``;
    ``metadata``: the call's (a user token, ``trenchcoat.tokens.metadata_for``)."""
    try:
        return await method(request, timeout=timeout, metadata=metadata or None)
    except grpc.aio.AioRpcError as exc:
        raise error_from(exc, remote) from None


async def stream_in(method: Callable[..., Any], requests: AsyncIterable[Any] | Iterable[Any], *,
                    remote: str, timeout: float | None, metadata: Metadata = ()) -> Any:
    """A stream of requests, one response (an upload)."""
    try:
        return await method(requests, timeout=timeout, metadata=metadata or None)
    except grpc.aio.AioRpcError as exc:
        raise error_from(exc, remote) from None


async def stream_out(method: Callable[..., Any], request: Any, *, remote: str,
                     timeout: float | None) -> AsyncGenerator[Any, None]:
    """One request, a stream of responses. Leaving the loop early cancels the call."""
    call = method(request, timeout=timeout)
    try:
        async for response in call:
            yield response
    except grpc.aio.AioRpcError as exc:
        raise error_from(exc, remote) from None
    finally:
        call.cancel()


HEALTH_CHECK = "/grpc.health.v1.Health/Check"


async def health(pool: ChannelPool, address: str, *, remote: str, timeout: float, service: str = "") -> str:
    """The standard health status of a server (or one of its services): "SERVING",
    "NOT_SERVING", ... Raises the call's typed error when it does not answer."""
    check = pool.channel(address).unary_unary(
        HEALTH_CHECK, request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString)
    reply = await unary(check, health_pb2.HealthCheckRequest(service=service), remote=remote, timeout=timeout)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def health_blocking(address: str, *, timeout: float, service: str = "") -> str:
    """``health`` for code without an event loop (the launcher's readiness probes): the
    status name, or "UNREACHABLE" when nothing answers, or the failure's status name."""
    with (grpc.secure_channel(address, _process_tls.credentials()) if _process_tls is not None
          else grpc.insecure_channel(address)) as channel:
        check = channel.unary_unary(
            HEALTH_CHECK, request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        try:
            reply = check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code()  # a failed call is also a grpc.Call
            return "UNREACHABLE" if code == grpc.StatusCode.UNAVAILABLE else str(code.name)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
