"""The cache's photo HTTP server: ``GET``/``HEAD /<cache_id>/<machine_id>/<lv>,<photo>.<ext>``.

What the CDN pulls from (or a client on the cluster network reads directly): Haystack's
CDN -> Cache -> Store, with nothing else on the way. The path is parsed (malformed ->
400) and the photo comes from this cache's memory or, on a miss, from the store the path
names (then the volume's other replicas). No database is asked anything: the Store
decides existence (no such needle, deleted, wrong cookie -> 404) and the needle carries
its type; a URL whose extension is not the stored type's is 404 too (it was never
issued). Responses carry Content-Type, Content-Length, a strong ETag (the photo
component: the bytes behind a URL never change), ``Cache-Control: public,
max-age=31536000, immutable``, and support ``If-None-Match`` (304) and single byte
ranges (206, or 416 when unsatisfiable).

A query ``?w=&h=&fit=&fmt=`` asks for the photo resized or cropped on read
(``trenchcoat.transforms``): only boxes in ``transformer.on_read_sizes`` (others are
400, before anything is read), made by a transformer worker from the original this cache
serves, and as cacheable as the photo.

The CDN marks its requests with ``X-Trenchcoat-Via-CDN: 1``; the cache does not admit
those (the CDN keeps them). Every photo response says what the cache did in
``X-Trenchcoat-Cache``: ``hit`` (served from its memory), ``admitted`` (a miss it now
keeps) or ``miss`` (a miss it does not keep: via the CDN, or a read-only volume).

Over mutual TLS (the default) the port answers HTTPS only, and only the roles the
permission table lets call ``CacheService.Read`` (the CDN, the router, apps, the
operator); others get 403. Photo URLs stay public reads at the CDN.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web

from cache import metrics
from cache.photos import PhotoCache
from cache.transforms import Resizer
from trenchcoat import media_types
from trenchcoat.errors import (
    DataLoss,
    InvalidArgument,
    NotFound,
    TrenchcoatError,
    Unavailable,
)
from trenchcoat.transforms import BadTransform, TransformSpec, parse_query
from trenchcoat.urls import MalformedURL, component, parse_path

log = logging.getLogger(__name__)


VIA_CDN_HEADER = "X-Trenchcoat-Via-CDN"
CACHE_HEADER = "X-Trenchcoat-Cache"
IMMUTABLE = "public, max-age=31536000, immutable"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")



def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single satisfiable range; None to serve it all.
    Raises ValueError when the range cannot be satisfied."""
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None  # multiple or unknown ranges: the whole body is a valid answer
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        n = int(last)
        if n == 0:
            raise ValueError
        return max(0, size - n), size
    start = int(first)
    end = min(size, int(last) + 1) if last else size
    if start >= size or (last and int(last) < start):
        raise ValueError
    return start, end


class Gateway:
    def __init__(self, cache: PhotoCache, resizer: Resizer) -> None:
        self._cache = cache
        self._resizer = resizer

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.photo)  # HEAD too (aiohttp drops the body)
        return app

    async def photo(self, request: web.Request) -> web.StreamResponse:
        cache = "-"
        try:
            path = parse_path(request.path)
            spec = parse_query(request.query)
            if spec is not None:
                self._resizer.check(spec)  # a box not allowed costs no read
            via_cdn = request.headers.get(VIA_CDN_HEADER) == "1"
            served = await self._cache.read(path.machine_id, path.needle, via_cdn=via_cdn)
            cache = "hit" if served.hit else "admitted" if served.admitted else "miss"
            kind = media_types.of_mime(served.blob.content_type or media_types.OCTET_STREAM.mime)
            if path.extension != kind.extension:
                raise NotFound(f"no photo at {request.path}")
            if spec is not None:
                return await self._transformed(request, component(path.needle), served.blob.data, kind, spec, cache)
            data = served.blob.data
            etag = f'"{component(path.needle)}"'
            headers = {"ETag": etag, "Cache-Control": IMMUTABLE, "Accept-Ranges": "bytes",
                       "Content-Type": kind.mime, CACHE_HEADER: cache}
            if request.headers.get("If-None-Match") in (etag, "*"):
                return self._done(web.Response(status=304, headers=headers), cache)
            span = None
            if "Range" in request.headers and request.headers.get("If-Range", etag) == etag:
                try:
                    span = _parse_range(request.headers["Range"], len(data))
                except ValueError:
                    headers["Content-Range"] = f"bytes */{len(data)}"
                    return self._done(web.Response(status=416, headers=headers), cache)
            if span is None:
                return self._done(web.Response(body=data, headers=headers), cache)
            start, end = span
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
            return self._done(web.Response(status=206, body=data[start:end], headers=headers), cache)
        except (MalformedURL, InvalidArgument) as exc:
            return self._done(web.Response(status=400, text=f"{exc}\n"), cache)
        except NotFound:
            return self._done(web.Response(status=404, text="not found\n"), cache)
        except DataLoss as exc:
            log.error("%s: %s", request.path, exc)
            return self._done(web.Response(status=502, text="every copy of this photo failed verification\n"), cache)
        except (Unavailable, TrenchcoatError) as exc:
            return self._done(web.Response(status=503, text=f"{exc}\n", headers={"Retry-After": "1"}), cache)

    async def _transformed(self, request: web.Request, photo: str, data: bytes, kind: media_types.MediaType,
                           spec: TransformSpec, cache: str) -> web.Response:
        """The photo resized or cropped on read: as cacheable as the photo (the bytes behind
        the URL, query and all, never change)."""
        if not kind.mime.startswith("image/"):
            raise BadTransform(f"only images are resized on read; this is {kind.mime}")
        etag = f'"{photo}-{spec}"'
        headers = {"ETag": etag, "Cache-Control": IMMUTABLE, "Content-Type": spec.content_type, CACHE_HEADER: cache}
        if request.headers.get("If-None-Match") in (etag, "*"):
            return self._done(web.Response(status=304, headers=headers), cache)
        out = await self._resizer.transform(photo, data, spec)
        return self._done(web.Response(body=out.data, headers=headers), cache)

    @staticmethod
    def _done(response: web.Response, cache: str) -> web.Response:
        metrics.RESPONSES.labels(str(response.status), cache).inc()
        return response
