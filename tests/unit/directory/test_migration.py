"""directory/migration.py's decisions without processes: which volumes are due in f4, which
goes first, and what asking for one now (MigrateVolume) does to its record."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import cast

import pytest

from directory.migration import (
    REQUESTED_REASON,
    Migration,
    VolumeUnderRepair,
    due,
    requested,
)
from directory.model import ClusterMap, Replica, State, Volume
from directory.state import DirectoryState
from trenchcoat.clients.f4 import F4Client
from trenchcoat.clients.store import StoreClient
from trenchcoat.config import F4Config
from trenchcoat.errors import FailedPrecondition

GiB = 1 << 30
DAY_MS = 24 * 3600 * 1000
CONFIG = F4Config(warm_after_s=30 * 24 * 3600.0)
NOW_MS = int(time.time() * 1000)
"""Now, as Migration.next reads the clock itself; ages below are days before it."""
FULL_RATIO = 0.95


def volume(v: int, state: State = State.READ_ONLY, *, age_days: float = 1, used: int = GiB // 10,
           repair: bool = False, warm_requested: bool = False, replicas: tuple[int, ...] = (1, 2, 3)) -> Volume:
    return Volume(id=v, replicas=tuple(Replica(m, v) for m in replicas), state=state, capacity_bytes=GiB,
                  created_ms=NOW_MS - int(age_days * DAY_MS), used_bytes=used, repair=repair,
                  warm_requested=warm_requested)


def is_due(v: Volume) -> bool:
    return due(v, NOW_MS, CONFIG, FULL_RATIO)


# --- due ---------------------------------------------------------------------------------


def test_a_young_read_only_volume_is_due_only_when_requested():
    assert not is_due(volume(1))
    assert is_due(volume(1, warm_requested=True))


def test_an_old_or_full_read_only_volume_is_due_without_a_request():
    assert is_due(volume(1, age_days=31))
    assert is_due(volume(1, used=GiB))


def test_a_request_does_not_make_a_writable_volume_or_one_under_repair_due():
    # Only read-only volumes are sealed: MigrateVolume turns a writable one read-only first,
    # and a volume under repair waits until its replicas match.
    assert not is_due(volume(1, State.WRITABLE, warm_requested=True))
    assert not is_due(volume(1, repair=True, warm_requested=True))


def test_a_warm_volume_is_due_only_until_its_hot_replicas_are_freed():
    assert is_due(volume(1, State.WARM, warm_requested=True))
    assert not is_due(volume(1, State.WARM, warm_requested=True, replicas=()))


# --- next ----------------------------------------------------------------------------------


def migration(warm_after_s: float = 1.0) -> Migration:
    """``next`` reads only the map and the clock: no state, stores or f4 needed."""
    return Migration(state=cast(DirectoryState, None), stores=cast(StoreClient, None), f4=cast(F4Client, None),
                     config=F4Config(warm_after_s=warm_after_s), full_ratio=FULL_RATIO)


def cmap(*volumes: Volume) -> ClusterMap:
    return ClusterMap(stores={}, volumes={v.id: v for v in volumes})


def test_a_requested_volume_goes_before_older_due_ones():
    # warm_after_s = 1 s: every read-only volume here is due; the requested one is the youngest.
    chosen = migration().next(cmap(volume(1, age_days=90), volume(2, age_days=60),
                                   volume(3, age_days=2, warm_requested=True)))
    assert chosen is not None and chosen.id == 3


def test_a_move_under_way_goes_before_a_requested_volume():
    chosen = migration().next(cmap(volume(1, warm_requested=True), volume(2, State.SEALED, age_days=90)))
    assert chosen is not None and chosen.id == 2


def test_with_a_huge_warm_after_s_only_the_requested_volume_is_chosen():
    never = migration(warm_after_s=1e9)
    assert never.next(cmap(volume(1, age_days=300), volume(2, State.WRITABLE))) is None
    chosen = never.next(cmap(volume(1, age_days=300), volume(2, warm_requested=True)))
    assert chosen is not None and chosen.id == 2


# --- requested (MigrateVolume's change) ----------------------------------------------------


def test_a_writable_volume_asked_for_turns_read_only_with_the_reason_and_is_due():
    changed = requested(volume(1, State.WRITABLE))
    assert changed == replace(volume(1, State.WRITABLE), state=State.READ_ONLY, reason=REQUESTED_REASON,
                              warm_requested=True)
    assert is_due(changed)


def test_a_read_only_volume_asked_for_keeps_its_reason_and_asking_again_changes_nothing():
    before = replace(volume(1), reason="marked read-only by a client")
    changed = requested(before)
    assert changed == replace(before, warm_requested=True)
    assert requested(changed) == changed  # update_volume writes nothing for an equal record


@pytest.mark.parametrize("state", [State.SEALED, State.WARM])
def test_a_volume_already_moving_or_warm_is_left_as_it_is(state):
    assert requested(volume(1, state)) is None


def test_a_volume_under_repair_is_refused_saying_why():
    with pytest.raises(VolumeUnderRepair) as info:
        requested(replace(volume(4, repair=True), reason="store 2 is down"))
    assert isinstance(info.value, FailedPrecondition)
    assert "logical volume 4 is under repair (store 2 is down)" in str(info.value)
    assert "replicas match" in str(info.value)


# --- step: carrying a move out --------------------------------------------------------------


class FakeState:
    def __init__(self, *volumes: Volume) -> None:
        self.volumes = {v.id: v for v in volumes}

    async def update_volume(self, volume_id, change):
        new = change(self.volumes[volume_id])
        if new is not None:
            self.volumes[volume_id] = new
        return self.volumes[volume_id]


class FakeStores:
    def __init__(self, down: set[str]) -> None:
        self.down = down
        self.read_only: list[str] = []

    async def set_read_only(self, address, volume_id, read_only):
        from trenchcoat.errors import Unavailable

        if address in self.down:
            raise Unavailable(f"store {address} does not answer")
        self.read_only.append(address)


class FakeF4:
    def __init__(self) -> None:
        self.encoded: list[int] = []

    async def encode_volume(self, volume_id):
        from trenchcoat.clients.f4 import EncodedVolume

        self.encoded.append(volume_id)
        return EncodedVolume(1, 1, 100, 140)


def moving(state: FakeState, stores: FakeStores, f4: FakeF4) -> Migration:
    """A Migration whose etcd state, stores and f4 are the stand-ins above (each has only
    what ``step`` calls)."""
    return Migration(cast(DirectoryState, state), cast(StoreClient, stores), cast(F4Client, f4), CONFIG, FULL_RATIO)


def cluster_map(v: Volume, *, down: tuple[int, ...] = ()) -> ClusterMap:
    from directory.model import Store

    return ClusterMap(stores={m: Store(m, f"s{m}", f"r{m}", registered=True, down=m in down) for m in (1, 2, 3)},
                      volumes={v.id: v})


async def test_a_store_the_map_holds_down_does_not_stop_a_sealed_volume_moving():
    v = volume(4, State.SEALED)
    state, stores, f4 = FakeState(v), FakeStores(down={"s3"}), FakeF4()
    await moving(state, stores, f4).step(cluster_map(v, down=(3,)), v)
    assert f4.encoded == [4] and stores.read_only == ["s1", "s2"]
    assert state.volumes[4].state is State.WARM


async def test_a_store_that_is_up_but_refuses_the_read_only_flip_stops_the_encode():
    v = volume(4, State.SEALED)
    state, stores, f4 = FakeState(v), FakeStores(down={"s3"}), FakeF4()
    await moving(state, stores, f4).step(cluster_map(v), v)  # the map says s3 is up
    assert f4.encoded == [] and state.volumes[4].state is State.SEALED


def test_a_warm_volume_waiting_on_a_down_store_to_be_freed_does_not_hold_up_the_next():
    waiting = replace(volume(5, State.WARM), warm_ms=NOW_MS - DAY_MS)
    old = volume(6, age_days=60)
    cmap = cluster_map(waiting, down=(2,))
    cmap.volumes[6] = old
    assert migration(CONFIG.warm_after_s).next(cmap) == old
    cmap = cluster_map(waiting)
    cmap.volumes[6] = old
    assert migration(CONFIG.warm_after_s).next(cmap) == waiting


async def test_freeing_records_the_machines_once_and_a_repeat_keeps_them():
    """A freed volume keeps the machines that held it (photo URLs name one of them); freeing
    it again (a retry, a new leader repeating the step) must not wipe them."""

    class Freeing(FakeStores):
        async def free_volume(self, address, volume_id):
            self.read_only.append(f"freed {address}")

    warm = replace(volume(7, State.WARM), warm_ms=NOW_MS - DAY_MS)
    state, stores = FakeState(warm), Freeing(down=set())
    migration = moving(state, stores, FakeF4())
    await migration.step(cluster_map(warm), warm)
    freed = state.volumes[7]
    assert freed.replicas == () and freed.freed_machines == (1, 2, 3)
    await migration._free(cluster_map(warm), warm)  # the same step again, from a stale read of the volume
    assert state.volumes[7] == freed
    assert Volume.from_json(freed.to_json()).freed_machines == (1, 2, 3)  # kept in etcd's record
