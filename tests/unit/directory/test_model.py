"""directory/model.py: placement, write choice and read order, as pure functions."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from directory.model import (
    ClusterMap,
    PlacementError,
    Replica,
    State,
    Store,
    Volume,
    choose_for_write,
    place,
)


def store(m: int, rack: str, free: int = 100, *, alive: bool = True) -> Store:
    return Store(machine_id=m, address=f"h:{m}", rack=rack, free_bytes=free, registered=alive)


@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 1000), st.booleans()), max_size=20),
       st.integers(1, 4), st.integers(0, 2**32))
def test_placement_never_puts_two_replicas_on_one_rack(specs, copies, seed):
    stores = [store(i, rack, free, alive=alive) for i, (rack, free, alive) in enumerate(specs)]
    live_racks = {s.rack for s in stores if s.alive}
    if len(live_racks) < copies:
        with pytest.raises(PlacementError, match=f"only {len(live_racks)} rack"):
            place(stores, copies, random.Random(seed))
        return
    chosen = place(stores, copies, random.Random(seed))
    assert len(chosen) == copies
    assert len({s.rack for s in chosen}) == copies
    assert all(s.alive for s in chosen)


def test_placement_prefers_the_freest_store_of_each_rack():
    stores = [store(1, "a", 10), store(2, "a", 500), store(3, "b", 50), store(4, "c", 70), store(5, "c", 5)]
    assert sorted(s.machine_id for s in place(stores, 3, random.Random(0))) == [2, 3, 4]


def test_placement_refusal_names_the_racks_and_the_fix():
    with pytest.raises(PlacementError) as info:
        place([store(1, "a"), store(2, "b"), store(3, "c", alive=False)], 3, random.Random(0))
    assert "only 2 rack(s) (a, b)" in str(info.value) and "directory.replicas" in str(info.value)


def volume(vid: int, machines: tuple[int, ...], used: int = 0, state: State = State.WRITABLE,
           repair: bool = False) -> Volume:
    return Volume(vid, tuple(Replica(m, vid) for m in machines), state, 1000, 0, used_bytes=used, repair=repair)


def test_writable_needs_state_room_no_repair_and_every_replica_alive():
    cmap = ClusterMap(
        stores={1: store(1, "a"), 2: store(2, "b"), 3: store(3, "c", alive=False)},
        volumes={
            1: volume(1, (1, 2)),
            2: volume(2, (1, 3)),  # a dead replica
            3: volume(3, (1, 2), used=990),  # no room for 20 bytes
            4: volume(4, (1, 2), state=State.READ_ONLY),
            5: volume(5, (1, 2), repair=True),
        },
    )
    assert [v.id for v in cmap.writable(size=20)] == [1]
    assert cmap.writable(size=20, exclude=[1]) == []


def test_read_order_puts_live_replicas_first_and_rotates_them():
    cmap = ClusterMap(stores={1: store(1, "a"), 2: store(2, "b", alive=False), 3: store(3, "c")},
                      volumes={})
    v = volume(1, (1, 2, 3))
    orders = {tuple(r.machine_id for r in cmap.read_order(v, turn)) for turn in range(4)}
    assert orders == {(1, 3, 2), (3, 1, 2)}


def test_choose_for_write_takes_the_emptier_of_two():
    a, b = volume(1, (1,), used=900), volume(2, (1,), used=10)
    assert all(choose_for_write([a, b], random.Random(s)).id == 2 for s in range(20))


def test_volume_records_round_trip_through_json():
    v = volume(7, (1, 2, 3), used=55, state=State.READ_ONLY, repair=True)
    assert Volume.from_json(v.to_json()) == v
    asked = replace(v, repair=False, warm_requested=True)
    assert Volume.from_json(asked.to_json()) == asked


def test_when_a_fill_was_reported_round_trips_and_an_older_record_reads_as_never_reported():
    v = replace(volume(7, (1, 2, 3), used=4_600_000), used_ms=1_800_000_000_123)
    assert Volume.from_json(v.to_json()) == v
    old = v.to_json()
    del old["used_ms"]  # written before fills were stamped
    assert Volume.from_json(old) == replace(v, used_ms=0)


def test_a_record_written_before_warm_requested_existed_reads_as_not_requested():
    old = volume(7, (1, 2, 3), state=State.READ_ONLY).to_json()
    del old["warm_requested"]
    assert not Volume.from_json(old).warm_requested
