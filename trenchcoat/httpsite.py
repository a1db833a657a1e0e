"""An HTTP listener run as a service worker (``trenchcoat.server``): the cache's photo
URLs, a store's needle reads, every process's /metrics. Bound in ``start`` (a taken port stops the process at
once with a message naming it), closed on shutdown after in-flight requests finish.
Port 0 takes a free port; ``port`` says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from trenchcoat.tls import HttpServerTls, role_of_peer

log = logging.getLogger(__name__)


TLS_RECHECK_S = 5.0
"""How often a listener over TLS looks at its certificate files for a rotation."""


class HttpSite:
    def __init__(self, app: web.Application, host: str, port: int, *, what: str,
                 tls: HttpServerTls | None = None, callers: frozenset[str] | None = None,
                 open_paths: frozenset[str] = frozenset()) -> None:
        """``tls``: served over TLS only, every client presenting a certificate of the
        cluster CA; ``callers``: the roles those certificates may name (403 for another,
        naming it), as the permission table says for the gRPC method the listener mirrors;
        ``open_paths``: answered to any client over TLS (probes, which hold no certificate)."""
        if tls is not None:
            app.middlewares.append(_only(callers or frozenset(), what, open_paths))
        self._runner = web.AppRunner(app, access_log=None)
        self._host, self._port = host, port
        self._what = what
        self._tls = tls
        self._stopped: asyncio.Event | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one chosen when 0 was asked for), once started."""
        return self._port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True,
                           ssl_context=self._tls.context if self._tls is not None else None)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(f"cannot bind the {self._what} HTTP port {self._host}:{self._port} (in use?): {exc}") \
                from None
        if self._port == 0:
            self._port = self._runner.addresses[0][1]
        self._stopped = asyncio.Event()
        log.info("%s served on %s://%s:%d/", self._what, "https" if self._tls else "http", self._host, self._port)

    async def run(self) -> None:
        assert self._stopped is not None, "start() first"
        if self._tls is None:
            await self._stopped.wait()
            return
        while not self._stopped.is_set():  # a rotated certificate taken up, no restart
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), TLS_RECHECK_S)
            if self._tls.refresh():
                log.info("%s: took up a rotated certificate", self._what)

    async def shutdown(self) -> None:
        if self._stopped is not None:
            self._stopped.set()
        await self._runner.cleanup()


def _only(callers: frozenset[str], what: str,
          open_paths: frozenset[str]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """A middleware answering 403, naming the caller's role, unless the client's certificate
    names one of ``callers`` or the path is one of ``open_paths``."""

    @web.middleware
    async def check(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        role = role_of_peer(ssl_object)
        if role not in callers:
            who = (f"role {role!r}" if role else "a certificate naming no trenchcoat role"
                   if ssl_object is not None and ssl_object.getpeercert(binary_form=True)
                   else "a client without a certificate")
            return web.Response(status=403, text=f"{who} may not use the {what} HTTP port "
                                                 f"(it answers {', '.join(sorted(callers)) or 'no role'})\n")
        return await handler(request)

    return check
