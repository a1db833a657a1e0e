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
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from typing import Any, Self, TypeVar

import grpc
from grpc_health.v1 import health_pb2

from trenchcoat.errors import WIRE_NAME_KEY, TrenchcoatError, from_wire

MAX_MESSAGE_BYTES = 80 * 1024 * 1024
"""Largest message a process sends or accepts: a 64 MiB blob plus framing."""

KEEPALIVE_TIME_MS = 10_000
"""A channel pings its peer after this long without traffic."""
KEEPALIVE_TIMEOUT_MS = 5_000
"""A ping unanswered for this long breaks the connection (and every call on it)."""
MAX_RECONNECT_BACKOFF_MS = 2_000
"""Longest wait between attempts to reach a peer that is down."""

CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
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


class ChannelPool:
    """One channel per address, shared by every client of a process (or of one
    ``async with`` block in a command-line tool). Channels belong to the event loop that
    created them; ``close`` closes them all."""

    def __init__(self, options: Iterable[tuple[str, int]] = CHANNEL_OPTIONS) -> None:
        self._options = list(options)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[tuple[Callable[[grpc.aio.Channel], Any], str], Any] = {}

    def channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(address, options=self._options)
        return channel

    def stub(self, stub_class: Callable[[grpc.aio.Channel], T], address: str) -> T:
        """The generated stub on the pooled channel to ``address`` (made once: a stub builds a
        callable per method, ~10 µs, too much to pay on every read)."""
        stub = self._stubs.get((stub_class, address))
        if stub is None:
            stub = self._stubs[(stub_class, address)] = stub_class(self.channel(address))
        return stub

    async def close(self) -> None:
        self._stubs.clear()
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def error_from(exc: grpc.aio.AioRpcError, remote: str) -> TrenchcoatError:
    """The typed error a failed call stands for (the sender's class when it named one)."""
    name = ""
    for key, value in exc.trailing_metadata() or ():
        if key == WIRE_NAME_KEY:
            name = value if isinstance(value, str) else value.decode()
    return from_wire(exc.code().name, exc.details() or exc.code().name, name, remote)


async def unary(method: Callable[..., Any], request: Any, *, remote: str, timeout: float | None) -> Any:
    """One request, one response: ``await unary(stub.Method, request, remote=..., timeout=...)``."""
    try:
        return await method(request, timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        raise error_from(exc, remote) from None


async def stream_in(method: Callable[..., Any], requests: AsyncIterable[Any] | Iterable[Any], *,
                    remote: str, timeout: float | None) -> Any:
    """A stream of requests, one response (an upload)."""
    try:
        return await method(requests, timeout=timeout)
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
    with grpc.insecure_channel(address) as channel:
        check = channel.unary_unary(
            HEALTH_CHECK, request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        try:
            reply = check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code()  # a failed call is also a grpc.Call
            return "UNREACHABLE" if code == grpc.StatusCode.UNAVAILABLE else str(code.name)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
