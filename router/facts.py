"""The small facts about stored media (``MediaService.Stat/BatchStat`` and the facts a
``Read`` starts with): the metadata row, the tier its bytes live in, the URLs that serve
the original and each rendition, whatever the age of the volumes they are on.

The tier is the original's volume's: hot while writable, read-only, sealed or being moved
(its hot replicas serve until the move is done), warm once it lives in f4. URLs come from
``Photos.path`` (the volume map in RAM), so a warm photo is described as readily as a hot
one. A batch never fails because one of its ids cannot be described: that id's result
says why (``Outcome``), and the rest are answered.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from router.errors import MediaNotFound
from router.metadata import MediaRow, MediaState, MediaStore, RenditionRow
from router.photos import Photos
from trenchcoat import rendition_keys
from trenchcoat.errors import TrenchcoatError


class Outcome(enum.Enum):
    """What a batch found for one media_id (the contract's StatOutcome)."""

    FOUND = "found"
    NOT_FOUND = "not_found"
    DELETED = "deleted"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class RenditionFacts:
    row: RenditionRow
    url: str


@dataclass(frozen=True, slots=True)
class MediaFacts:
    """An object's facts: its row, and, while it is active, its tier and URLs."""

    row: MediaRow
    tier: str = ""
    """"hot" or "warm" ("" when deleted)."""
    url: str = ""
    renditions: tuple[RenditionFacts, ...] = ()


@dataclass(frozen=True, slots=True)
class Described:
    """One result of a batch."""

    media_id: int
    outcome: Outcome
    facts: MediaFacts | None = None
    """Set when found, and when deleted (its row only)."""
    reason: str = ""
    """Why it could not be described now (UNAVAILABLE)."""


class Describer:
    def __init__(self, media: MediaStore, photos: Photos) -> None:
        self._media = media
        self._photos = photos

    async def facts(self, row: MediaRow, renditions: Sequence[RenditionRow] = (), *,
                    every: bool = False) -> MediaFacts:
        """The facts of ``row`` with ``renditions`` as a client picks from them
        (``rendition_keys.listed``), or all of them with ``every`` (the transformer's
        reads). Raises a typed error when a volume cannot be found in the map now."""
        if row.state is not MediaState.ACTIVE:
            return MediaFacts(row)
        if renditions and not every:
            shown = rendition_keys.listed(r.alternate_key for r in renditions)
            renditions = [r for r in renditions if r.alternate_key in shown]
        path, tier = await self._photos.located(row)
        return MediaFacts(row, tier, path.url(self._photos.cdn_base_url),
                          tuple([RenditionFacts(r, await self._photos.url(r)) for r in renditions]))

    async def stat(self, media_id: int) -> MediaFacts:
        """An active object's facts; NOT_FOUND for an unknown or deleted one."""
        row = await self._media.get(media_id)
        if row is None or row.state is MediaState.PENDING:
            raise MediaNotFound(f"media {media_id} does not exist")
        if row.state is MediaState.DELETED:
            raise MediaNotFound(f"media {media_id} was deleted")
        renditions = await self._media.renditions_of([media_id])
        return await self.facts(row, renditions.get(media_id, ()))

    async def batch(self, media_ids: Sequence[int]) -> list[Described]:
        """One result per id, in order: two PostgreSQL queries for the whole batch, then the
        URLs from the volume map; an id whose URLs cannot be made now is UNAVAILABLE with the
        reason (the others are answered)."""
        rows = await self._media.get_many(list(media_ids))
        active = [m for m, r in rows.items() if r.state is MediaState.ACTIVE]
        renditions = await self._media.renditions_of(active) if active else {}
        out = []
        for media_id in media_ids:
            row = rows.get(media_id)
            if row is None or row.state is MediaState.PENDING:
                out.append(Described(media_id, Outcome.NOT_FOUND))
            elif row.state is MediaState.DELETED:
                out.append(Described(media_id, Outcome.DELETED, MediaFacts(row)))
            else:
                try:
                    facts = await self.facts(row, renditions.get(media_id, ()))
                except TrenchcoatError as exc:
                    out.append(Described(media_id, Outcome.UNAVAILABLE, reason=str(exc)))
                else:
                    out.append(Described(media_id, Outcome.FOUND, facts))
        return out
