"""trenchcoat/shards.py: the shard map routes every id and user to one instance, spreads
owners evenly, and refuses a map that leaves a shard nowhere or names an unknown instance."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trenchcoat import ids
from trenchcoat.shards import SHARDS, ShardMap, ShardMapError, ShardRange, address_of

A, B, C = "db-a:5432/trenchcoat", "db-b:5432/trenchcoat", "db-c:6432/trenchcoat"


def test_an_even_map_spreads_random_owners_evenly_over_instances():
    """bench.shards' rows_max_over_mean, as a bound: 100k random owners over two and three instances."""
    rng = random.Random(7)
    owners = [rng.randrange(1, 1 << 62) for _ in range(100_000)]
    for names in ([A, B], [A, B, C]):
        shard_map = ShardMap.even(names)
        rows = dict.fromkeys(names, 0)
        for owner in owners:
            rows[shard_map.instance_of_user(owner)] += 1
        assert max(rows.values()) / (len(owners) / len(names)) <= 1.05, rows


def test_ids_and_users_route_to_the_instance_holding_their_shard():
    shard_map = ShardMap.even([A, B])
    assert shard_map.rows() == [f"0-4095 -> {A}", f"4096-8191 -> {B}"]
    for user in (0, 1, 4095, 4096, 8191, 8192, 12_288, 10**15):
        shard = ids.shard_for_user(user)
        media_id = ids.make_id(123_456, shard, 9)
        assert shard_map.instance_of_user(user) == shard_map.instance_of_id(media_id) == (A if shard < 4096 else B)
    minted = [ids.make_id(1, s, 0) for s in (1, 5000, 2, 8000)]
    assert shard_map.group_ids(minted) == {A: [minted[0], minted[2]], B: [minted[1], minted[3]]}


@given(st.lists(st.integers(0, SHARDS - 2), min_size=1, max_size=6, unique=True))
def test_any_cut_of_the_shards_into_ranges_is_a_map_and_each_shard_has_one_instance(cuts):
    bounds = [0, *sorted(c + 1 for c in cuts), SHARDS]
    bounds = sorted(set(bounds))
    ranges = [ShardRange(lo, hi - 1, f"h{i}:5432/t") for i, (lo, hi) in enumerate(itertools.pairwise(bounds))]
    shard_map = ShardMap(ranges, version=3)
    for r in ranges:
        assert shard_map.instance_of(r.first) == shard_map.instance_of(r.last) == r.instance
    assert ShardMap.from_record(shard_map.to_record()) == shard_map


def test_a_map_leaving_shards_nowhere_or_mapping_one_twice_is_refused_naming_them():
    with pytest.raises(ShardMapError, match="shards 100-199 have no instance"):
        ShardMap([ShardRange(0, 99, A), ShardRange(200, SHARDS - 1, B)])
    with pytest.raises(ShardMapError, match="shard 50 is mapped twice"):
        ShardMap([ShardRange(0, 50, A), ShardRange(50, SHARDS - 1, B)])
    with pytest.raises(ShardMapError, match="outside 0-8191"):
        ShardMap([ShardRange(0, SHARDS, A)])
    with pytest.raises(ShardMapError, match="not one"):
        ShardMap.from_record({"version": 1, "ranges": [[0, "x"]]})


def test_a_map_naming_an_instance_without_a_dsn_is_refused_before_any_row_goes_there():
    shard_map = ShardMap.even([A, B])
    shard_map.check({A, B, C})
    with pytest.raises(ShardMapError, match=f"shards 4096-8191 on {B}, an instance none of postgres.dsn and "
                                            "postgres.shard_dsns reaches"):
        shard_map.check({A: "10.0.0.5:5432/trenchcoat"})


def test_an_instance_is_shown_by_where_it_is_never_with_its_credentials():
    dsn = "postgresql://trenchcoat:s3cret@10.0.0.5:6543/media?sslmode=verify-full&sslrootcert=/ca.crt"
    assert address_of(dsn) == "10.0.0.5:6543/media"
    assert address_of("postgres://u@pg/") == "pg:5432/postgres"
