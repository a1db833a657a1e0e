"""The upload path: pick a writable logical volume, mint the media_id and a cookie, write
every replica in parallel, and say yes only after all of them hold the bytes durably and
the metadata row is active.

1. Validate: a non-negative owner, a MIME type, 1..max_upload_bytes of data.
2. An idempotency key already used by this owner returns the first upload's row.
3. Choose a volume from the router's copy of the map (writable, room, every replica
   alive; of two random ones the emptier), or ask the Directory when the copy has none.
4. Write the row ``pending`` with a random 32-bit cookie; PostgreSQL mints its media_id in
   the same INSERT (``next_id(shard)``, shard = owner_id % 8192; one sequence per shard, so
   routers minting at once never collide, and no coordinator is involved).
5. Write the needle to every replica at once, each bounded by ``replica_timeout_s``.
6. All acknowledged: the row turns active, the upload succeeds. Any replica failed: the
   volume is marked read-only (it needs repair before taking writes) and the upload is
   tried once more on another volume; failing again, the row is dropped and the client
   gets UNAVAILABLE (retry with the same idempotency key is safe).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import secrets
from dataclasses import dataclass

from router import metrics
from router.errors import UploadRejected
from router.metadata import DuplicateId, MediaRow, MediaState, MediaStore
from trenchcoat import media_types, retry
from trenchcoat.backoff import Backoff
from trenchcoat.choice import roomier_of_two
from trenchcoat.clients.directory import DirectoryClient, VolumeView
from trenchcoat.clients.store import StoreClient
from trenchcoat.errors import (
    FailedPrecondition,
    TrenchcoatError,
    Unavailable,
)
from trenchcoat.ids import shard_for_user
from trenchcoat.needle_ref import NeedleRef

log = logging.getLogger(__name__)


ATTEMPTS = 2
CHOOSE_AGAIN = Backoff(base_s=0.1, max_s=0.1)
"""How often an upload looks again for a writable volume while the Directory grows one."""
MAX_IDEMPOTENCY_KEY = 200
_MINT_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class UploadLimits:
    max_bytes: int
    replica_timeout_s: float


def check_header(owner_id: int, content_type: str, size_bytes: int, idempotency_key: str,
                 limits: UploadLimits) -> None:
    if owner_id < 0:
        raise UploadRejected(f"owner_id must be >= 0, got {owner_id}")
    media_types.of_mime(content_type)  # UnsupportedMediaType names the types accepted
    if size_bytes > limits.max_bytes:
        raise UploadRejected(f"the upload declares {size_bytes} bytes; the most an upload may carry is "
                             f"{limits.max_bytes}")
    if len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
        raise UploadRejected(f"idempotency_key is {len(idempotency_key)} characters; at most {MAX_IDEMPOTENCY_KEY}")
    if "\x00" in idempotency_key:
        raise UploadRejected("idempotency_key cannot hold the NUL character (U+0000): remove it")


@dataclass(frozen=True, slots=True)
class Reservation:
    media_id: int
    cookie: int
    earlier: MediaRow | None = None
    """Set when this owner's idempotency key was already used by a finished upload."""


class Uploader:
    def __init__(self, directory: DirectoryClient, stores: StoreClient, media: MediaStore,
                 limits: UploadLimits) -> None:
        self._directory = directory
        self._stores = stores
        self._media = media
        self.limits = limits
        self._rng = random.Random()

    async def upload(self, owner_id: int, content_type: str, data: bytes, idempotency_key: str = "") -> MediaRow:
        check_header(owner_id, content_type, len(data), idempotency_key, self.limits)
        content_type = media_types.of_mime(content_type).mime  # one spelling per type
        if not data:
            raise UploadRejected("the upload carries no bytes")
        with metrics.UPLOAD_SECONDS.time():
            try:
                row = await self._upload(owner_id, content_type, data, idempotency_key or None)
            except TrenchcoatError as exc:
                metrics.UPLOADS.labels(exc.status).inc()
                raise
        metrics.UPLOADS.labels("ok").inc()
        metrics.UPLOAD_BYTES.inc(len(data))
        return row

    async def _upload(self, owner_id: int, content_type: str, data: bytes, key: str | None) -> MediaRow:
        if key is not None:
            earlier = await self._media.by_idempotency_key(owner_id, key)
            if earlier is not None and earlier.state is MediaState.ACTIVE:
                return earlier
        volume = await self._choose(len(data), [], set())
        reserved = await self._reserve(owner_id, content_type, data, key, volume.id)
        if reserved.earlier is not None:
            return reserved.earlier  # the same idempotency key won a race with this upload
        media_id, cookie = reserved.media_id, reserved.cookie
        try:
            placed = await self.place(NeedleRef(logical_volume=volume.id, key=media_id, cookie=cookie), data,
                                      content_type, first=volume)
        except BaseException:
            await asyncio.shield(self._discard(media_id))
            raise
        return await self._media.activate(media_id, placed)

    async def place(self, needle: NeedleRef, data: bytes, content_type: str, *,
                    first: VolumeView | None = None) -> int:
        """Writes ``needle`` (its logical volume aside: chosen here, ``first`` if given) to
        every replica of a writable volume; returns the volume once all acknowledged. A
        volume a replica failed is marked read-only and the write tried once more on
        another; failing again raises Unavailable naming every failure."""
        excluded: list[int] = []
        failed_stores: set[int] = set()
        failures = []
        volume = first
        for _ in range(ATTEMPTS):
            if volume is None:
                volume = await self._choose(len(data), excluded, failed_stores)
            failed, failure = await self._write_all(volume, dataclasses.replace(needle, logical_volume=volume.id),
                                                    data, content_type)
            if not failure:
                return volume.id
            failed_stores |= failed
            failures.append(f"volume {volume.id}: {failure}")
            excluded.append(volume.id)
            await self._retire(volume, failure)
            volume = None
        raise Unavailable(f"not stored: {'; '.join(failures)}; retry (with the same idempotency key)")

    async def _discard(self, media_id: int) -> None:
        """Drops a failed upload's pending row (never served); when PostgreSQL cannot now, the
        row stays, and the upload's own failure is what the client hears."""
        try:
            await self._media.discard(media_id)
        except Unavailable as exc:
            log.warning("upload of %d failed; its pending row stays: %s", media_id, exc)

    async def _reserve(self, owner_id: int, content_type: str, data: bytes, key: str | None,
                       volume_id: int) -> Reservation:
        """Writes the pending row, its media_id minted by PostgreSQL (``next_id``) in the
        same INSERT, and a random cookie; or finds the upload that already used this
        idempotency key."""
        cookie = secrets.randbits(32)
        for _ in range(_MINT_ATTEMPTS):
            try:
                row, created = await self._media.reserve(
                    shard=shard_for_user(owner_id), owner_id=owner_id, logical_volume=volume_id, cookie=cookie,
                    size_bytes=len(data), content_type=content_type, idempotency_key=key)
            except DuplicateId:
                continue
            if created:
                return Reservation(row.media_id, cookie)
            if row.state is MediaState.ACTIVE:
                return Reservation(row.media_id, row.cookie, row)
            raise Unavailable(f"an upload with idempotency key {key!r} is still in progress; retry shortly")
        raise Unavailable("could not mint a unique media_id; retry")

    async def _choose(self, size: int, excluded: list[int], failed_stores: set[int]) -> VolumeView:
        """A writable volume with room, on none of the stores that just failed us: from this
        router's copy of the map (as the directory chooses: ``trenchcoat.choice``), or asked
        of the Directory when the copy has none. When there is none at all (all were just
        retired), waits up to replica_timeout_s for the Directory to grow more."""

        async def attempt() -> VolumeView:
            candidates = [
                v for v in self._directory.volumes.values()
                if v.id not in excluded and v.writable_for(size)
                and not any(r.machine_id in failed_stores for r in v.replicas)
            ]
            if candidates:
                return roomier_of_two(candidates, self._rng, lambda v: v.room)
            try:
                return await self._directory.allocate(size, excluded, sorted(failed_stores))
            except TrenchcoatError as exc:  # whatever the directories said, the upload is to be retried
                raise Unavailable(f"no writable volume for this upload: {exc}") from None

        return await retry.until(attempt, self.limits.replica_timeout_s, backoff=CHOOSE_AGAIN)

    async def _write_all(self, volume: VolumeView, needle: NeedleRef, data: bytes,
                         content_type: str) -> tuple[set[int], str]:
        """The stores that could not be reached, and why any replica did not acknowledge
        ("" when every one did)."""
        results = await self._stores.write_replicas([r.address for r in volume.replicas], needle, data,
                                                    content_type=content_type,
                                                    timeout_s=self.limits.replica_timeout_s)
        errors = []
        failed = set()
        for replica, result in zip(volume.replicas, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, TrenchcoatError):
                    raise result
                errors.append(f"store {replica.machine_id}: {result}")
                # A replica that refused (its volume read-only) is fine; any other failure
                # means it did not acknowledge: the next attempt avoids that store.
                if not isinstance(result, FailedPrecondition):
                    failed.add(replica.machine_id)
        if errors:
            metrics.REPLICA_FAILURES.inc(len(errors))
        return failed, "; ".join(errors)

    async def _retire(self, volume: VolumeView, why: str) -> None:
        log.warning("volume %d failed a write, marking it read-only: %s", volume.id, why)
        try:
            await self._directory.mark_read_only(volume.id, f"a replica failed a write: {why[:200]}", repair=True)
        except TrenchcoatError as exc:
            log.error("could not mark volume %d read-only: %s", volume.id, exc)

