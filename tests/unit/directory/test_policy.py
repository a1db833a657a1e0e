"""directory/policy.py: the leader's decisions without processes — which stores are down,
which volumes flip, which replicas a repair refills from which source, what growth
creates."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from directory import policy
from directory.model import ClusterMap, PlacementError, Replacing, Replica, State, Store, Volume
from trenchcoat.store_types import PhysicalVolume

GiB = 1 << 30


def store(m: int, rack: str = "", *, free: int = 100 * GiB, registered: bool = True, down: bool = False,
          recorded: bool = True) -> Store:
    return Store(machine_id=m, address=f"h:{m}", rack=rack or "abc"[(m - 1) % 3], free_bytes=free,
                 registered=registered, down=down, recorded=recorded)


def volume(v: int, machines: tuple[int, ...], state: State = State.WRITABLE, *, repair: bool = False,
           used: int = 0, capacity: int = GiB, used_ms: int = 0) -> Volume:
    return Volume(id=v, replicas=tuple(Replica(m, v) for m in machines), state=state, capacity_bytes=capacity,
                  created_ms=0, used_bytes=used, repair=repair, used_ms=used_ms)


def cluster(stores: list[Store], volumes: list[Volume]) -> ClusterMap:
    return ClusterMap(stores={s.machine_id: s for s in stores}, volumes={v.id: v for v in volumes})


def copy(v: int, *, file_bytes: int = 1000, needles: int = 10, deleted: int = 0, read_only: bool = False,
         live: int | None = None) -> PhysicalVolume:
    return PhysicalVolume(v, read_only, needles, deleted, file_bytes if live is None else live, file_bytes, GiB)


def ok(m: int, *volumes: PhysicalVolume) -> policy.Probe:
    return policy.Probe(m, {p.volume_id: p for p in volumes})


def failed(m: int, why: str = "UNAVAILABLE: connection refused") -> policy.Probe:
    return policy.Probe(m, None, why)


# --- pitchfork ---------------------------------------------------------------------------

MAP = cluster([store(1), store(2), store(3), store(4)],
              [volume(1, (1, 2, 3)), volume(2, (4, 2, 3)), volume(3, (1, 2, 3), State.READ_ONLY, used=GiB)])


def test_a_store_is_down_only_after_probe_failures_failed_probes_in_a_row():
    probes = {1: failed(1), 2: ok(2, copy(1), copy(2), copy(3)), 3: ok(3, copy(1), copy(2), copy(3)),
              4: ok(4, copy(2))}
    first = policy.judge_probes(MAP, probes, {}, probe_failures=3)
    assert first.failures[1] == 1 and not first.down and not first.read_only
    second = policy.judge_probes(MAP, probes, first.failures, probe_failures=3)
    assert second.failures[1] == 2 and not second.down
    third = policy.judge_probes(MAP, probes, second.failures, probe_failures=3)
    assert [(s.machine_id, why) for s, why in third.down] == [(1, "UNAVAILABLE: connection refused")]
    # Its writable volume turns read-only (it may have missed writes); the read-only one is left alone.
    assert third.read_only == [(1, "store 1 is down")]


def test_a_success_between_failures_starts_the_count_again():
    probes = {1: ok(1, copy(1), copy(3))}
    verdict = policy.judge_probes(MAP, probes, {1: 2}, probe_failures=3)
    assert verdict.failures[1] == 0 and not verdict.down


def test_a_lapsed_liveness_lease_is_down_at_once():
    lapsed = cluster([store(1, registered=False), store(2), store(3)], [volume(1, (1, 2, 3))])
    verdict = policy.judge_probes(lapsed, {1: failed(1, policy.LEASE_LAPSED)}, {}, probe_failures=3)
    assert [(s.machine_id, why) for s, why in verdict.down] == [(1, policy.LEASE_LAPSED)]
    assert verdict.read_only == [(1, "store 1 is down")]


def test_a_store_already_down_is_not_marked_again():
    down = cluster([store(1, down=True), store(2), store(3)], [volume(1, (1, 2, 3), State.READ_ONLY, repair=True)])
    verdict = policy.judge_probes(down, {1: failed(1)}, {1: 5}, probe_failures=3)
    assert not verdict.down and not verdict.read_only and verdict.failures[1] == 6


def test_a_store_passing_again_is_readmitted_and_a_new_one_recorded():
    cmap = cluster([store(1, down=True), store(2, recorded=False), store(3)], [volume(1, (1, 2, 3))])
    verdict = policy.judge_probes(cmap, {1: ok(1, copy(1)), 2: ok(2, copy(1)), 3: ok(3, copy(1))}, {1: 4},
                                  probe_failures=3)
    assert sorted(s.machine_id for s in verdict.up) == [1, 2]
    assert verdict.failures == {1: 0, 2: 0, 3: 0}


def test_a_store_that_lost_its_copy_has_the_volume_repaired():
    verdict = policy.judge_probes(MAP, {4: ok(4)}, {}, probe_failures=3)
    assert verdict.read_only == [(2, "store 4 lost its copy")]
    already = cluster([store(4)], [volume(2, (4,), State.READ_ONLY, repair=True)])
    assert not policy.judge_probes(already, {4: ok(4)}, {}, probe_failures=3).read_only


def test_a_volume_is_flipped_once_however_many_of_its_stores_fail():
    probes = {1: failed(1), 2: failed(2)}
    verdict = policy.judge_probes(MAP, probes, {1: 2, 2: 2}, probe_failures=3)
    assert sorted(s.machine_id for s, _ in verdict.down) == [1, 2]
    assert sorted(v for v, _ in verdict.read_only) == [1, 2]


# --- fill --------------------------------------------------------------------------------


def always(_: int) -> bool:
    return True


NOW_MS = 1_800_000_000_000
PROBE_S = 2.0
"""The probe interval the fill tests judge with."""
PROBE_MS = int(PROBE_S * 1000)


def judge(cmap: ClusterMap, reports, fresh=always, now_ms: int = NOW_MS) -> list[policy.Fill]:
    return policy.judge_fill(cmap, reports, 0.95, fresh, now_ms=now_ms, probe_interval_s=PROBE_S)


def test_a_volume_past_the_full_ratio_turns_read_only_without_repair():
    cmap = cluster([store(1), store(2), store(3)], [volume(1, (1, 2, 3))])
    reports = {1: {1: copy(1, file_bytes=GiB - 10)}, 2: {1: copy(1, file_bytes=100)}}
    [fill] = judge(cmap, reports)
    assert (fill.volume_id, fill.used_bytes, fill.read_only, fill.repair) == (1, GiB - 10, "full", False)
    assert fill.used_ms == NOW_MS  # the figure is stamped with when the stores reported it


def test_a_replica_refusing_writes_turns_the_volume_read_only_for_repair_unless_reports_are_stale():
    cmap = cluster([store(1), store(2), store(3)], [volume(1, (1, 2, 3), used=1000, used_ms=NOW_MS)])
    reports = {1: {1: copy(1)}, 2: {1: copy(1, read_only=True)}, 3: {1: copy(1)}}
    [fill] = judge(cmap, reports)
    assert fill.read_only == "a replica refuses writes" and fill.repair
    # Reports taken before a repair made the volume writable still say read-only: ignored.
    assert judge(cmap, reports, fresh=lambda _v: False) == []


def test_a_move_of_a_thousandth_of_capacity_is_recorded_at_the_next_probe():
    cmap = cluster([store(1)], [volume(1, (1,), used=5000, used_ms=NOW_MS)])
    [fill] = judge(cmap, {1: {1: copy(1, file_bytes=5000 + GiB // 1000)}}, now_ms=NOW_MS + PROBE_MS)
    assert fill == policy.Fill(1, 5000 + GiB // 1000, NOW_MS + PROBE_MS)


def test_a_small_move_waits_a_few_probes_then_is_recorded():
    # 400 KB on a GiB volume is less than a thousandth: it used to stay unrecorded (0 B) for ever.
    cmap = cluster([store(1)], [volume(1, (1,), used=8, used_ms=NOW_MS)])
    reports = {1: {1: copy(1, file_bytes=400_000)}}
    settle_ms = policy.FILL_SETTLE_PROBES * PROBE_MS
    assert judge(cmap, reports, now_ms=NOW_MS + PROBE_MS) == []  # not a write every probe for small moves
    assert judge(cmap, reports, now_ms=NOW_MS + settle_ms - 1) == []
    [fill] = judge(cmap, reports, now_ms=NOW_MS + settle_ms)
    assert fill == policy.Fill(1, 400_000, NOW_MS + settle_ms)


def test_an_unchanged_figure_is_stamped_again_only_after_the_refresh_period():
    cmap = cluster([store(1)], [volume(1, (1,), used=5000, used_ms=NOW_MS)])
    reports = {1: {1: copy(1, file_bytes=5000)}}
    refresh_ms = policy.FILL_REFRESH_PROBES * PROBE_MS
    assert judge(cmap, reports, now_ms=NOW_MS + refresh_ms - 1) == []
    assert judge(cmap, reports, now_ms=NOW_MS + refresh_ms) == [policy.Fill(1, 5000, NOW_MS + refresh_ms)]


def test_a_figure_never_reported_is_recorded_at_the_first_probe_whatever_it_is():
    # A volume just created, or a record written before reports were stamped (used_ms 0).
    cmap = cluster([store(1)], [volume(1, (1,), used=0), volume(2, (1,), used=700)])
    fills = judge(cmap, {1: {1: copy(1, file_bytes=8), 2: copy(2, file_bytes=700)}})
    assert fills == [policy.Fill(1, 8, NOW_MS), policy.Fill(2, 700, NOW_MS)]


def test_a_record_stamped_ahead_of_this_leaders_clock_does_not_hold_small_moves_back():
    cmap = cluster([store(1)], [volume(1, (1,), used=5000, used_ms=NOW_MS + 60_000)])
    assert judge(cmap, {1: {1: copy(1, file_bytes=5001)}}) == [policy.Fill(1, 5001, NOW_MS)]


def test_a_volume_no_store_reported_keeps_its_record():
    cmap = cluster([store(1)], [volume(1, (1,), used=5000, used_ms=1)])
    assert judge(cmap, {}) == []


def test_a_full_volume_already_read_only_is_left_alone():
    cmap = cluster([store(1)], [volume(1, (1,), State.READ_ONLY)])
    assert judge(cmap, {1: {1: copy(1, file_bytes=GiB)}}) == []


# --- repair ------------------------------------------------------------------------------


def test_only_volumes_marked_for_repair_with_every_store_up_and_none_in_progress_are_repaired():
    cmap = cluster([store(1), store(2), store(3), store(4, down=True)],
                   [volume(1, (1, 2, 3), repair=True), volume(2, (4, 2, 3), repair=True),
                    volume(3, (1, 2, 3), repair=True), volume(4, (1, 2, 3))])
    assert [v.id for v in policy.repairable(cmap, in_progress={3})] == [1]


def test_the_fullest_copy_is_the_source_and_every_differing_or_missing_copy_a_target():
    plan = policy.plan_repair({1: copy(1, file_bytes=900, needles=9), 2: copy(1, file_bytes=1000), 3: None})
    assert plan == policy.RepairPlan(source=2, targets=(1, 3), whole=(1, 3))  # stores that report no digest


def digested(v: int, digest: bytes, *, file_bytes: int = 1000, settled: bool = True) -> PhysicalVolume:
    return PhysicalVolume(v, True, 10, 0, file_bytes, file_bytes, GiB, digest, settled)


def test_copies_with_digests_catch_up_with_each_other_and_only_a_missing_copy_is_refilled_whole():
    copies = {1: digested(1, b"a", file_bytes=900), 2: digested(1, b"b"), 3: None, 4: digested(1, b"b")}
    plan = policy.plan_repair(copies)
    assert plan == policy.RepairPlan(source=2, targets=(1, 3), pulls=((2, 1), (1, 2)), whole=(3,))


def test_copies_whose_digests_match_need_nothing_even_when_their_files_differ_in_size():
    # One was compacted, or took its needles in another order: the same live needles.
    plan = policy.plan_repair({1: digested(1, b"a", file_bytes=900), 2: digested(1, b"a")})
    assert plan == policy.RepairPlan(source=2, targets=())


def test_a_digest_still_being_recounted_is_waited_for():
    plan = policy.plan_repair({1: digested(1, b"a", settled=False), 2: digested(1, b"b")})
    assert plan is not None and plan.wait and not plan.pulls and not plan.whole


def test_copies_that_match_need_no_copying():
    assert policy.plan_repair({1: copy(1), 2: copy(1), 3: copy(1)}) == policy.RepairPlan(source=1, targets=())


def test_a_copy_that_missed_a_delete_does_not_bring_the_needle_back():
    # Same bytes; replica 2 was down when the needle was deleted, so its flag is missing.
    plan = policy.plan_repair({1: copy(1, deleted=1, needles=9), 2: copy(1), 3: copy(1, deleted=1, needles=9)})
    assert plan == policy.RepairPlan(source=1, targets=(2,), whole=(2,))


def test_no_copy_anywhere_cannot_be_repaired():
    assert policy.plan_repair({1: None, 2: None}) is None


@given(st.lists(st.one_of(st.none(), st.tuples(st.integers(64, 10_000), st.integers(0, 100))), min_size=1,
                max_size=5))
def test_the_source_holds_at_least_as_much_as_every_other_copy(specs):
    copies = {m: None if spec is None else copy(1, file_bytes=spec[0], needles=spec[1])
              for m, spec in enumerate(specs, 1)}
    plan = policy.plan_repair(copies)
    present = {m: p for m, p in copies.items() if p is not None}
    if not present:
        assert plan is None
        return
    assert plan is not None
    source = copies[plan.source]
    assert source is not None
    assert all(source.file_bytes >= p.file_bytes for p in present.values())
    assert plan.source not in plan.targets
    # After the copy every replica holds what the source holds, and only changed ones were copied.
    after = {m: (source if m in plan.targets else p) for m, p in copies.items()}
    assert all(p is not None and p.same_contents(source) for p in after.values())
    assert all(copies[m] is None or copies[m] != source for m in plan.targets)


def test_a_repaired_volume_settles_writable_unless_full():
    assert policy.settled_state(copy(1, file_bytes=100), GiB, 0.95) is State.WRITABLE
    assert policy.settled_state(copy(1, file_bytes=GiB), GiB, 0.95) is State.READ_ONLY


def test_a_repaired_volume_asked_for_in_f4_stays_read_only():
    assert policy.settled_state(copy(1, file_bytes=100), GiB, 0.95, warm_requested=True) is State.READ_ONLY


# --- growth ------------------------------------------------------------------------------


def test_growth_creates_enough_volumes_each_across_distinct_racks_spreading_over_stores():
    stores = [store(m) for m in range(1, 7)]  # racks a, b, c, a, b, c
    cmap = cluster(stores, [volume(1, (1, 2, 3))])
    plans = policy.plan_growth(cmap, min_writable=3, copies=3, failures={}, rng=random.Random(1))
    assert len(plans) == 2
    assert all(len({s.rack for s in plan}) == 3 for plan in plans)
    # Counting the room each planned volume takes, the second lands on the other store of each rack.
    assert {s.machine_id for s in plans[0]}.isdisjoint({s.machine_id for s in plans[1]})


def test_growth_skips_stores_that_failed_a_probe_and_refuses_without_enough_racks():
    stores = [store(1, "a"), store(2, "b"), store(3, "c"), store(4, "c")]
    cmap = cluster(stores, [])
    [plan] = policy.plan_growth(cmap, min_writable=1, copies=3, failures={3: 1}, rng=random.Random(0))
    assert sorted(s.machine_id for s in plan) == [1, 2, 4]
    with pytest.raises(PlacementError, match="only 2 rack"):
        policy.plan_growth(cmap, min_writable=1, copies=3, failures={3: 1, 4: 1}, rng=random.Random(0))


def test_no_growth_when_enough_volumes_are_writable():
    cmap = cluster([store(m) for m in range(1, 4)], [volume(1, (1, 2, 3)), volume(2, (1, 2, 3))])
    assert policy.plan_growth(cmap, min_writable=2, copies=3, failures={}, rng=random.Random(0)) == []


# --- needle repair -----------------------------------------------------------------------


def damaged(v: int, *machines: int, key: int = 0xABC) -> policy.DamagedNeedle:
    return policy.DamagedNeedle(v, key, 0, frozenset(machines))


def test_a_needle_damaged_on_one_replica_is_rewritten_from_the_healthy_ones():
    plan = policy.plan_needle_repairs(MAP, [damaged(1, 2)])
    assert [(r.target, r.sources) for r in plan.repairs] == [(2, (1, 3))]
    assert not plan.unrecoverable and not plan.stale and not plan.whole_volume


def test_a_needle_damaged_on_every_replica_is_unrecoverable_and_never_rewritten():
    plan = policy.plan_needle_repairs(MAP, [damaged(1, 1, 2, 3)])
    assert plan.unrecoverable == [damaged(1, 1, 2, 3)] and not plan.repairs


def test_a_healthy_copy_on_a_down_store_is_waited_for_not_called_unrecoverable():
    down = cluster([store(1), store(2), store(3, down=True)], [volume(1, (1, 2, 3))])
    plan = policy.plan_needle_repairs(down, [damaged(1, 1, 2)])
    assert not plan.repairs and not plan.unrecoverable


def test_reports_of_a_store_not_holding_the_volume_or_of_a_warm_volume_are_forgotten():
    warm = cluster([store(1), store(2), store(3), store(4)], [volume(1, (1, 2, 3)), volume(2, (1, 2, 3), State.WARM)])
    plan = policy.plan_needle_repairs(warm, [damaged(1, 4), damaged(2, 1), damaged(9, 1)])
    assert [(n.volume_id, m) for n, m in plan.stale] == [(1, 4), (2, 1), (9, 1)]
    assert not plan.repairs


def test_an_unreadable_region_with_no_key_is_the_volume_repairs_work():
    plan = policy.plan_needle_repairs(MAP, [damaged(1, 2, key=0)])
    assert plan.whole_volume == [damaged(1, 2, key=0)] and not plan.repairs


@given(st.lists(st.tuples(st.integers(1, 3), st.frozensets(st.integers(1, 5), min_size=1)), max_size=8),
       st.frozensets(st.integers(1, 5)))
def test_no_repair_uses_a_damaged_or_dead_source_nor_targets_a_store_without_the_volume(reports, dead):
    stores = [store(m, down=m in dead) for m in range(1, 6)]
    cmap = cluster(stores, [volume(1, (1, 2, 3)), volume(2, (3, 4, 5)), volume(3, (1, 4, 5), State.READ_ONLY)])
    needles = [policy.DamagedNeedle(v, 7, 0, machines) for v, machines in reports]
    plan = policy.plan_needle_repairs(cmap, needles)
    for repair in plan.repairs:
        replicas = {r.machine_id for r in cmap.volumes[repair.needle.volume_id].replicas}
        assert repair.target in replicas and repair.target in repair.needle.machines
        assert repair.sources and all(s in replicas and s not in repair.needle.machines and s not in dead
                                      for s in repair.sources)
    for needle in plan.unrecoverable:
        assert {r.machine_id for r in cmap.volumes[needle.volume_id].replicas} <= needle.machines


# --- contents ----------------------------------------------------------------------------


def reports_of(digests: dict[int, bytes], *, file_bytes: int = 1000, volume_id: int = 1) -> dict[int, dict[int, PhysicalVolume]]:
    return {m: {volume_id: digested(volume_id, d, file_bytes=file_bytes)} for m, d in digests.items()}


def test_replicas_differing_in_two_quiet_probes_are_repaired():
    before = reports_of({1: b"a", 2: b"a", 3: b"b"})
    assert policy.judge_contents(MAP, before, before) == [1]


def test_replicas_differing_while_writes_land_are_not():
    before = reports_of({1: b"a", 2: b"a", 3: b"b"}, file_bytes=900)
    now = reports_of({1: b"a", 2: b"a", 3: b"b"})
    assert policy.judge_contents(MAP, now, before) == []
    assert policy.judge_contents(MAP, now, {}) == []  # nothing to compare with yet


def test_matching_unsettled_or_repairing_replicas_are_left_alone():
    same = reports_of({1: b"a", 2: b"a", 3: b"a"})
    assert policy.judge_contents(MAP, same, same) == []
    unsettled = {**reports_of({1: b"a", 2: b"a"}), 3: {1: digested(1, b"b", settled=False)}}
    assert policy.judge_contents(MAP, unsettled, unsettled) == []
    repairing = cluster(list(MAP.stores.values()), [volume(1, (1, 2, 3), State.READ_ONLY, repair=True)])
    differ = reports_of({1: b"a", 2: b"a", 3: b"b"})
    assert policy.judge_contents(repairing, differ, differ) == []


# --- re-replication ----------------------------------------------------------------------


def lost_map(*extra: Store, free4: int = 100 * GiB) -> ClusterMap:
    return cluster([store(1, "a"), store(2, "b"), store(3, "c", down=True, registered=False),
                    store(4, "c", free=free4), store(5, "a", free=500 * GiB), *extra],
                   [volume(1, (1, 2, 3), State.READ_ONLY, repair=True, used=GiB // 2)])


def held(*machines: int, file_bytes: int = 1000, volume_id: int = 1) -> dict[int, dict[int, PhysicalVolume]]:
    return {m: {volume_id: digested(volume_id, b"d", file_bytes=file_bytes)} for m in machines}


def test_a_lost_stores_copy_goes_to_a_rack_the_volume_does_not_use_even_if_a_freer_store_is_elsewhere():
    plans = policy.plan_replacements(lost_map(), held(1, 2), {3}, {})
    assert [(v.id, r) for v, r in plans] == [(1, Replacing(lost=3, new=4, source=1))]


def test_with_no_unused_rack_left_the_least_used_rack_takes_it():
    cmap = cluster([store(1, "a"), store(2, "b"), store(3, "b", down=True), store(5, "a"), store(6, "b")],
                   [volume(1, (1, 2, 3), State.READ_ONLY)])
    plans = policy.plan_replacements(cmap, held(1, 2), {3}, {})
    assert [r.new for _, r in plans] in ([5], [6])  # a and b each hold one: either is least used


def test_the_source_is_the_fullest_live_copy_never_a_lagging_one():
    reports = {1: {1: digested(1, b"old", file_bytes=800)}, 2: {1: digested(1, b"new", file_bytes=1000)}}
    [(_, replacing)] = policy.plan_replacements(lost_map(), reports, {3}, {})
    assert replacing.source == 2


def test_no_store_with_room_no_replacement():
    cmap = cluster([store(1, "a"), store(2, "b"), store(3, "c", down=True), store(4, "c", free=GiB // 4)],
                   [volume(1, (1, 2, 3), State.READ_ONLY, used=GiB // 2)])
    assert policy.plan_replacements(cmap, held(1, 2, file_bytes=GiB // 2), {3}, {}) == []


def test_a_writable_volume_needs_room_for_its_whole_capacity_and_a_volume_under_way_is_left_alone():
    cmap = cluster([store(1, "a"), store(2, "b"), store(3, "c", down=True), store(4, "c", free=GiB // 2)],
                   [volume(1, (1, 2, 3), State.WRITABLE)])
    assert policy.plan_replacements(cmap, held(1, 2), {3}, {}) == []
    busy = lost_map()
    busy.volumes[1] = replace(busy.volumes[1], replacing=Replacing(3, 4, 1))
    assert policy.plan_replacements(busy, held(1, 2), {3}, {}) == []


def test_only_stores_down_past_the_grace_are_lost():
    cmap = cluster([replace(store(1), down=True, down_ms=1_000), replace(store(2), down=True, down_ms=9_000),
                    store(3)], [])
    assert policy.lost_stores(cmap, now_ms=11_000, replace_after_s=5) == {1}


@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 3 * GiB), st.booleans()), min_size=4, max_size=9),
       st.lists(st.integers(0, 2000), min_size=9, max_size=9), st.sampled_from([State.WRITABLE, State.READ_ONLY]))
def test_a_replacement_goes_to_a_live_store_with_room_on_a_new_rack_when_one_can_and_copies_the_fullest(
        specs, sizes, state):
    stores = [store(m, rack, free=free, down=down) for m, (rack, free, down) in enumerate(specs, 1)]
    stores[2] = replace(stores[2], down=True)
    vol = volume(1, (1, 2, 3), state, used=GiB // 2)
    cmap = cluster(stores, [vol])
    reports = {m: {1: digested(1, b"x", file_bytes=sizes[m - 1])} for m in range(1, len(stores) + 1)}
    for _, r in policy.plan_replacements(cmap, reports, {3}, {}):
        new = cmap.stores[r.new]
        need = vol.capacity_bytes if state is State.WRITABLE else reports[r.source][1].file_bytes
        assert new.alive and r.new not in (1, 2, 3) and new.free_bytes >= need
        staying_racks = {cmap.rack(m) for m in (1, 2)}
        candidates = [s for s in stores if s.alive and s.machine_id > 3 and s.free_bytes >= need]
        if any(s.rack not in staying_racks for s in candidates):
            assert new.rack not in staying_racks
        alive_staying = [m for m in (1, 2) if cmap.alive(m)]
        assert r.source in alive_staying
        assert all(sizes[r.source - 1] >= sizes[m - 1] for m in alive_staying)


def test_a_stale_copy_is_freed_only_while_every_named_replica_is_up_holds_it_and_matches():
    cmap = cluster([store(1), store(2), store(3), store(4)], [volume(1, (1, 2, 4), State.READ_ONLY)])
    assert policy.stale_copies(cmap, held(1, 2, 3, 4)) == [(3, 1)]
    assert policy.stale_copies(cmap, held(1, 2, 3)) == []  # store 4 does not hold it (yet)
    differ = {**held(1, 2, 3), 4: {1: digested(1, b"other")}}
    assert policy.stale_copies(cmap, differ) == []
    down = cluster([store(1), store(2), store(3), store(4, down=True)], [volume(1, (1, 2, 4), State.READ_ONLY)])
    assert policy.stale_copies(down, held(1, 2, 3, 4)) == []


@given(st.lists(st.frozensets(st.integers(1, 5), max_size=5), min_size=1, max_size=4),
       st.frozensets(st.integers(1, 5)), st.lists(st.booleans(), min_size=5, max_size=5))
def test_no_named_replica_and_never_the_last_good_copy_is_freed(holders, dead, same):
    stores = [store(m, down=m in dead) for m in range(1, 6)]
    volumes = [volume(v, tuple(sorted(h))) for v, h in enumerate(holders, 1) if h]
    cmap = cluster(stores, volumes)
    reports = {m: {v.id: digested(v.id, b"a" if same[m - 1] else b"b") for v in volumes} for m in range(1, 6)}
    for machine_id, volume_id in policy.stale_copies(cmap, reports):
        named = {r.machine_id for r in cmap.volumes[volume_id].replicas}
        assert machine_id not in named
        assert named and all(cmap.alive(m) for m in named)
        assert len({reports[m][volume_id].digest for m in named}) == 1


def test_a_copy_with_a_needle_awaiting_repair_is_not_a_source_while_a_clean_one_exists():
    reports = {1: {1: digested(1, b"d", file_bytes=1000)}, 2: {1: digested(1, b"d", file_bytes=1000)}}
    [(_, replacing)] = policy.plan_replacements(lost_map(), reports, {3}, {}, {1: {1}})
    assert replacing.source == 2
    assert policy.plan_replacements(lost_map(), reports, {3}, {}, {1: {1, 2}}) == []  # wait for the needle repair


def test_unknown_copies_are_those_of_ids_the_map_does_not_hold():
    cmap = cluster([store(1), store(2), store(3)], [volume(1, (1, 2, 3))])
    reports = {**held(1, 2, 3), 2: {1: digested(1, b"x"), 7: digested(7, b"")}}
    assert [(m, c.volume_id) for m, c in policy.unknown_copies(cmap, reports)] == [(2, 7)]
    assert policy.unknown_copies(cmap, held(1, 2, 3)) == []
