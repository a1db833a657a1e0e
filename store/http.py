"""Needle reads over HTTP: ``GET``/``HEAD /<logical_volume>,<photo>`` on ``store.http_port``.

Haystack's Store is an HTTP server and its Cache reads a miss from
``http://<machine>/<logical volume>,<photo>``; so does ours. It is the read a cache makes
on every miss, and over gRPC it was most of the miss's cost: one ReadNeedle cost the
store about 250 us of CPU and the cache about 300, this read a fifth of the store's and
two thirds of the cache's (bench/README.md, "cache misses"). gRPC keeps everything
else: writes, deletes, batch reads, repairs, administration.

The path is ``trenchcoat.urls``'s ``<logical_volume>,<photo>`` component, the one the
photo URL ends with (an extension is ignored: the store reads by needle). The answer:

- ``200``: the needle's verified bytes; ``Content-Type`` is the type stored with it and
  ``X-Trenchcoat-Crc32c`` the CRC32C of the body (8 lowercase hex digits), so the reader
  checks the bytes end to end.
- otherwise the typed error the gRPC read would have raised, as its HTTP status
  (``TrenchcoatError.http_status``: 404 for no such needle, a deleted one or a wrong
  cookie, and for a volume this store does not hold; 400 for a malformed path; 502 for
  bytes that fail verification), ``X-Trenchcoat-Status`` (the gRPC status name) and
  ``X-Trenchcoat-Error`` (the error's class) so a client raises the same typed error,
  and the message as a text body.

Reads are counted with the gRPC ones (``trenchcoat_store_operations_total{op="read"}``).
Over mutual TLS (the default) the port answers HTTPS only, and only the roles the
permission table lets call ``ReadNeedle`` (the cache, the operator); others get 403.
"""

from __future__ import annotations

from aiohttp import web

from store.service import counted
from store.volumes import VolumeSet
from trenchcoat import media_types, urls
from trenchcoat.clients.store_http import (
    CRC_HEADER,
    ERROR_HEADER,
    STATUS_HEADER,
    crc32c_hex,
)
from trenchcoat.errors import TrenchcoatError, wire_name


class NeedleHttp:
    def __init__(self, volumes: VolumeSet) -> None:
        self._volumes = volumes

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{photo}", self.read)  # HEAD too (aiohttp drops the body)
        return app

    async def read(self, request: web.Request) -> web.Response:
        try:
            with counted("read"):
                needle = urls.parse_component(request.match_info["photo"])
                stored = await self._volumes.get(needle.logical_volume).read(needle)
        except TrenchcoatError as exc:
            return web.Response(status=exc.http_status, text=f"{exc}\n",
                                headers={STATUS_HEADER: exc.status, ERROR_HEADER: wire_name(exc)})
        return web.Response(body=stored.data, headers={
            "Content-Type": media_types.of_code(stored.media_type).mime,
            CRC_HEADER: crc32c_hex(stored.data),
        })
