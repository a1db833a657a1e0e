"""trenchcoat/ops/admin.py's tables without a cluster: a volume's fill with how long ago its
stores reported it, the rebuilder's line with when it last scanned, one media's ``stat``
block (or why it has none), ages in words."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from trenchcoat import config
from trenchcoat.clients.directory import DamagedNeedleView, ReplacementView, ReplicaView, VolumeView
from trenchcoat.clients.f4 import RebuilderView
from trenchcoat.clients.media import Media, Rendition, StatResult
from trenchcoat.errors import FailedPrecondition
from trenchcoat.ops import admin

NOW_MS = 1_800_000_000_000
MiB = 1024 * 1024


def test_ages_read_in_the_largest_whole_unit_and_never_for_none():
    assert admin.age(NOW_MS - 3_400, NOW_MS) == "3s ago"
    assert admin.age(NOW_MS - 4 * 60_000 - 59_000, NOW_MS) == "4m ago"
    assert admin.age(NOW_MS - 2 * 3_600_000, NOW_MS) == "2h ago"
    assert admin.age(NOW_MS - 5 * 86_400_000, NOW_MS) == "5d ago"
    assert admin.age(0, NOW_MS) == "never"
    assert admin.age(NOW_MS + 5_000, NOW_MS) == "0s ago"  # clocks apart: never a negative age


def test_a_volumes_fill_is_shown_as_reported_with_how_long_ago():
    replicas = tuple(ReplicaView(m, 3, f"s{m}", m != 2, rack=f"rack-{'abc'[m - 1]}") for m in (1, 2, 3))
    reported = VolumeView(3, True, 0, replicas, state="writable", used_bytes=int(4.4 * MiB),
                          capacity_bytes=int(4.4 * MiB / 0.123), used_reported_unix_ms=NOW_MS - 3_000)
    fresh = VolumeView(4, True, 0, replicas, state="writable", capacity_bytes=MiB)
    header, three, four = admin.volume_lines([fresh, reported], NOW_MS)
    assert "REPORTED" in header
    assert three.split()[:6] == ["3", "writable", "12.3%", "4.4", "MiB", "(3s"]
    assert "(3s ago)" in three and three.endswith("1@rack-a  2@rack-b!  3@rack-c")
    assert "0.0%" in four and "(never)" in four  # a volume just created: its stores not heard yet
    warm = VolumeView(5, False, 0, (), state="warm", used_bytes=MiB, capacity_bytes=4 * MiB,
                      used_reported_unix_ms=NOW_MS - 86_400_000, freed_machines=(1, 2, 3))
    [_, five] = admin.volume_lines([warm], NOW_MS)
    assert "25.0%" in five and "(final)" in five and five.endswith("in f4 (hot copies freed from 1, 2, 3)")


def view(**changes: Any) -> RebuilderView:
    base = RebuilderView(rebuilds=[], throttle_bytes_per_s=32 * MiB, healthy_blocks=14, damaged_blocks=0,
                         lost_blocks=0, grace_s=900.0, last_scan_unix_ms=NOW_MS - 4_000, scan_interval_s=30.0)
    return replace(base, **changes)


def test_the_rebuilders_counts_say_how_old_its_last_scan_is():
    [summary, _none] = admin.rebuilder_lines("r:7680", view(), NOW_MS)
    assert summary == ("rebuilder at r:7680: blocks 14 healthy, 0 damaged or missing, 0 lost (last scan 4s ago, "
                       "every 30s); throttle 32.0 MiB/s of reads; grace 900 s")
    [summary, _none] = admin.rebuilder_lines("r:7680", view(last_scan_unix_ms=0), NOW_MS)
    assert "0 lost (no scan yet, every 30s);" in summary


PHOTO = Media(media_id=77, owner_id=42, content_type="image/jpeg", size_bytes=20_480, created_unix_ms=NOW_MS - 90_000,
              state="active", tier="warm", url="http://cdn:8080/1/2/5,000000000000004d8badf00d.jpg",
              width=1080, height=720, renditions_state="done",
              renditions=(Rendition(2, "image/jpeg", 3_072, 320, 213,
                                    "http://cdn:8080/1/3/9,000000000000004d8badf00d_2.jpg"),
                          Rendition(1, "image/jpeg", 1_024, 150, 150,
                                    "http://cdn:8080/1/3/9,000000000000004d8badf00d_1.jpg")))


def test_stat_shows_tier_state_owner_type_size_shape_created_url_and_each_rendition():
    lines = admin.stat_lines(StatResult(77, "found", PHOTO), NOW_MS)
    assert lines[0] == "media 77"
    facts = {line.split()[0]: " ".join(line.split()[1:]) for line in lines[1:] if line.startswith("  ") and
             not line.startswith("    ")}
    assert facts == {"tier": "warm", "state": "active", "owner": "42", "type": "image/jpeg",
                     "size": "20.0 KiB (20480 bytes)", "displayed": "1080 x 720",
                     "created": "2027-01-15 07:58:30 UTC (1m ago)", "url": f"{PHOTO.url} (volume 5)",
                     "renditions": "done"}
    sizes = [line.split() for line in lines if line.startswith("    ")]
    assert [s[:2] for s in sizes] == [["size", "1"], ["size", "2"]]  # by alternate key
    assert sizes[1][2:] == ["3.0", "KiB", "320", "x", "213", PHOTO.renditions[0].url, "(volume", "9)"]


def test_stat_says_what_is_unknown_and_why_an_id_has_no_facts():
    pending = admin.stat_lines(StatResult(77, "found", Media(
        media_id=77, owner_id=1, content_type="video/mp4", size_bytes=5, created_unix_ms=NOW_MS, state="active",
        tier="hot", url="", renditions_state="failed", renditions_error="cannot decode")), NOW_MS)
    assert "  displayed   unknown (not measured yet)" in pending
    assert "  renditions  failed: cannot decode" in pending
    assert admin.stat_lines(StatResult(5, "not_found"), NOW_MS) == ["media 5 does not exist"]
    assert admin.stat_lines(StatResult(6, "deleted"), NOW_MS) == ["media 6 was deleted"]
    assert admin.stat_lines(StatResult(7, "unavailable", reason="volume 3: no replica answers"), NOW_MS) == [
        "media 7 cannot be described now: volume 3: no replica answers"]


def test_the_verbs_call_the_addresses_the_config_gives():
    derived = config.Config()
    assert admin.router_address(derived) == f"{derived.cluster.host}:{derived.router.port}"
    assert admin.feed_address(derived) == f"{derived.cluster.host}:{derived.feed.port}"
    assert admin.transformer_address(derived) == f"{derived.cluster.host}:{derived.transformer.port}"
    named = config.load(env={"TRENCHCOAT_ROUTER__ENDPOINTS": "r1:7400,r2:7400",
                             "TRENCHCOAT_CACHE__TRANSFORMER_ENDPOINTS": "t:7500"})
    assert admin.router_address(named) == "r1:7400" and admin.transformer_address(named) == "t:7500"
    with pytest.raises(FailedPrecondition, match="no transformer worker"):
        admin.transformer_address(config.load(env={"TRENCHCOAT_TRANSFORMER__COUNT": "0"}))


def test_healing_lists_short_volumes_copies_under_way_with_progress_and_unrecoverable_needles():
    up = tuple(ReplicaView(m, 7, f"s{m}", True, rack=f"rack-{'abc'[m - 1]}") for m in (1, 2, 3))
    down = (*up[:2], ReplicaView(3, 7, "s3", False, rack="rack-c"))
    healthy = VolumeView(6, True, 0, up, state="writable", capacity_bytes=MiB)
    assert admin.healing_lines([healthy], [], {})[-1].startswith("Healing: every volume has all its replicas up")
    waiting = VolumeView(7, False, 0, down, state="read-only", repair=True, reason="store 3 is down")
    copying = VolumeView(8, False, 0, down, state="read-only", repair=True,
                         replacing=ReplacementView(3, 4, 1, "s4"))
    comparing = VolumeView(9, False, 0, up, state="read-only", repair=True, reason="replicas differ in content")
    damaged = [DamagedNeedleView(6, 0xABC, 0, (2,), False), DamagedNeedleView(6, 12345, 1, (1, 2, 3), True)]
    lines = admin.healing_lines([waiting, copying, comparing], damaged, {8: (3 * MiB, 4 * MiB)})
    text = "\n".join(lines)
    assert "volume 7: under-replicated (store 3 down)" in text
    assert "volume 8: under-replicated; new replica on store 4 copying from store 1 for lost store 3" in text
    assert "[##################------]  75%  3.0 MiB of 4.0 MiB" in text
    assert "volume 9: replicas being compared and repaired (replicas differ in content)" in text
    assert "1 damaged needles pending repair" in text and "0xabc/0  damaged on store 2" in text
    assert "1 UNRECOVERABLE needles" in text and "media 12345  alternate key 1  (stores 1, 2, 3)" in text
