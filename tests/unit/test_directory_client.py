"""trenchcoat/clients/directory.py: the local copy first; a volume it lacks is asked of a
directory once, however many readers want it at the same time."""

from __future__ import annotations

import asyncio

import pytest

from trenchcoat.clients.directory import DirectoryClient, ReplicaView, VolumeView
from trenchcoat.errors import NotFound
from trenchcoat.rpc import ChannelPool

VIEW = VolumeView(5, True, 1 << 30, (ReplicaView(1, 5, "s1", True),))


async def test_the_local_copy_answers_and_a_missing_volume_is_asked_once_for_all_readers(monkeypatch):
    async with ChannelPool() as pool:
        client = DirectoryClient(pool, ["127.0.0.1:1"])
        asked: list[int] = []

        async def locate(volume_id: int) -> VolumeView:
            asked.append(volume_id)
            await asyncio.sleep(0.05)
            client.volumes.setdefault(volume_id, VIEW)
            return VIEW

        monkeypatch.setattr(client, "locate", locate)
        views = await asyncio.gather(*(client.volume(5) for _ in range(100)))
        assert views == [VIEW] * 100 and asked == [5]
        assert await client.volume(5) is VIEW and asked == [5]  # now in the local copy


async def test_a_volume_the_directory_does_not_know_is_not_found_and_asked_again_next_time(monkeypatch):
    async with ChannelPool() as pool:
        client = DirectoryClient(pool, ["127.0.0.1:1"])
        asked: list[int] = []

        async def locate(volume_id: int) -> VolumeView:
            asked.append(volume_id)
            raise NotFound(f"logical volume {volume_id} does not exist")

        monkeypatch.setattr(client, "locate", locate)
        for _ in range(2):
            with pytest.raises(NotFound):
                await client.volume(9)
        assert asked == [9, 9]  # no negative caching: a volume created meanwhile is found
