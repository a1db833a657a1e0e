"""The shard map: which PostgreSQL instance holds each of the 8,192 logical shards.

The shard is in every id (``trenchcoat.ids``: ``[41 bits ms][13 bits shard][10 bits
sequence]``, the shard being the owner's ``user_id % 8192``), so a row is found without a
lookup: a media's row lives on the instance holding its id's shard, a user's rows on the
instance holding ``user_id % 8192``. The map is a handful of contiguous ranges, each
naming an instance by its id: made at random the first time a process connects and kept
in the instance itself (``pgmigrate.instance_id``), so it stays the same when the instance
moves host or port, whatever order the config lists DSNs in, and says nothing of credentials.

The map is kept in etcd (``shards/map``, beside the volume map), written only by the
operator (``trenchcoat shards init``); every process holding PostgreSQL rows reads it. A
cluster of one instance needs none: every shard is on it. A map that leaves a shard without
an instance, or names an instance no DSN of the config reaches, is refused naming the shards.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from trenchcoat import ids
from trenchcoat.errors import FailedPrecondition, Unavailable
from trenchcoat.etcd import LeasedKey
from trenchcoat.workers import PeriodicWorker

if TYPE_CHECKING:
    from trenchcoat.etcd import Etcd
    from trenchcoat.pgmigrate import Database

log = logging.getLogger(__name__)

T = TypeVar("T")

MAP_KEY = "shards/map"
"""The map's etcd key, under the cluster's prefix (``trenchcoat.etcd``)."""
HURRIED_S = 0.05
HURRY_FOR_S = 10.0
"""How often, and for how long, a process reads the map after an instance refused it a row."""
SEEN_PREFIX = "shards/seen/"
"""Where each process routing by the map says the version it routes by (``MapFollower``),
under a lease: the mover drops a moved shard's old copy once every one has the new map."""
SHARDS = ids.SHARD_COUNT


class ShardMapError(FailedPrecondition):
    """A map that cannot route every shard to a known instance."""


def address_of(dsn: str) -> str:
    """Where an instance is, as a person reads it: ``host:port/database`` of its DSN
    (libpq's defaults for what it leaves out), never its credentials."""
    url = urllib.parse.urlsplit(dsn)
    host = url.hostname or "localhost"
    return f"{host}:{url.port or 5432}/{url.path.lstrip('/') or 'postgres'}"


@dataclass(frozen=True, slots=True)
class ShardRange:
    """Logical shards ``first`` through ``last`` (both included), on ``instance``."""

    first: int
    last: int
    instance: str

    def __str__(self) -> str:
        shards = f"{self.first}" if self.first == self.last else f"{self.first}-{self.last}"
        return f"{shards} -> {self.instance}"


class ShardMap:
    """Logical shard -> instance name, for every shard; ``version`` grows with each change."""

    def __init__(self, ranges: Iterable[ShardRange], *, version: int = 1) -> None:
        self.ranges = tuple(sorted(ranges, key=lambda r: r.first))
        self.version = version
        self._owner: list[str | None] = [None] * SHARDS
        for r in self.ranges:
            if not 0 <= r.first <= r.last < SHARDS:
                raise ShardMapError(f"shard range {r.first}-{r.last} is outside 0-{SHARDS - 1}")
            for shard in range(r.first, r.last + 1):
                if self._owner[shard] is not None:
                    raise ShardMapError(f"shard {shard} is mapped twice ({self._owner[shard]} and {r.instance})")
                self._owner[shard] = r.instance
        missing = [s for s, owner in enumerate(self._owner) if owner is None]
        if missing:
            raise ShardMapError(f"shards {_spans(missing)} have no instance: every shard 0-{SHARDS - 1} needs one")

    @classmethod
    def even(cls, instances: Sequence[str], *, version: int = 1) -> ShardMap:
        """The shards split into ``len(instances)`` contiguous ranges of (nearly) equal size,
        in the order given: with owners spread evenly over shards, rows spread evenly."""
        if not instances:
            raise ShardMapError("a shard map needs at least one instance")
        if len(set(instances)) != len(instances):
            raise ShardMapError(f"an instance is named twice: {', '.join(instances)}")
        n = len(instances)
        bounds = [SHARDS * i // n for i in range(n + 1)]
        return cls((ShardRange(bounds[i], bounds[i + 1] - 1, name) for i, name in enumerate(instances)),
                   version=version)

    @property
    def instances(self) -> list[str]:
        """Every instance the map names, in shard order."""
        return list(dict.fromkeys(r.instance for r in self.ranges))

    def instance_of(self, shard: int) -> str:
        if not 0 <= shard < SHARDS:
            raise ValueError(f"shard {shard} is outside 0-{SHARDS - 1}")
        owner = self._owner[shard]
        assert owner is not None  # every shard has one (checked when made)
        return owner

    def instance_of_id(self, media_id: int) -> str:
        """Where the row of ``media_id`` (or of a post, whose id is its media's) lives."""
        return self.instance_of(ids.split_id(media_id)[1])

    def instance_of_user(self, user_id: int) -> str:
        """Where the rows ``user_id`` owns live (and the ids minted for them)."""
        return self.instance_of(ids.shard_for_user(user_id))

    def group(self, items: Iterable[T], shard_of: Callable[[T], int]) -> dict[str, list[T]]:
        """``items`` by the instance holding each one's shard (order kept within each)."""
        out: dict[str, list[T]] = {}
        for item in items:
            out.setdefault(self.instance_of(shard_of(item)), []).append(item)
        return out

    def group_ids(self, media_ids: Iterable[int]) -> dict[str, list[int]]:
        return self.group(media_ids, lambda m: ids.split_id(m)[1])

    def check(self, known: Mapping[str, str] | Collection[str]) -> None:
        """Raises ShardMapError naming the shards whose instance is not in ``known`` (the
        instances this process reaches: id, or id -> where it is): never route a row where
        nothing connects."""
        unknown = [r for r in self.ranges if r.instance not in known]
        if unknown:
            reached = ", ".join(known.values() if isinstance(known, Mapping) else sorted(known)) or "none"
            raise ShardMapError(
                "the shard map puts " + "; ".join(f"shards {r.first}-{r.last} on {r.instance}" for r in unknown)
                + f", an instance none of postgres.dsn and postgres.shard_dsns reaches (they reach {reached})")

    def held_by(self, instance: str) -> list[tuple[int, int]]:
        """The ranges ``instance`` holds, as (first, last)."""
        return [(r.first, r.last) for r in self.ranges if r.instance == instance]

    def moved(self, first: int, last: int, instance: str) -> ShardMap:
        """The next version of the map: shards ``first``-``last`` on ``instance``, the rest as
        they are (neighbouring ranges of one instance joined)."""
        owners = [self.instance_of(s) for s in range(SHARDS)]
        owners[first:last + 1] = [instance] * (last - first + 1)
        ranges: list[ShardRange] = []
        for shard, owner in enumerate(owners):
            if ranges and ranges[-1].instance == owner:
                ranges[-1] = ShardRange(ranges[-1].first, shard, owner)
            else:
                ranges.append(ShardRange(shard, shard, owner))
        return ShardMap(ranges, version=self.version + 1)

    def to_record(self) -> dict[str, Any]:
        return {"version": self.version, "ranges": [[r.first, r.last, r.instance] for r in self.ranges]}

    @classmethod
    def from_record(cls, doc: Mapping[str, Any]) -> ShardMap:
        try:
            return cls((ShardRange(int(first), int(last), str(instance)) for first, last, instance in doc["ranges"]),
                       version=int(doc["version"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ShardMapError(f"the stored shard map is not one: {exc!r}") from None

    def rows(self) -> list[str]:
        """The map as a person reads it: a line per range."""
        return [str(r) for r in self.ranges]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ShardMap) and (self.ranges, self.version) == (other.ranges, other.version)

    def __hash__(self) -> int:
        return hash((self.ranges, self.version))

    def __repr__(self) -> str:
        return f"ShardMap(v{self.version}: {'; '.join(self.rows())})"


async def stored(etcd: Etcd) -> ShardMap | None:
    """The map in etcd (None before ``init``)."""
    record = await etcd.get(MAP_KEY)
    return ShardMap.from_record(record.value) if record is not None else None


async def init(etcd: Etcd, instances: Sequence[str]) -> tuple[ShardMap, bool]:
    """Stores the shards split evenly over ``instances`` unless a map is stored already:
    (the map in force, True when stored now). An existing map is never replaced here: rows
    already live where it says (moving shards is ``trenchcoat shards move``)."""
    fresh = ShardMap.even(instances)
    if await etcd.create(MAP_KEY, fresh.to_record()):
        return fresh, True
    existing = await stored(etcd)
    if existing is None:
        raise ShardMapError("the shard map vanished while being made: try again")
    return existing, False


async def for_process(etcd: Etcd | None, instances: Mapping[str, str]) -> ShardMap | None:
    """The map a process holding rows on ``instances`` (id -> where it is) routes by: the
    stored one, checked against them; None (every shard on the one instance) when there is
    one instance and no map. Unavailable while several instances wait for a map (a process
    retries it for cluster.start_wait_s)."""
    found = await stored(etcd) if etcd is not None else None
    if found is None:
        if len(instances) > 1:
            raise Unavailable(f"no shard map for the {len(instances)} PostgreSQL instances "
                              f"({', '.join(instances.values())}): the operator makes it with `trenchcoat shards init`"
                              + ("" if etcd is not None else "; and it lives in etcd, which etcd.endpoints does not name"))
        return None
    found.check(instances)
    return found


class MapFollower(PeriodicWorker):
    """Keeps a process's ``Database`` routing by the stored map: reads it every
    ``interval_s`` and takes a newer version (one naming an instance the process does not
    reach is refused, said once, and the old map kept: the instance's guard then refuses
    writes of the shards it moved, rather than rows landing where no reader looks). Says
    the version it routes by under ``shards/seen/<process>``, held under a lease while the
    process lives (``seen``, a worker of its own)."""

    def __init__(self, etcd: Etcd, db: Database, process: str, *, interval_s: float = 0.5, ttl_s: int = 10) -> None:
        super().__init__("shard map", interval_s)
        self._etcd = etcd
        self._db = db
        self._refused = 0
        self._normal_s = interval_s
        self._hurry_until = 0.0
        db.on_refused = self.hurry
        self.seen = LeasedKey(etcd, SEEN_PREFIX + process, ttl_s,
                              lambda: {"version": db.shard_map.version, "process": process})

    def hurry(self) -> None:
        """An instance refused a row of a shard it no longer holds: the map is changing.
        Reads it now, and every ``HURRIED_S`` for ``HURRY_FOR_S``."""
        self._hurry_until = time.monotonic() + HURRY_FOR_S
        self.interval_s = HURRIED_S
        self.wake()

    async def tick(self) -> None:
        if time.monotonic() > self._hurry_until:
            self.interval_s = self._normal_s
        found = await stored(self._etcd)
        if found is None or found.version <= self._db.shard_map.version:
            return
        try:
            self._db.route_by(found)
        except ShardMapError as exc:
            if self._refused != found.version:
                log.error("shard map v%d not taken up (still routing by v%d): %s",
                          found.version, self._db.shard_map.version, exc)
                self._refused = found.version
            return
        log.info("shard map v%d taken up: %s", found.version, "; ".join(found.rows()))
        self.seen.wake()


async def seen_versions(etcd: Etcd) -> dict[str, int]:
    """Each live process routing by the map -> the version it routes by."""
    found, _ = await etcd.get_prefix(SEEN_PREFIX)
    return {key: int(record.value.get("version", 0)) for key, record in found.items()}


def _spans(shards: list[int]) -> str:
    """1, 2, 3, 7 -> '1-3, 7' (the first few spans)."""
    spans: list[str] = []
    start = prev = shards[0]
    for s in [*shards[1:], None]:
        if s is not None and s == prev + 1:
            prev = s
            continue
        spans.append(f"{start}" if start == prev else f"{start}-{prev}")
        if s is not None:
            start = prev = s
    return ", ".join(spans[:5]) + (f" and {len(spans) - 5} more ranges" if len(spans) > 5 else "")
