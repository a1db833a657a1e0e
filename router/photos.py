"""Reads and deletes of stored objects: the metadata row is the authority (a photo that
is not active answers NOT_FOUND before any byte is read), the bytes come through the
Cache named by the URL, which reads the Store on a miss and fails over to the volume's
other replicas."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from prometheus_client import Counter

from router.caches import CacheClients, delete_needle
from router.metadata import MediaRow, MediaState, MediaStore
from trenchcoat.directory_client import DirectoryClient
from trenchcoat.errors import NotFound, TrenchcoatError
from trenchcoat.urls import Photo, PhotoPath

log = logging.getLogger(__name__)

DELETES = Counter("trenchcoat_router_deletes_total", "Deletes by outcome.", ["outcome"])
DELETE_MISSED_REPLICAS = Counter("trenchcoat_router_delete_missed_replicas_total",
                                 "Replicas a delete could not flag (the metadata row still hides the photo).")


class MediaNotFound(NotFound):
    """No such media_id, or it was deleted (or its upload never completed)."""


class RowCache:
    """Metadata rows the gateway read lately, each trusted for ``ttl_s``: a photo read
    again within that time costs no PostgreSQL round trip. A delete through this router
    drops the row at once; one through another router shows here within ``ttl_s``."""

    def __init__(self, ttl_s: float, max_rows: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self._max = max_rows
        self._rows: OrderedDict[int, tuple[float, MediaRow | None]] = OrderedDict()

    def get(self, media_id: int) -> tuple[bool, MediaRow | None]:
        item = self._rows.get(media_id)
        if item is None or item[0] < time.monotonic():
            return False, None
        return True, item[1]

    def put(self, media_id: int, row: MediaRow | None) -> None:
        if self.ttl_s <= 0:
            return
        self._rows[media_id] = (time.monotonic() + self.ttl_s, row)
        self._rows.move_to_end(media_id)
        while len(self._rows) > self._max:
            self._rows.popitem(last=False)

    def drop(self, media_id: int) -> None:
        self._rows.pop(media_id, None)


class Photos:
    def __init__(self, media: MediaStore, directory: DirectoryClient, caches: CacheClients, *,
                 cdn_base_url: str, store_timeout_s: float, row_ttl_s: float = 0.0) -> None:
        self._rows = RowCache(row_ttl_s)
        self._media = media
        self._directory = directory
        self._caches = caches
        self._cdn = cdn_base_url
        self._timeout = store_timeout_s

    async def active(self, media_id: int) -> MediaRow:
        row = await self._media.get(media_id)
        if row is None or row.state is not MediaState.ACTIVE:
            raise MediaNotFound(f"media {media_id} does not exist")
        return row

    def path(self, row: MediaRow, alternate_key: int = 0) -> PhotoPath:
        """Cache and machine chosen by key among the live replicas: reads spread over the
        replicas across photos, while one photo keeps one URL (so the CDN caches it once)."""
        volume = self._directory.volumes.get(row.logical_volume)
        replicas = volume.replicas if volume else ()
        live = [r.machine_id for r in replicas if r.alive] or [r.machine_id for r in replicas] or [0]
        machine = live[row.media_id % len(live)]
        photo = Photo(row.logical_volume, row.media_id, row.cookie, alternate_key)
        return PhotoPath(1 + row.media_id % max(self._caches.count, 1), machine, photo)

    def url(self, row: MediaRow) -> str:
        return self.path(row).url(self._cdn)

    async def read(self, media_id: int, alternate_key: int = 0) -> tuple[MediaRow, bytes]:
        row = await self.active(media_id)
        data, _ = await self.read_path(self.path(row, alternate_key), row, via_cdn=False)
        return row, data

    async def read_url(self, path: PhotoPath, *, via_cdn: bool) -> tuple[MediaRow, bytes, bool]:
        """The photo a URL names, after checking its row: (row, bytes, cache hit)."""
        known, row = self._rows.get(path.photo.key)
        if not known:
            row = await self._media.get(path.photo.key)
            self._rows.put(path.photo.key, row)
        if (row is None or row.state is not MediaState.ACTIVE or row.cookie != path.photo.cookie
                or row.logical_volume != path.photo.logical_volume):
            raise MediaNotFound(f"no photo at {path.path()}")
        data, hit = await self.read_path(path, row, via_cdn=via_cdn)
        return row, data, hit

    async def read_path(self, path: PhotoPath, row: MediaRow, *, via_cdn: bool) -> tuple[bytes, bool]:
        p = path.photo
        return await self._caches.read(path.cache_id, path.machine_id, p.logical_volume, p.key, p.alternate_key,
                                       p.cookie, via_cdn=via_cdn)

    async def delete(self, media_id: int) -> bool:
        """Hides the photo everywhere; False if it was already deleted."""
        row = await self._media.get(media_id)
        if row is None or row.state is MediaState.PENDING:
            raise MediaNotFound(f"media {media_id} does not exist")
        if row.state is MediaState.DELETED:
            DELETES.labels("already").inc()
            return False
        # The row first: from here on every read answers NOT_FOUND, whatever a replica
        # or a cache still holds.
        await self._media.mark_deleted(media_id)
        self._rows.drop(media_id)
        volume = self._directory.volumes.get(row.logical_volume)
        if volume is not None:
            results = await asyncio.gather(
                *(delete_needle(r.address, r.volume_id, media_id, row.cookie, self._timeout) for r in volume.replicas),
                return_exceptions=True)
            for replica, result in zip(volume.replicas, results, strict=True):
                if isinstance(result, TrenchcoatError):
                    DELETE_MISSED_REPLICAS.inc()
                    log.warning("delete of %d: store %d not flagged: %s", media_id, replica.machine_id, result)
                elif isinstance(result, BaseException):
                    raise result
        try:
            await self._caches.invalidate(media_id)
        except TrenchcoatError as exc:
            log.warning("delete of %d: %s", media_id, exc)
        DELETES.labels("ok").inc()
        return True
