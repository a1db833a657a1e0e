"""The hot tier heals itself (issue 24): bit rot flipped into a replica's file on disk is
found by the store's background audit, or first by a read, and the needle is rewritten
from a healthy replica until every replica holds the same bytes there; rot in every
replica is reported unrecoverable and never served as wrong bytes."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import random
from pathlib import Path

import pytest

from tests.cluster import MediaCluster, eventually, full_media_cluster, metric, shared
from tests.integration.test_upload import path_of
from trenchcoat import needle, urls
from trenchcoat.clients.directory import VolumeView
from trenchcoat.clients.media import Media
from trenchcoat.errors import TrenchcoatError
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.ops import admin
from trenchcoat.ops.demo_heal import needle_at

pytestmark = pytest.mark.integration

REPAIR_WAIT_S = 90.0
"""Generous: the machine is busy; a repair takes a leader tick (0.5 s) once reported."""


@pytest.fixture(scope="module")
def audited(module_service, etcd, postgres, tmp_path_factory):
    """Stores whose audit passes every 3 seconds."""
    return shared(full_media_cluster(module_service, etcd, postgres, tmp_path_factory.mktemp("audited"),
                                     env={"TRENCHCOAT_STORE__AUDIT_INTERVAL_S": "3"}))


@pytest.fixture(scope="module")
def unaudited(module_service, etcd, postgres, tmp_path_factory):
    """Stores whose audit passed once, over nothing, at start and not again for an hour:
    only reads find damage here."""
    async def build() -> MediaCluster:
        cluster = await full_media_cluster(module_service, etcd, postgres, tmp_path_factory.mktemp("unaudited"),
                                           env={"TRENCHCOAT_STORE__AUDIT_INTERVAL_S": "3600"})
        # That first pass must be over before a test writes: on a busy machine a store's
        # first audit tick can come after the first upload, and find the rot a test flips.
        for store in cluster.stores.values():
            if store is not None:
                await eventually(functools.partial(metric, store, "trenchcoat_store_audit_last_pass_timestamp_seconds"),
                                 60, what="the store's first audit pass over")
        return cluster

    return shared(build())


async def uploaded(cluster: MediaCluster, owner: int) -> tuple[Media, bytes, NeedleRef, VolumeView]:
    data = os.urandom(20_000)
    async with cluster.clients() as c:
        media = await c.media.upload(data, owner_id=owner, content_type="image/jpeg")
        ref = urls.parse_path(path_of(media)).needle
        volume = next(v for v in await c.directory.list_volumes() if v.id == ref.logical_volume)
    return media, data, ref, volume


def volume_file(cluster: MediaCluster, machine_id: int, volume_id: int) -> Path:
    return cluster.data_dir / f"store-{machine_id}" / f"vol-{volume_id}.dat"


def needle_bytes(path: Path, ref: NeedleRef) -> tuple[int, bytes]:
    """(offset, stored bytes) of the needle in the volume file, found by walking it."""
    return needle_at(path, ref.key, ref.alternate_key)


def flip(path: Path, ref: NeedleRef) -> None:
    """Rot: one bit of the needle's data flipped in the file."""
    offset, stored = needle_bytes(path, ref)
    at = offset + needle.HEADER.size + 10_000
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(bytes([stored[at - offset] ^ 0x04]))


async def replicas_identical(cluster: MediaCluster, volume: VolumeView, ref: NeedleRef) -> bool:
    copies = {needle_bytes(volume_file(cluster, r.machine_id, volume.id), ref)[1] for r in volume.replicas}
    if len(copies) != 1:
        return False
    async with cluster.clients() as c:
        for r in volume.replicas:
            _, damaged = await c.store.scrub(r.address, volume.id)
            if damaged:
                return False
    return True


async def read_each_replica(cluster: MediaCluster, volume: VolumeView, ref: NeedleRef) -> list[bytes | str]:
    """Each replica's answer to a read of the needle: its bytes, or its status."""
    out: list[bytes | str] = []
    async with cluster.clients() as c:
        for r in volume.replicas:
            try:
                out.append((await c.store.read(r.address, dataclasses.replace(ref, logical_volume=volume.id))).data)
            except TrenchcoatError as exc:
                out.append(exc.status)
    return out


async def test_rot_in_one_replica_of_a_needle_nobody_reads_is_repaired_by_the_audit(audited):
    _, data, ref, volume = await uploaded(audited, owner=2401)
    victim = volume.replicas[0]
    store = audited.stores[victim.machine_id]
    assert store is not None
    before = await metric(store, "trenchcoat_store_audit_findings_total", found_by="audit")
    flip(volume_file(audited, victim.machine_id, volume.id), ref)
    assert not await replicas_identical(audited, volume, ref)

    await eventually(lambda: replicas_identical(audited, volume, ref), REPAIR_WAIT_S,
                     what="the rotten replica rewritten by the audit's report")
    assert await metric(store, "trenchcoat_store_audit_findings_total", found_by="audit") > before
    assert await metric(store, "trenchcoat_store_audit_findings_total", found_by="read") == 0
    assert await read_each_replica(audited, volume, ref) == [data] * 3
    assert await metric(store, "trenchcoat_store_audited_needles_total") > 0


async def test_rot_a_read_meets_is_repaired_at_once_without_waiting_for_the_audit(unaudited):
    media, data, ref, volume = await uploaded(unaudited, owner=2402)
    victim = volume.replicas[1]
    store = unaudited.stores[victim.machine_id]
    assert store is not None
    flip(volume_file(unaudited, victim.machine_id, volume.id), ref)
    answers = await read_each_replica(unaudited, volume, ref)
    assert answers[1] == "DATA_LOSS" and answers[0] == answers[2] == data

    await eventually(lambda: replicas_identical(unaudited, volume, ref), REPAIR_WAIT_S,
                     what="the replica a read found rotten rewritten")
    assert await read_each_replica(unaudited, volume, ref) == [data] * 3
    assert await metric(store, "trenchcoat_store_audit_findings_total", found_by="read") >= 1
    assert await metric(store, "trenchcoat_store_audit_findings_total", found_by="audit") == 0
    async with unaudited.clients() as c:
        assert (await c.media.read(media.media_id))[1] == data


async def test_rot_in_every_replica_is_reported_unrecoverable_and_never_served(unaudited):
    media, _, ref, volume = await uploaded(unaudited, owner=2403)
    directory = unaudited.directories[0]
    assert directory is not None
    for r in volume.replicas:
        flip(volume_file(unaudited, r.machine_id, volume.id), ref)
    assert await read_each_replica(unaudited, volume, ref) == ["DATA_LOSS"] * 3

    async def listed() -> bool:
        return await metric(directory, "trenchcoat_directory_unrecoverable_needles") >= 1

    await eventually(listed, REPAIR_WAIT_S, what="the needle listed unrecoverable")
    # Nothing was "repaired" with wrong bytes: every replica still answers DATA_LOSS.
    assert await read_each_replica(unaudited, volume, ref) == ["DATA_LOSS"] * 3
    async with unaudited.clients() as c:
        with pytest.raises(TrenchcoatError) as failed:
            await c.media.read(media.media_id)
        assert failed.value.status == "DATA_LOSS"
        # Listed for the operator (`trenchcoat volumes`), with every store that holds it damaged.
        found = [n for n in await c.directory.damaged_needles() if n.key == ref.key]
        assert [(n.unrecoverable, set(n.machines)) for n in found] == [
            (True, {r.machine_id for r in volume.replicas})]
        text = "\n".join(admin.healing_lines(await c.directory.list_volumes(), found, {}))
        assert f"media {ref.key}  alternate key 0" in text and "UNRECOVERABLE" in text


async def test_a_replica_that_missed_a_thousand_appends_receives_about_their_bytes_and_nothing_more(unaudited):
    _, _, _, volume = await uploaded(unaudited, owner=2404)
    lagging, *others = volume.replicas
    store = unaudited.stores[lagging.machine_id]
    assert store is not None
    received_before = await metric(store, "trenchcoat_store_catchup_received_bytes_total")
    rng = random.Random(2404)
    written: dict[NeedleRef, bytes] = {}
    async with unaudited.clients() as c:
        # Appends that reached two replicas and not the third (as if it had been cut off).
        for i in range(1000):
            ref = NeedleRef(logical_volume=volume.id, key=0x7E00_0000_0000 + i, cookie=rng.getrandbits(32))
            data = rng.randbytes(rng.randint(1000, 6000))
            await asyncio.gather(*(c.store.write(r.address, ref, data) for r in others))
            written[ref] = data
    missing = sum(needle.stored_size(len(d)) for d in written.values())

    async def settled() -> bool:
        async with unaudited.clients() as c:
            reports = [(await c.store.status(r.address, volume.id))[volume.id] for r in volume.replicas]
            views = {v.id: v for v in await c.directory.list_volumes()}
        return len({p.digest for p in reports}) == 1 and views[volume.id].writable

    await eventually(settled, REPAIR_WAIT_S, what="the lagging replica caught up and the volume repaired")
    received = await metric(store, "trenchcoat_store_catchup_received_bytes_total") - received_before
    assert missing <= received <= 1.1 * missing, (received, missing)
    async with unaudited.clients() as c:
        for ref, data in written.items():
            assert (await c.store.read(lagging.address, ref)).data == data
        _, damaged = await c.store.scrub(lagging.address, volume.id)
        # (Another test of this module may have left rot in every replica of this volume.)
        assert not {d.key for d in damaged} & {ref.key for ref in written}
