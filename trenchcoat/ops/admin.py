"""Client verbs of the ``trenchcoat`` command that talk to a running cluster:
``put`` (upload a file), ``get`` (a media's bytes), ``stat`` (what is known of media),
``rm`` (delete one), ``volumes`` (the volume map), ``warm`` (volumes in f4, their blocks'
health and the cell's rebuilds), ``migrate`` (one volume into f4 now), the Directory part
of ``status`` (stores and leader), and the feed's ``follow``, ``unfollow``, ``post`` and
``feed``. Each runs one event loop with its own channel pool, through the chassis's
clients."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from trenchcoat import pgmigrate, shardmove, shards
from trenchcoat.clients.directory import DamagedNeedleView, DirectoryClient, VolumeView
from trenchcoat.clients.f4 import F4Client, RebuilderClient, RebuilderView, RebuildView
from trenchcoat.clients.feed import FeedClient, FeedEntry, FeedPage
from trenchcoat.clients.media import Media, MediaClient, StatResult
from trenchcoat.clients.store import StoreClient
from trenchcoat.clients.transformer import JobView, TransformerClient
from trenchcoat.config import Config
from trenchcoat.errors import FailedPrecondition, NotFound, TrenchcoatError, Unavailable
from trenchcoat.etcd import Etcd
from trenchcoat.rendition_keys import describe
from trenchcoat.rpc import ChannelPool
from trenchcoat.shards import ShardMap
from trenchcoat.urls import MalformedURL, parse_path

T = TypeVar("T")


def router_address(config: Config) -> str:
    """The router the verbs call: the first of the config's (router.endpoints, or derived)."""
    return config.router_endpoints()[0]


def feed_address(config: Config) -> str:
    return config.feed_endpoints()[0]


def transformer_address(config: Config) -> str:
    endpoints = config.transformer_endpoints()
    if not endpoints:
        raise FailedPrecondition("no transformer worker in the config: transformer.count is 0 and "
                                 "cache.transformer_endpoints is empty")
    return endpoints[0]


def _run(config: Config, ask: Callable[[ChannelPool], Awaitable[T]]) -> T:
    async def main() -> T:
        async with ChannelPool() as pool:
            return await ask(pool)

    return asyncio.run(main())


def put(config: Config, path: Path, user: int, content_type: str = "", key: str = "") -> Media:
    return _run(config, lambda pool: MediaClient(pool, router_address(config)).upload(
        path, owner_id=user, content_type=content_type, idempotency_key=key))


def get(config: Config, media_id: int, alternate_key: int = 0) -> tuple[Media, bytes]:
    """A media's facts and the bytes of its original (or of the rendition ``alternate_key``),
    through the router's Read: the way any client reads by media_id, whatever the tier."""
    return _run(config, lambda pool: MediaClient(pool, router_address(config)).read(
        media_id, alternate_key=alternate_key))


def delete(config: Config, media_id: int) -> bool:
    """Deletes a media everywhere (the router's Delete); False if it already was."""
    return _run(config, lambda pool: delete_for_owner(MediaClient(pool, router_address(config)), media_id))


async def delete_for_owner(client: MediaClient, media_id: int) -> bool:
    """The operator's delete: the router's Delete acting for the media's owner (the operator
    holds the cluster's user-token key, ``tokens.use``); False if it already was deleted."""
    found = (await client.batch_stat([media_id]))[0]
    if found.outcome == "deleted":
        return False
    if found.media is None:
        raise NotFound(f"media {media_id}: {found.reason or found.outcome.replace('_', ' ')}")
    return await client.delete(media_id, owner_id=found.media.owner_id)


STAT_BATCH = 1000
"""Ids ``trenchcoat stat`` asks the router about in one BatchStat (its limit)."""


def stat(config: Config, media_ids: Sequence[int]) -> list[StatResult]:
    """What the router knows of each id, one result each, in order."""
    async def ask(pool: ChannelPool) -> list[StatResult]:
        client = MediaClient(pool, router_address(config))
        out: list[StatResult] = []
        for start in range(0, len(media_ids), STAT_BATCH):
            out += await client.batch_stat(media_ids[start:start + STAT_BATCH])
        return out

    return _run(config, ask)


def stat_lines(result: StatResult, now_ms: int) -> list[str]:
    """``trenchcoat stat``'s block for one id: its facts a line each, then its renditions;
    or one line saying why it cannot be described."""
    media = result.media
    if result.outcome == "not_found":
        return [f"media {result.media_id} does not exist"]
    if result.outcome == "deleted":
        return [f"media {result.media_id} was deleted"]
    if result.outcome != "found" or media is None:
        return [f"media {result.media_id} cannot be described now: {result.reason or 'no reason given'}"]
    created = datetime.fromtimestamp(media.created_unix_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    shown = f"{media.width} x {media.height}" if media.width and media.height else "unknown (not measured yet)"
    lines = [
        f"media {media.media_id}",
        f"  tier        {media.tier}",
        f"  state       {media.state}",
        f"  owner       {media.owner_id}",
        f"  type        {media.content_type}",
        f"  size        {_size(media.size_bytes)} ({media.size_bytes} bytes)",
        f"  displayed   {shown}",
        f"  created     {created} ({age(media.created_unix_ms, now_ms)})",
        f"  url         {media.url}{_volume_of(media.url)}",
    ]
    state = media.renditions_state or "-"
    if media.renditions_error:
        state += f": {media.renditions_error}"
    lines.append(f"  renditions  {state}")
    for r in sorted(media.renditions, key=lambda r: r.alternate_key):
        dims = f"{r.width} x {r.height}" if r.width and r.height else "-"
        lines.append(f"    {describe(r.alternate_key):<18}{_size(r.size_bytes):>10}  {dims:<12}{r.url}{_volume_of(r.url)}")
    return lines


def _volume_of(url: str) -> str:
    """`` (volume N)``: the logical volume a photo URL names ("" for no URL)."""
    if not url:
        return ""
    try:
        return f"  (volume {parse_path(urllib.parse.urlsplit(url).path).needle.logical_volume})"
    except MalformedURL:
        return ""


def age(unix_ms: int, now_ms: int) -> str:
    """How long ago ``unix_ms`` was, in the largest whole unit: ``3s ago``, ``4m ago``,
    ``2h ago``, ``5d ago``; ``never`` for 0. A time ahead of ``now_ms`` (clocks apart)
    reads as ``0s ago``."""
    if not unix_ms:
        return "never"
    seconds = max(0, now_ms - unix_ms) // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _directory(config: Config, pool: ChannelPool) -> DirectoryClient:
    return DirectoryClient(pool, config.directory_endpoints(), timeout_s=5.0)


def volumes_table(config: Config) -> list[str]:
    async def ask(pool: ChannelPool) -> list[str]:
        directory = _directory(config, pool)
        volumes = await directory.list_volumes()
        damaged = await directory.damaged_needles()
        stores = StoreClient(pool, timeout_s=5.0)
        progress: dict[int, tuple[int, int] | str] = {}
        for v in volumes:
            if v.replacing is not None:
                try:
                    progress[v.id] = (await stores.restoring(v.replacing.new_address)).get(v.id, (0, 0))
                except TrenchcoatError as exc:
                    progress[v.id] = f"store {v.replacing.new_machine} does not answer: {exc.status}"
        return volume_lines(volumes, _now_ms()) + healing_lines(volumes, damaged, progress)

    return _run(config, ask)


def healing_lines(volumes: Sequence[VolumeView], damaged: Sequence[DamagedNeedleView],
                  progress: Mapping[int, tuple[int, int] | str]) -> list[str]:
    """What the hot tier is mending: volumes with a replica on a down store, new replicas
    being copied for stores lost for good (with the copy's progress), volumes whose
    replicas are being compared and repaired, needles damaged (pending repair) and
    unrecoverable (damaged on every replica: their reads answer DATA_LOSS)."""
    lines: list[str] = []
    short = [v for v in volumes if v.under_replicated]
    repairing = [v for v in volumes if v.repair and not v.under_replicated]
    lost = [n for n in damaged if n.unrecoverable]
    pending = [n for n in damaged if not n.unrecoverable]
    if not (short or repairing or damaged):
        return ["", "Healing: every volume has all its replicas up and equal; no damaged needle reported."]
    lines += ["", "Healing:"]
    for v in sorted(short, key=lambda v: v.id):
        down = ", ".join(str(r.machine_id) for r in v.replicas if not r.alive)
        if v.replacing is None:
            lines.append(f"  volume {v.id}: under-replicated (store {down} down); replaced once down for "
                         "directory.replace_after_s")
            continue
        r = v.replacing
        got = progress.get(v.id, (0, 0))
        state = got if isinstance(got, str) else (
            f"{_bar(got[0], got[1])}  {_size(got[0])} of {_size(got[1])}" if got[1] else "starting")
        lines.append(f"  volume {v.id}: under-replicated; new replica on store {r.new_machine} copying from store "
                     f"{r.source_machine} for lost store {r.lost_machine}  {state}")
    for v in sorted(repairing, key=lambda v: v.id):
        lines.append(f"  volume {v.id}: replicas being compared and repaired ({v.reason or 'repair'})")
    if pending:
        lines.append(f"  {len(pending)} damaged needles pending repair from a healthy replica:")
        lines += [f"    volume {n.volume_id}  {n.key:#x}/{n.alternate_key}  damaged on store "
                  f"{', '.join(map(str, n.machines))}" for n in pending[:20]]
        if len(pending) > 20:
            lines.append(f"    ... and {len(pending) - 20} more")
    if lost:
        lines.append(f"  {len(lost)} UNRECOVERABLE needles (damaged on every replica; reads answer DATA_LOSS: "
                     "restore them from the uploader or a backup, or delete them with `trenchcoat rm`):")
        lines += [f"    volume {n.volume_id}  media {n.key}  alternate key {n.alternate_key}  (stores "
                  f"{', '.join(map(str, n.machines))})" for n in lost]
    return lines


def volume_lines(volumes: Sequence[VolumeView], now_ms: int) -> list[str]:
    """``trenchcoat volumes``: each volume's state, its fill as its stores last reported it
    and how long ago that was (the leader confirms an unchanged figure every minute or so:
    an older report means the stores, or a leader, have not been heard), its replicas."""
    header = f"{'ID':>6}  {'STATE':<10}{'FILL':>7}  {'USED':>10}  {'REPORTED':<10}  REPLICAS (machine@rack, ! = down)"
    lines = [header]
    for v in sorted(volumes, key=lambda v: v.id):
        fill = 100 * v.used_bytes / v.capacity_bytes if v.capacity_bytes else 0
        replicas = "  ".join(f"{r.machine_id}@{r.rack}{'' if r.alive else '!'}" for r in v.replicas)
        if v.state == "warm" and not v.replicas:  # no store holds it now: its last figure stays
            replicas = f"in f4 (hot copies freed from {', '.join(map(str, v.freed_machines)) or '?'})"
            reported = "(final)"
        else:
            reported = f"({age(v.used_reported_unix_ms, now_ms)})"
        lines.append(f"{v.id:>6}  {v.state:<10}{fill:>6.1f}%  {_size(v.used_bytes):>10}  {reported:<10}  {replicas}")
    if not volumes:
        lines.append("(no volumes yet)")
    return lines


async def _warm_rows(config: Config, pool: ChannelPool) -> list[str]:
    return [*await _volume_rows(config, pool), "", *await _rebuild_rows(config, pool)]


async def _volume_rows(config: Config, pool: ChannelPool) -> list[str]:
    volumes = [v for v in await _directory(config, pool).list_volumes() if v.state in ("sealed", "warm")]
    f4 = F4Client(pool, config.f4_endpoint(), timeout_s=10.0)
    header = f"{'ID':>6}  {'STATE':<8}{'STRIPES':>8}  {'BLOCKS OK':>10}  {'ON DISK':>10}  UNHEALTHY (stripe/block@domain)"
    lines = [header]
    for v in sorted(volumes, key=lambda v: v.id):
        if v.state == "sealed":
            lines.append(f"{v.id:>6}  {'sealed':<8}{'':>8}  {'':>10}  {'':>10}  being encoded into f4")
            continue
        try:
            blocks = await f4.volume_status(v.id)
        except TrenchcoatError as exc:
            lines.append(f"{v.id:>6}  {'warm':<8}  f4 cannot say: {exc}")
            continue
        bad = [f"{b.block.stripe}/{b.block.index}@{b.domain}" for b in blocks if not b.healthy]
        stripes = len({b.block.stripe for b in blocks})
        healthy = len(blocks) - len(bad)
        lines.append(f"{v.id:>6}  {'warm':<8}{stripes:>8}  {f'{healthy}/{len(blocks)}':>10}  "
                     f"{_size(sum(b.size for b in blocks)):>10}  {' '.join(bad) or '-'}")
    if not volumes:
        lines.append("(no volume has aged into f4 yet)")
    return lines


async def _rebuild_rows(config: Config, pool: ChannelPool) -> list[str]:
    address = config.f4_rebuilder_endpoint()
    if not config.f4.rebuilder_endpoint and config.f4_rebuilder.count == 0:
        return ["rebuilds: none (f4_rebuilder.count = 0 and f4.rebuilder_endpoint is empty: no rebuilder to ask)"]
    try:
        view = await RebuilderClient(pool, address, timeout_s=5.0).status()
    except TrenchcoatError as exc:
        return [f"rebuilder at {address} does not answer: {exc}"]
    return rebuilder_lines(address, view)


FINISHED_SHOWN = 10
"""Finished rebuilds ``trenchcoat warm`` lists (the newest); the rest are counted."""
BAR_WIDTH = 24
"""Characters between the brackets of a rebuild's progress bar."""


def rebuilder_lines(address: str, view: RebuilderView, now_ms: int | None = None) -> list[str]:
    """The rebuilder's part of ``trenchcoat warm``: block health (as of its last scan, and
    how long ago that was) and the throttle in a line, then each rebuild under way with a
    progress bar, each failed one with its error and the newest finished ones, a line each.
    Plain text, so it reads the same in a pipe."""
    now_ms = _now_ms() if now_ms is None else now_ms
    scanned = (f"last scan {age(view.last_scan_unix_ms, now_ms)}" if view.last_scan_unix_ms else "no scan yet")
    if view.scan_interval_s:
        scanned += f", every {view.scan_interval_s:g}s"
    summary = (f"rebuilder at {address}: blocks {view.healthy_blocks} healthy, {view.damaged_blocks} damaged or "
               f"missing, {view.lost_blocks} lost ({scanned}); throttle {_size(view.throttle_bytes_per_s)}/s of "
               f"reads; grace {view.grace_s:g} s")
    lines = [summary]
    running = [r for r in view.rebuilds if not r.finished and not r.error]
    failed = [r for r in view.rebuilds if not r.finished and r.error]
    finished = [r for r in view.rebuilds if r.finished]
    if not view.rebuilds:
        lines.append("  (no rebuilds since the rebuilder started)")
        return lines
    lines.append(f"  {'BLOCK':<16}{'REASON':<11}{'ONTO (node@domain)':<28}PROGRESS")
    for r in running:
        resumed = f", {_size(r.resumed_bytes)} carried over from an earlier run" if r.resumed_bytes else ""
        lines.append(f"{_rebuild_head(r)}{_bar(r.done_bytes, r.total_bytes)} "
                     f"{_size(r.done_bytes)} of {_size(r.total_bytes)}{resumed}")
    for r in failed:
        lines.append(f"{_rebuild_head(r)}FAILED at {_size(r.done_bytes)} of {_size(r.total_bytes)}: {r.error}")
    for r in finished[:FINISHED_SHOWN]:
        lines.append(f"{_rebuild_head(r)}rebuilt, {_size(r.total_bytes)}")
    if len(finished) > FINISHED_SHOWN:
        lines.append(f"  (and {len(finished) - FINISHED_SHOWN} earlier rebuilds finished)")
    return lines


def _rebuild_head(r: RebuildView) -> str:
    block = f"v{r.block.volume}/s{r.block.stripe}/b{r.block.index}"
    return f"  {block:<16}{r.reason:<11}{f'{r.node}@{r.domain}':<28}"


def _bar(done: int, total: int) -> str:
    """``[#####-------]  42%``: ASCII, so a pipe or a log file shows it as a terminal does."""
    share = min(done / total, 1.0) if total > 0 else 0.0
    filled = int(share * BAR_WIDTH)
    return f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {100 * share:3.0f}%"


def warm_table(config: Config) -> list[str]:
    """Volumes moving into or living in f4, with their stripes' block health, then the
    cell's rebuilder: block health, its throttle and its rebuilds."""
    return _run(config, lambda pool: _warm_rows(config, pool))


def migrate(config: Config, volume_id: int) -> str:
    """Asks the Directory to move a volume into f4 now; says, in a line, where it stands."""
    volume = _run(config, lambda pool: _directory(config, pool).migrate_volume(volume_id))
    if volume.state == "warm":
        hot = f"{len(volume.replicas)} hot replicas not freed yet" if volume.replicas else "hot replicas freed"
        return f"volume {volume.id}: already warm, in f4 ({hot})"
    if volume.state == "sealed":
        return f"volume {volume.id}: sealed, being encoded into f4; watch `trenchcoat warm`"
    return f"volume {volume.id}: {volume.state}, moving into f4; watch `trenchcoat warm`"


def writable_volumes(config: Config) -> int:
    return sum(v.writable for v in _run(config, lambda pool: _directory(config, pool).list_volumes()))


def stores_table(config: Config, names: Mapping[str, str] | None = None) -> list[str]:
    """The Directory's stores and its leader. ``names``: endpoint -> the name the launcher
    gave the process there (``launcher.process_names``), so the leader is called what the
    process table above calls it (``directory-2``); a leader not among them keeps the name
    it gives itself."""
    async def ask(pool: ChannelPool) -> tuple[list, str]:
        directory = _directory(config, pool)
        stores = await directory.list_stores()
        try:
            name, address = await directory.leader()
            lead = f"leader: {(names or {}).get(address, name)} ({address})"
        except Unavailable as exc:
            lead = f"leader: none ({exc})"
        return stores, lead

    stores, lead = _run(config, ask)
    lines = [lead, f"{'STORE':>6}  {'RACK':<10}{'STATE':<7}{'FREE':>10}  ADDRESS"]
    for s in sorted(stores, key=lambda s: s.machine_id):
        lines.append(f"{s.machine_id:>6}  {s.rack:<10}{'up' if s.alive else 'DOWN':<7}{_size(s.free_bytes):>10}  {s.address}")
    return lines


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def follow(config: Config, follower: int, followee: int, *, undo: bool = False) -> bool:
    async def ask(pool: ChannelPool) -> bool:
        feed = FeedClient(pool, feed_address(config))
        return await (feed.unfollow(follower, followee) if undo else feed.follow(follower, followee))

    return _run(config, ask)


def post(config: Config, path: Path, user: int, caption: str) -> tuple[Media, FeedEntry]:
    """Uploads the file, then posts it: (the media, the feed entry)."""
    async def ask(pool: ChannelPool) -> tuple[Media, FeedEntry]:
        media = await MediaClient(pool, router_address(config)).upload(path, owner_id=user)
        return media, await FeedClient(pool, feed_address(config)).post(user, media.media_id, caption)

    return _run(config, ask)


def feed_page(config: Config, user: int, cursor: int, limit: int) -> FeedPage:
    return _run(config, lambda pool: FeedClient(pool, feed_address(config)).home(
        user, cursor=cursor, limit=limit, hydrate=True))


def jobs_table(config: Config, media_id: int = 0, retry: str = "") -> list[str]:
    """``trenchcoat jobs``: the rendition queue (waiting, running, dead letters with their
    reasons), one media's jobs, or a dead letter put back on the queue."""

    async def ask(pool: ChannelPool) -> list[str]:
        client = TransformerClient(pool, transformer_address(config))
        if retry:
            job = await client.retry(retry)
            return [f"job {job.job_id} is queued again (it failed {job.attempts or len(job.errors)} times before)"]
        if media_id:
            jobs = await client.jobs(media_id)
            if not jobs:
                return [f"no rendition job known for media {media_id} (recipe v{config.transformer.recipe_version})"]
            return [_job_line(j) for j in jobs]
        q = await client.queue()
        letters, depth = await client.dead_letters(DEAD_SHOWN)
        lines = [f"rendition jobs: {q.queued} queued ({q.in_flight} running), {q.dead} dead letters"
                 + (f"; oldest queued {q.oldest_age_s:.1f}s ago" if q.queued else "")]
        for job in letters:
            lines.append(f"  dead  {job.job_id}  after {job.attempts} attempt(s): {job.dead_reason}")
        if depth > len(letters):
            lines.append(f"  ... and {depth - len(letters)} more")
        if letters:
            lines.append("retry one with: trenchcoat jobs --retry JOB_ID")
        return lines

    return _run(config, ask)


DEAD_SHOWN = 20


def _job_line(j: JobView) -> str:
    line = f"{j.job_id}  {j.state}  attempts {j.attempts}"
    if j.state == "dead":
        return f"{line}  {j.dead_reason}"
    return f"{line}  last error: {j.last_error}" if j.last_error else line


def _cluster_dependencies(config: Config) -> tuple[list[str], list[str]]:
    """(etcd endpoints, PostgreSQL DSNs) of the cluster: the config's, or, where it leaves
    them empty, those of the private ones a running `trenchcoat up` started (its state file)."""
    from trenchcoat.ops.launcher import read_state

    etcd, dsns = list(config.etcd.endpoints), list(config.postgres.instances())
    if not etcd or not dsns:
        state = read_state(Path(config.cluster.data_dir).resolve()) or {}
        listed = state.get("processes", [])
        assert isinstance(listed, list)
        etcd = etcd or [p["endpoint"] for p in listed if p["kind"] == "etcd"]
        dsns = dsns or [p["endpoint"] for p in listed if p["kind"] == "postgres"]
    if not etcd or not dsns:
        raise FailedPrecondition("no etcd or PostgreSQL to ask: set etcd.endpoints and postgres.dsn (and "
                                 "postgres.shard_dsns), or start the cluster with `trenchcoat up`")
    return etcd, dsns


async def make_shard_map(etcd: Etcd, instances: pgmigrate.Instances, *, timeout_s: float) -> tuple[ShardMap, bool]:
    """The operator's making of the shard map (``trenchcoat shards init``, ``trenchcoat up``,
    the k8s Job): the shards split evenly over ``instances``, or all on the first when it
    holds rows already (a cluster that grew from one instance: its rows stay where they are,
    and ``trenchcoat shards move`` spreads them), and stored, unless a map is stored already
    (never replaced here); checked against the instances; each instance told the shards it
    holds (unless a move is under way, which tells them itself). Returns (the map in force,
    whether it was made now)."""
    names = list(instances)
    first_pool = next(iter(instances.values()))[0]
    spread = not await pgmigrate.holds_rows(first_pool, timeout_s=timeout_s)
    shard_map, made = await shards.init(etcd, names if spread else names[:1])
    shard_map.check({name: where for name, (_, where) in instances.items()})
    if await shardmove.recorded(etcd) is None:
        await pgmigrate.hold(instances, shard_map, timeout_s=timeout_s)
    return shard_map, made


class BarProgress:
    """The mover's progress as a bar per stage on a terminal (rich), a line per stage in a pipe."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), console=Console(stderr=True), transient=False)
        self._task: Any = None

    def __enter__(self) -> BarProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    def stage(self, description: str, total: int | None = None) -> None:
        if self._task is not None:
            self._bars.update(self._task, completed=self._bars.tasks[-1].total or self._bars.tasks[-1].completed)
        self._task = self._bars.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._bars.advance(self._task, n)


def move_shards(config: Config, span: tuple[int, int] | None, to: str | None) -> list[str]:
    """``trenchcoat shards move FIRST-LAST --to INSTANCE`` (``span`` and ``to``), or
    ``--abort`` (None): see trenchcoat/shardmove.py. A bar per stage as it goes."""
    etcd_endpoints, dsns = _cluster_dependencies(config)

    async def run() -> list[str]:
        with BarProgress() as progress:
            async with shardmove.mover(etcd_endpoints, config.cluster.name, dsns, etcd_timeout_s=config.etcd.timeout_s,
                                       timeout_s=config.postgres.timeout_s, progress=progress) as mover:
                if span is None:
                    return [f"rolled back the move of {await mover.abort()}"]
                assert to is not None
                return (await mover.move(*span, to)).lines()

    return asyncio.run(run())


def shards_table(config: Config, *, init: bool = False) -> list[str]:
    """``trenchcoat shards``: the shard map (each range, its instance) and each instance (its
    id, where it is, the shards and media rows it holds); ``init``: first store the shards
    split evenly over the instances, unless a map is stored (``make_shard_map``)."""
    etcd_endpoints, dsns = _cluster_dependencies(config)

    async def media_rows(pool: Any) -> str:
        async with pool.acquire(timeout=config.postgres.timeout_s) as conn:
            if not await conn.fetchval("SELECT to_regclass('media') IS NOT NULL"):
                return "no media table yet"
            return f"{await conn.fetchval('SELECT count(*) FROM media'):,} media rows"

    async def ask() -> list[str]:
        lines = []
        shard_map: ShardMap | None
        async with pgmigrate.reaching(dsns, timeout_s=config.postgres.timeout_s) as instances:
            etcd = Etcd(etcd_endpoints, config.cluster.name, timeout_s=config.etcd.timeout_s)
            try:
                if init:
                    shard_map, made = await make_shard_map(etcd, instances, timeout_s=config.postgres.timeout_s)
                    lines.append("made the shard map" if made else "a shard map is stored already: kept")
                    lines.append("told each instance the shards it holds (it mints ids for those only)")
                else:
                    shard_map = await shards.stored(etcd)
                unfinished = await shardmove.recorded(etcd)
            finally:
                await etcd.close()
            counts = dict(zip(instances, await asyncio.gather(*(media_rows(p) for p, _ in instances.values())),
                              strict=True))
        if shard_map is None:
            only = next(iter(instances.values()))[1]
            return [*lines, f"no shard map: every shard is on the one instance, at {only}" if len(instances) == 1
                    else "no shard map: `trenchcoat shards init` splits the shards evenly over the "
                    f"{len(instances)} instances"]
        lines.append(f"shard map v{shard_map.version} ({shards.MAP_KEY} in etcd):")
        width = max(len(f"{r.first}-{r.last}") for r in shard_map.ranges)
        for r in shard_map.ranges:
            lines.append(f"  {f'{r.first}-{r.last}':<{width}}  {r.last - r.first + 1:>5} shards  {r.instance}")
        lines.append("instances:")
        for name in dict.fromkeys([*shard_map.instances, *instances]):
            held = sum(r.last - r.first + 1 for r in shard_map.ranges if r.instance == name)
            where = instances[name][1] if name in instances else "not reached by any DSN given"
            lines.append(f"  {name}  {held} shards  {counts.get(name, '-')}  at {where}")
        if unfinished is not None:
            lines.append(f"a move is unfinished: {unfinished} (`trenchcoat shards move "
                         f"{unfinished.first}-{unfinished.last} --to {unfinished.target}` finishes it)")
        return lines

    return asyncio.run(ask())
