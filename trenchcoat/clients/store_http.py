"""The client of a store's HTTP needle reads (``store/http.py``): what a cache reads a
miss with. One keep-alive connection pool per process; every read bounded by a deadline.

A read returns the same ``Blob`` and raises the same typed errors as
``StoreClient.read`` over gRPC: the store's own error (``NeedleNotFound``,
``VolumeNotFound``, ``ChecksumMismatch``, ...) rebuilt from its headers, ``Unavailable``
naming the store when it cannot be reached or breaks off, ``DeadlineExceeded`` past the
deadline, and ``ChecksumMismatch`` when the bytes that arrived do not match the CRC32C
the store sent with them (then the caller reads another replica).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import crc32c as _crc32c

from trenchcoat import rpc
from trenchcoat.errors import ChecksumMismatch, DeadlineExceeded, Unavailable, from_wire
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.store_types import Blob
from trenchcoat.tls import ClientTls
from trenchcoat.urls import component

CRC_HEADER = "X-Trenchcoat-Crc32c"
"""CRC32C of a 200's body, 8 lowercase hex digits."""
STATUS_HEADER = "X-Trenchcoat-Status"
"""An error answer's gRPC status name."""
ERROR_HEADER = "X-Trenchcoat-Error"
"""An error answer's class (``trenchcoat.errors.wire_name``)."""
MAX_ERROR_BODY = 4096
"""Most bytes of an error answer's message read."""


def crc32c_hex(data: bytes) -> str:
    return f"{_crc32c.crc32c(data):08x}"


class StoreHttpClient:
    """Needle reads over stores' HTTP ports; ``timeout_s`` bounds each read (connecting
    included). ``connections_per_store`` caps the keep-alive connections to one store."""

    def __init__(self, *, timeout_s: float, connections_per_store: int = 32,
                 tls: ClientTls | bool | None = True) -> None:
        """``tls``: the identity presented to the stores (HTTPS with mutual TLS): True for the
        process's (``rpc.use_tls``), False or None for plaintext HTTP."""
        self.timeout_s = timeout_s
        self._per_store = connections_per_store
        self._session: aiohttp.ClientSession | None = None
        self._tls = rpc.process_tls() if tls is True else (tls or None)
        self._scheme = "https" if self._tls is not None else "http"
        self._stamp = self._tls.stamp() if self._tls is not None else ()
        self._checked = time.monotonic()

    def _client(self) -> aiohttp.ClientSession:
        if self._tls is not None and time.monotonic() - self._checked > rpc.TLS_RECHECK_S:
            self._checked = time.monotonic()
            if self._tls.stamp() != self._stamp and self._session is not None:  # rotated: new connections
                self._stamp = self._tls.stamp()
                old, self._session = self._session, None
                asyncio.get_running_loop().call_later(rpc.RETIRED_CLOSE_S,
                                                      lambda: asyncio.ensure_future(old.close()))
        if self._session is None:  # made on first use: a session belongs to the running loop
            context = self._tls.http_context() if self._tls is not None else None
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=self._per_store, ttl_dns_cache=None,
                                               ssl=context if context is not None else True),
                auto_decompress=False, raise_for_status=False)
        return self._session

    async def read(self, http_address: str, needle: NeedleRef, *, timeout_s: float | None = None) -> Blob:
        """The needle's verified bytes and the content type stored with them."""
        remote = f"store {http_address}"
        timeout = timeout_s or self.timeout_s
        url = f"{self._scheme}://{http_address}/{component(needle)}"
        try:
            async with asyncio.timeout(timeout):
                async with self._client().get(url) as response:
                    if response.status != 200:
                        message = (await response.content.read(MAX_ERROR_BODY)).decode("utf-8", "replace").strip()
                        status = response.headers.get(STATUS_HEADER)
                        if status is None:  # not a store's answer (a proxy, another server on that port)
                            raise Unavailable(f"{remote}: HTTP {response.status} from a server that is not a "
                                              f"store's needle reads: {message[:200]!r}")
                        raise from_wire(status, message, response.headers.get(ERROR_HEADER, ""), remote)
                    data = await response.read()
                    sent_crc = response.headers.get(CRC_HEADER)
                    content_type = response.headers.get("Content-Type", "application/octet-stream")
        except TimeoutError:
            raise DeadlineExceeded(f"{remote} did not answer a read of {component(needle)} within {timeout:g}s") \
                from None
        except (aiohttp.ClientError, OSError) as exc:
            raise Unavailable(f"{remote}: cannot read {component(needle)} ({type(exc).__name__}: {exc})") from exc
        if sent_crc != crc32c_hex(data):
            raise ChecksumMismatch(f"{remote}: the bytes of {component(needle)} arrived damaged "
                                   f"(crc32c {crc32c_hex(data)}, the store sent {sent_crc})")
        return Blob(data, content_type)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
