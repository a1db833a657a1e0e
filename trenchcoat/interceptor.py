"""The one server interceptor every service runs behind.

For each RPC it records Prometheus RED metrics (requests by status code, latency,
in-flight) and turns the typed errors of ``trenchcoat.errors`` into gRPC status codes
(with the error's class name in the trailing metadata, which ``trenchcoat.rpc`` turns back
into the same class), so servicers never map errors by hand and clients never see UNKNOWN. An unexpected exception
is logged with its traceback and answered INTERNAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self

import grpc
from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

from trenchcoat import permissions, tls, tokens
from trenchcoat.errors import WIRE_NAME_KEY, InvalidArgument, TrenchcoatError, Unauthenticated, wire_name

log = logging.getLogger(__name__)

# *_created series double every counter for no use here.
disable_created_metrics()

REQUESTS = Counter(
    "trenchcoat_grpc_requests_total",
    "gRPC requests handled, by method and status code.",
    ["service", "method", "code"],
)
LATENCY = Histogram(
    "trenchcoat_grpc_request_duration_seconds",
    "gRPC request latency from arrival to the last response message.",
    ["service", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_FLIGHT = Gauge(
    "trenchcoat_grpc_in_flight_requests",
    "gRPC requests being handled now.",
    ["service", "method"],
)


def status_for(error: TrenchcoatError) -> grpc.StatusCode:
    """The gRPC status code of a typed error."""
    return grpc.StatusCode[error.status]


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Metrics and error mapping around every handler of a server. A method's wrapped
    handler is built on its first call and reused: the per-call cost is the RPC's own."""

    def __init__(self, permissions: Mapping[str, frozenset[str]] | None = None,
                 users: tokens.Verifier | None = None) -> None:
        """``permissions``: the table every call is checked against (the caller's role, from
        its verified certificate); None on a plaintext server, which has no callers' roles.
        ``users``: what checks the user tokens of calls that act for a user (with
        ``permissions`` only)."""
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        self._permissions = permissions
        self._users = users

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        name = handler_call_details.method
        wrapped = self._wrapped.get(name)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return None
            metrics = _Metrics(name)
            if self._permissions is not None:
                metrics.allowed = permissions.allowed(name, self._permissions)
                metrics.acts_for = permissions.acting_fields().get(name)
                metrics.users = self._users
            wrapped = self._wrapped[name] = _wrap(handler, metrics)
        return wrapped


def _wrap(handler: grpc.RpcMethodHandler[Any, Any], metrics: _Metrics) -> grpc.RpcMethodHandler[Any, Any]:
    # Requests are decoded inside the wrapper, so an undecodable message is answered
    # INVALID_ARGUMENT (grpc itself would say UNKNOWN).
    decode = handler.request_deserializer or (lambda raw: raw)
    encode = handler.response_serializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary(handler.unary_unary, metrics, decode, stream_in=False), response_serializer=encode)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary(handler.stream_unary, metrics, decode, stream_in=True), response_serializer=encode)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream(handler.unary_stream, metrics, decode, stream_in=False), response_serializer=encode)
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream(handler.stream_stream, metrics, decode, stream_in=True), response_serializer=encode)
    return handler


class _Metrics:
    """One method's metric children, resolved once (a labels() lookup per call is
    measurable at thousands of calls a second)."""

    def __init__(self, full_method: str) -> None:
        service, _, method = full_method.lstrip("/").rpartition("/")
        self.names = (service, method)
        self.names_full = full_method
        self.allowed: frozenset[str] | None = None
        """The roles that may call it (None: not checked, a plaintext server)."""
        self.acts_for: tuple[str, ...] | None = None
        """The request field naming the user it acts for, checked against the user token."""
        self.users: tokens.Verifier | None = None
        self.in_flight = IN_FLIGHT.labels(service, method)
        self.latency = LATENCY.labels(service, method)
        self._requests: dict[grpc.StatusCode, Any] = {}

    def requests(self, code: grpc.StatusCode) -> Any:
        child = self._requests.get(code)
        if child is None:
            child = self._requests[code] = REQUESTS.labels(*self.names, code.name)
        return child


class BadRequest(InvalidArgument):
    """Raised when request bytes do not decode as the method's request message."""


def _decoded(decode: Callable[[bytes], Any], raw: Any) -> Any:
    try:
        return decode(raw)
    except Exception as exc:  # noqa: BLE001 - whatever fails to decode the client's bytes is the client's fault
        raise BadRequest(f"request does not decode: {exc}") from None


async def _decoded_stream(decode: Callable[[bytes], Any], raw_iterator: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for raw in raw_iterator:
        yield _decoded(decode, raw)


async def _chain(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for request in rest:
        yield request


REFUSED_DRAIN_S = 2.0
"""Longest a refused client-streaming call's messages are read and dropped before the refusal."""


class _Call:
    """One RPC's bookkeeping, as an async context manager around the handler: the
    in-flight gauge, the latency, the final code, and the mapping of errors to status."""

    def __init__(self, metrics: _Metrics, context: grpc.aio.ServicerContext) -> None:
        self.metrics = metrics
        self.context = context
        self.start = 0.0

    async def __aenter__(self) -> Self:
        self.start = time.perf_counter()
        self.metrics.in_flight.inc()
        return self

    async def admit_stream(self, raw: AsyncIterator[Any], decode: Callable[[bytes], Any]) -> AsyncIterator[Any]:
        """``admit`` for a call the client streams, the user check on its first message;
        returns the decoded requests. A refused caller's messages are read and dropped
        first (at most ``REFUSED_DRAIN_S``), so the client has finished writing when the
        refusal reaches it. grpc's asyncio client reports a write that fails after the
        server's answer as INTERNAL in place of that answer (grpc/grpc#36066): a refused
        upload would otherwise read as a server fault."""
        requests = _decoded_stream(decode, raw)
        try:
            role = self.admit()
            if self.metrics.acts_for is not None and role in permissions.USER_FACING:
                first = await anext(requests, None)
                if first is not None:
                    self.admit_user(role, first)
                    return _chain(first, requests)
        except TrenchcoatError:
            with contextlib.suppress(TimeoutError, grpc.aio.AioRpcError):
                async with asyncio.timeout(REFUSED_DRAIN_S):
                    async for _ in raw:
                        pass
            raise
        return requests

    def admit(self) -> str | None:
        """PERMISSION_DENIED unless the caller's role may call the method (first thing in
        the call, inside its bookkeeping, so the refusal is counted and mapped); returns
        the role."""
        if self.metrics.allowed is None:
            return None
        role = tls.role_of(self.context)
        permissions.check(self.metrics.names_full, role, self.metrics.allowed)
        return role

    async def admitted(self, raw: Any, decode: Callable[[bytes], Any], stream_in: bool) -> Any:
        """The call's request (or requests), decoded, once the caller is let in."""
        if stream_in:
            return await self.admit_stream(raw, decode)
        role = self.admit()
        request = _decoded(decode, raw)
        self.admit_user(role, request)
        return request

    def admit_user(self, role: str | None, request: Any) -> None:
        """For a method that acts for a user, called by a user-facing role: UNAUTHENTICATED
        without a valid user token, PERMISSION_DENIED when the request acts for another user."""
        path = self.metrics.acts_for
        if path is None or role not in permissions.USER_FACING:
            return
        if self.metrics.users is None:
            raise Unauthenticated(f"{self.metrics.names_full} acts for a user, and this server checks no user tokens")
        subject = self.metrics.users.subject(self.context.invocation_metadata())
        permissions.check_user(self.metrics.names_full, path, request, subject)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        if exc is None or isinstance(exc, grpc.aio.AbortError):
            self._finish(self.context.code() or grpc.StatusCode.OK)
        elif isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            self._finish(grpc.StatusCode.CANCELLED)
        elif isinstance(exc, TrenchcoatError):
            code = status_for(exc)
            self._finish(code)
            # The class travels too, so the client's edge raises the same one (trenchcoat.rpc).
            await self.context.abort(code, str(exc) or type(exc).__name__,
                                     trailing_metadata=((WIRE_NAME_KEY, wire_name(exc)),))
        elif isinstance(exc, Exception) and self.context.code() not in (None, grpc.StatusCode.OK):
            # The handler chose a status before raising (the generated base servicers set
            # UNIMPLEMENTED, then raise NotImplementedError): keep its choice.
            code = self.context.code()
            self._finish(code)
            await self.context.abort(code, self.context.details() or str(exc))
        elif isinstance(exc, Exception):
            log.error("unexpected error in %s/%s", *self.metrics.names, exc_info=exc)
            self._finish(grpc.StatusCode.INTERNAL)
            await self.context.abort(
                grpc.StatusCode.INTERNAL,
                f"internal error ({type(exc).__name__}) in {self.metrics.names[1]}; see the server log",
            )
        else:
            self._finish(grpc.StatusCode.CANCELLED)
        return False

    def _finish(self, code: grpc.StatusCode) -> None:
        self.metrics.in_flight.dec()
        self.metrics.latency.observe(time.perf_counter() - self.start)
        self.metrics.requests(code).inc()


def _wrap_unary(
    behavior: Callable[..., Any], metrics: _Metrics, decode: Callable[[bytes], Any], *, stream_in: bool
) -> Callable[..., Any]:
    async def wrapper(raw: Any, context: grpc.aio.ServicerContext) -> Any:
        async with _Call(metrics, context) as call:
            return await behavior(await call.admitted(raw, decode, stream_in), context)

    return wrapper


def _wrap_stream(
    behavior: Callable[..., Any], metrics: _Metrics, decode: Callable[[bytes], Any], *, stream_in: bool
) -> Callable[..., Any]:
    if not inspect.isasyncgenfunction(behavior):
        # Handlers that write with context.write() and return None.
        return _wrap_unary(behavior, metrics, decode, stream_in=stream_in)

    async def wrapper(raw: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async with _Call(metrics, context) as call:
            async for response in behavior(await call.admitted(raw, decode, stream_in), context):
                yield response

    return wrapper
