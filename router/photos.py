"""Reads and deletes of stored objects by media_id (``MediaService.Read/Delete``) and the
URL each photo is read at.

A read by media_id looks its row up (kept for ``row_ttl_s``): a photo that is not active
answers NOT_FOUND before any byte is read; the bytes come through the Cache the photo's
URL names, which reads the Store on a miss and fails over to the volume's other replicas.
Reads by URL never come here: the caches serve them (``cache.gateway``) without asking
PostgreSQL anything."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from router import metrics
from router.deletes import DeleteJournal
from router.errors import MediaNotFound
from router.metadata import (
    MediaRow,
    MediaState,
    MediaStore,
    PendingDelete,
    RenditionRow,
)
from trenchcoat import media_types
from trenchcoat.clients.cache import CacheClient
from trenchcoat.clients.directory import DirectoryClient
from trenchcoat.errors import InvalidArgument, PermissionDenied, Unavailable
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.urls import PhotoPath

NO_MACHINE = 1
"""The machine a warm volume's URLs name when the map does not say which held it hot (a
volume freed before the map recorded them): any valid id serves, since a cache reads a warm
volume from f4 whatever machine the URL names (0 is not a machine id: the cache refuses it)."""
DELETE_CONCURRENCY = 16
"""Needles of one deleted media flagged at once (each flag is a call to every replica)."""


class RowCache:
    """Metadata rows read lately, each trusted for ``ttl_s``: a photo read again within
    that time costs no PostgreSQL round trip. A delete through this router drops the row
    at once; after one through another router, the flagged needles answer NOT_FOUND
    anyway (the row only saves the lookup)."""

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
    def __init__(self, media: MediaStore, directory: DirectoryClient, caches: CacheClient, deletes: DeleteJournal, *,
                 cdn_base_url: str, row_ttl_s: float = 0.0) -> None:
        self._rows = RowCache(row_ttl_s)
        self._media = media
        self._directory = directory
        self._caches = caches
        self._deletes = deletes
        self.cdn_base_url = cdn_base_url

    async def active(self, media_id: int) -> MediaRow:
        known, row = self._rows.get(media_id)
        if not known:
            row = await self._media.get(media_id)
            self._rows.put(media_id, row)
        if row is not None and row.state is MediaState.DELETED:
            raise MediaNotFound(f"media {media_id} was deleted")
        if row is None or row.state is not MediaState.ACTIVE:
            raise MediaNotFound(f"media {media_id} does not exist")
        return row

    async def path(self, row: MediaRow | RenditionRow) -> PhotoPath:
        """The photo URL's path of an original or a rendition (each names its own volume)."""
        return (await self.located(row))[0]

    async def located(self, row: MediaRow | RenditionRow) -> tuple[PhotoPath, str]:
        """The photo URL's path, and the tier of its volume ("hot" or "warm"). Cache and
        machine are chosen by key among the live replicas (in machine-id order, whatever
        order a directory listed them in): reads spread over the replicas across photos,
        while one photo keeps one URL (so the CDN caches it once). A warm volume whose hot
        replicas were freed is read from f4 whatever machine a URL names; its URLs name the
        machines that held it, as they did while it was hot."""
        volume = await self._directory.volume(row.logical_volume)
        live = sorted(r.machine_id for r in volume.replicas if r.alive) or sorted(r.machine_id for r in volume.replicas)
        if not live and volume.state == "warm":
            # (A volume freed before the map recorded its machines: any machine id serves.)
            live = list(volume.freed_machines) or [NO_MACHINE]
        if not live:
            raise Unavailable(f"volume {row.logical_volume} has no replicas in the Directory's map")
        machine = live[row.media_id % len(live)]
        alternate_key = row.alternate_key if isinstance(row, RenditionRow) else 0
        needle = NeedleRef(logical_volume=row.logical_volume, key=row.media_id, alternate_key=alternate_key,
                           cookie=row.cookie)
        path = PhotoPath(cache_id=1 + row.media_id % max(self._caches.count, 1), machine_id=machine,
                         needle=needle,
                         extension=media_types.BY_MIME.get(row.content_type, media_types.OCTET_STREAM).extension)
        return path, "warm" if volume.state == "warm" else "hot"

    async def url(self, row: MediaRow | RenditionRow) -> str:
        return (await self.path(row)).url(self.cdn_base_url)

    async def read(self, media_id: int, alternate_key: int = 0, *, internal: bool = False) -> tuple[MediaRow, bytes]:
        """The original's row and the bytes of the original or of one rendition
        (``internal``: read by the pipeline itself, which the cache does not keep)."""
        row = await self.active(media_id)
        stored: MediaRow | RenditionRow = row
        if alternate_key:
            rendition = await self._media.rendition(media_id, alternate_key)
            if rendition is None:
                raise MediaNotFound(f"media {media_id} has no rendition {alternate_key} (yet: renditions are made "
                                    f"after the upload; MediaInfo.renditions lists those stored)")
            stored = rendition
        path = await self.path(stored)
        read = await self._caches.read(path.cache_id, path.machine_id, path.needle, via_cdn=False,
                                       internal=internal)
        return row, read.data

    async def delete(self, media_id: int, owner_id: int = 0) -> bool:
        """Deletes the photo: the row turns deleted and the delete of its needle is
        journalled (one transaction), then carried out at once on every replica and cache
        as far as they answer; the journal retries the rest (``router.deletes``). False if
        it was already deleted. ``owner_id``: the user the call acts for, whose photo it must
        be (0: a service's delete, for no user)."""
        if owner_id < 0:
            raise InvalidArgument(f"owner_id must be a user id (or 0 for none), got {owner_id}")
        row = await self._media.get(media_id)
        if row is None or row.state is MediaState.PENDING:
            raise MediaNotFound(f"media {media_id} does not exist")
        if owner_id and row.owner_id != owner_id:
            raise PermissionDenied(f"media {media_id} belongs to another user: user {owner_id} may not delete it")
        if row.state is MediaState.DELETED:
            metrics.DELETES.labels("already").inc()
            return False
        entries = await self._media.mark_deleted(media_id)
        self._rows.drop(media_id)
        if entries is None:  # another delete won the race
            metrics.DELETES.labels("already").inc()
            return False
        # Renditions (a video's ladder is hundreds of needles) a few at a time, then the
        # original, whose entry also discards the media's f4 keys.
        gate = asyncio.Semaphore(DELETE_CONCURRENCY)

        async def one(entry: PendingDelete) -> bool:
            async with gate:
                return await self._deletes.carry_out(entry)

        renditions = [e for e in entries if e.alternate_key]
        done = all(await asyncio.gather(*map(one, renditions)))
        done = all([await self._deletes.carry_out(e) for e in entries if not e.alternate_key]) and done
        metrics.DELETES.labels("ok" if done else "journalled").inc()
        return True
