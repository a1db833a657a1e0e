"""router/facts.py: the facts of stored media by tier and state, against a real PostgreSQL
(the volume map stood in for by a plain object): a batch answers each id, whatever one of
them cannot be."""

from __future__ import annotations

from typing import cast

import pytest

from router.errors import MediaNotFound
from router.facts import Describer, Outcome
from router.metadata import MediaRow, MediaStore, RenditionRow
from router.photos import Photos
from tests.cluster import fresh_database
from trenchcoat.errors import Unavailable
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.urls import PhotoPath

HOT, WARM, LOST = 1, 2, 3
"""Volumes: one hot, one warm, one the map cannot be asked about now."""


class StandInPhotos:
    """router.photos.Photos as far as the facts need it: where a row's photo is, and its URL."""

    cdn_base_url = "http://cdn"

    async def located(self, row: MediaRow | RenditionRow) -> tuple[PhotoPath, str]:
        if row.logical_volume == LOST:
            raise Unavailable(f"volume {LOST} is not in this router's map and no directory answered")
        alt = row.alternate_key if isinstance(row, RenditionRow) else 0
        path = PhotoPath(cache_id=1, machine_id=4, needle=NeedleRef(logical_volume=row.logical_volume,
                                                                   key=row.media_id, alternate_key=alt,
                                                                   cookie=row.cookie))
        return path, "warm" if row.logical_volume == WARM else "hot"

    async def url(self, row: MediaRow | RenditionRow) -> str:
        return (await self.located(row))[0].url(self.cdn_base_url)


def describer_of(media: MediaStore) -> Describer:
    """The facts of ``media``'s rows, with the stand-in above for the volume map."""
    return Describer(media, cast(Photos, StandInPhotos()))


@pytest.fixture
async def media(postgres):
    store = await MediaStore.connect(await fresh_database(postgres.endpoint), timeout_s=10)
    await store.migrate()
    yield store
    await store.close()


async def stored(media: MediaStore, volume: int) -> MediaRow:
    row, _ = await media.reserve(shard=1, owner_id=1, logical_volume=volume, cookie=99, size_bytes=3,
                                 content_type="image/jpeg", idempotency_key=None)
    return await media.activate(row.media_id, volume)


async def test_a_batch_answers_every_id_whatever_one_of_them_cannot(media):
    hot, warm, lost, gone = [await stored(media, v) for v in (HOT, WARM, LOST, HOT)]
    await media.mark_deleted(gone.media_id)
    results = await describer_of(media).batch([hot.media_id, lost.media_id, 12345, warm.media_id,
                                               gone.media_id])
    assert [r.outcome for r in results] == [Outcome.FOUND, Outcome.UNAVAILABLE, Outcome.NOT_FOUND, Outcome.FOUND,
                                            Outcome.DELETED]
    assert [r.media_id for r in results] == [hot.media_id, lost.media_id, 12345, warm.media_id, gone.media_id]
    assert f"volume {LOST}" in results[1].reason
    assert results[0].facts and results[0].facts.tier == "hot"
    assert results[3].facts and results[3].facts.tier == "warm" and results[3].facts.url.startswith("http://cdn/1/4/2,")
    assert results[4].facts and results[4].facts.tier == "" and results[4].facts.url == ""


async def test_stat_of_a_deleted_media_is_not_found_saying_so(media):
    row = await stored(media, WARM)
    describer = describer_of(media)
    assert (await describer.stat(row.media_id)).tier == "warm"
    await media.mark_deleted(row.media_id)
    with pytest.raises(MediaNotFound, match="was deleted"):
        await describer.stat(row.media_id)
    with pytest.raises(MediaNotFound, match="does not exist"):
        await describer.stat(row.media_id + 1)


async def test_the_original_s_displayed_size_is_recorded_once_known(media):
    row = await stored(media, HOT)
    assert await media.finish_renditions(row.media_id, 1, "", width=0, height=0)  # unknown: left as it was
    assert ((await media.get(row.media_id)) or row).width == 0
    assert await media.finish_renditions(row.media_id, 1, "", width=1500, height=2000)
    again = await media.get(row.media_id)
    assert again is not None and (again.width, again.height) == (1500, 2000)
