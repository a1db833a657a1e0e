"""trenchcoat.ids: layout, round trips, ordering, uniqueness, clock steps."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trenchcoat import ids

ms_st = st.integers(0, ids.MAX_MS)
shard_st = st.integers(0, ids.MAX_SHARD)
seq_st = st.integers(0, ids.MAX_SEQUENCE)


def test_epoch_is_2026_01_01_utc():
    assert int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000) == ids.EPOCH_MS


def test_layout_is_41_13_10_bits():
    assert ids.make_id(1, 0, 0) == 1 << 23
    assert ids.make_id(0, 1, 0) == 1 << 10
    assert ids.make_id(0, 0, 1) == 1
    assert ids.make_id(ids.MAX_MS, ids.MAX_SHARD, ids.MAX_SEQUENCE) == (1 << 64) - 1


@given(ms_st, shard_st, seq_st)
def test_split_inverts_make(ms, shard, seq):
    assert ids.split_id(ids.make_id(ms, shard, seq)) == (ms, shard, seq)


@given(st.tuples(ms_st, shard_st, seq_st), st.tuples(ms_st, shard_st, seq_st))
def test_id_order_is_ms_then_shard_then_seq(a, b):
    assert (ids.make_id(*a) < ids.make_id(*b)) == (a < b)


@given(st.integers(0, ids.MAX_ID), st.integers(0, ids.MAX_ID))
def test_signed_mapping_round_trips_and_keeps_order(a, b):
    sa, sb = ids.to_signed(a), ids.to_signed(b)
    assert -(1 << 63) <= sa < (1 << 63)
    assert ids.from_signed(sa) == a
    assert (sa < sb) == (a < b)


def test_signed_mapping_edges():
    top_bit = ids.make_id(1 << 40, 0, 0)  # first id that overflows a signed bigint
    assert top_bit == 1 << 63
    assert ids.to_signed(top_bit - 1) == -1
    assert ids.to_signed(top_bit) == 0
    assert ids.to_signed(ids.MAX_ID) == (1 << 63) - 1


@pytest.mark.parametrize(
    "args",
    [(-1, 0, 0), (ids.MAX_MS + 1, 0, 0), (0, -1, 0), (0, ids.SHARD_COUNT, 0), (0, 0, -1), (0, 0, 1024)],
)
def test_make_id_rejects_out_of_range(args):
    with pytest.raises(ValueError):
        ids.make_id(*args)


@pytest.mark.parametrize("args", [(1.5, 0, 0), (True, 0, 0), ("1", 0, 0)])
def test_make_id_rejects_non_integers(args):
    with pytest.raises(TypeError):
        ids.make_id(*args)


@pytest.mark.parametrize("bad", [-1, 1 << 64])
def test_split_id_rejects_out_of_range(bad):
    with pytest.raises(ValueError):
        ids.split_id(bad)


@pytest.mark.parametrize("bad", [2.0, None])
def test_split_id_rejects_non_integers(bad):
    with pytest.raises(TypeError):
        ids.split_id(bad)


@pytest.mark.parametrize("bad", [-1, ids.SHARD_COUNT])
def test_generator_rejects_a_shard_out_of_range(bad):
    with pytest.raises(ValueError):
        ids.IdGenerator(bad)


def test_generator_rejects_a_shard_that_is_not_an_integer() -> None:
    with pytest.raises(TypeError):
        ids.IdGenerator("3")  # type: ignore[arg-type]  # deliberately a str: refused


def test_shard_for_user_is_modulo_8192():
    assert ids.shard_for_user(8193) == 1
    assert ids.shard_for_user(0) == 0
    with pytest.raises(ValueError):
        ids.shard_for_user(-5)


def test_unix_ms_reads_the_time_back():
    assert ids.unix_ms(ids.make_id(1234, 5, 6)) == ids.EPOCH_MS + 1234


class FakeClock:
    def __init__(self, start: int) -> None:
        self.now = start
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.now


def test_generator_embeds_shard_and_time():
    gen = ids.IdGenerator(42, clock=FakeClock(1000))
    assert ids.split_id(gen.next_id()) == (1000, 42, 0)
    assert ids.split_id(gen.next_id()) == (1000, 42, 1)


def test_generator_waits_for_next_ms_when_sequence_is_used_up():
    clock = FakeClock(500)

    def tick_after_many_reads() -> int:
        clock.calls += 1
        if clock.calls > 1030:  # the generator polls the clock while it waits
            clock.now = 501
        return clock.now

    gen = ids.IdGenerator(1, clock=tick_after_many_reads)
    got = [ids.split_id(gen.next_id()) for _ in range(1025)]
    assert got[1023] == (500, 1, 1023)
    assert got[1024] == (501, 1, 0)


def test_clock_step_back_never_yields_a_smaller_id():
    clock = FakeClock(10_000)
    gen = ids.IdGenerator(7, clock=clock)
    first = [gen.next_id() for _ in range(3)]
    clock.now = 9_000  # NTP steps the clock back one second
    during = [gen.next_id() for _ in range(3000)]  # more than one ms worth of sequence
    clock.now = 10_500
    after = gen.next_id()
    seq = first + during + [after]
    assert seq == sorted(seq) and len(set(seq)) == len(seq)
    # While behind, it ran ahead on a logical clock rather than waiting a second.
    assert ids.split_id(during[-1])[0] == 10_002
    assert ids.split_id(after) == (10_500, 7, 0)


@given(st.lists(st.integers(-5, 5), min_size=1, max_size=3000))
def test_generator_is_strictly_increasing_under_any_clock(steps):
    now = [100_000]

    def clock() -> int:
        return now[0]

    gen = ids.IdGenerator(3, clock=clock)
    last = -1
    for step in steps:
        now[0] = max(0, now[0] + step)
        value = gen.next_id()
        assert value > last
        last = value


def test_no_duplicates_across_threads():
    gen = ids.IdGenerator(9)
    out: list[list[int]] = [[] for _ in range(8)]

    def work(bucket: list[int]) -> None:
        for _ in range(5000):
            bucket.append(gen.next_id())

    threads = [threading.Thread(target=work, args=(b,)) for b in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for bucket in out for i in bucket]
    assert len(set(everything)) == 40_000
    for bucket in out:  # each thread sees its own ids increase
        assert bucket == sorted(bucket)


async def test_no_duplicates_across_tasks():
    gen = ids.IdGenerator(11)

    async def work() -> list[int]:
        got = []
        for _ in range(2000):
            got.append(gen.next_id())
            if len(got) % 100 == 0:
                await asyncio.sleep(0)
        return got

    buckets = await asyncio.gather(*(work() for _ in range(10)))
    everything = [i for b in buckets for i in b]
    assert len(set(everything)) == len(everything) == 20_000
    assert all(ids.split_id(i)[1] == 11 for i in everything)
