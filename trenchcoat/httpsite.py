"""An HTTP listener run as a service worker (``trenchcoat.server``): the cache's photo
URLs and a store's needle reads. Bound in ``start`` (a taken port stops the process at
once with a message naming it), closed on shutdown after in-flight requests finish.
Port 0 takes a free port; ``port`` says which.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

log = logging.getLogger(__name__)


class HttpSite:
    def __init__(self, app: web.Application, host: str, port: int, *, what: str) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self._host, self._port = host, port
        self._what = what
        self._stopped: asyncio.Event | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one chosen when 0 was asked for), once started."""
        return self._port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(f"cannot bind the {self._what} HTTP port {self._host}:{self._port} (in use?): {exc}") \
                from None
        if self._port == 0:
            self._port = self._runner.addresses[0][1]
        self._stopped = asyncio.Event()
        log.info("%s served on http://%s:%d/", self._what, self._host, self._port)

    async def run(self) -> None:
        assert self._stopped is not None, "start() first"
        await self._stopped.wait()

    async def shutdown(self) -> None:
        if self._stopped is not None:
            self._stopped.set()
        await self._runner.cleanup()
