"""The ``trenchcoat`` command: run a local cluster and talk to it.

    trenchcoat up        start the local cluster and watch it until Ctrl-C
    trenchcoat status    health of every process of the running local cluster, its stores and leader
    trenchcoat put FILE --user N   upload a file; prints its media_id and URL
    trenchcoat get MEDIA_ID [-o FILE] [--size N | --key K]   the bytes of a media (or of a rendition)
    trenchcoat stat MEDIA_ID...   tier, state, owner, type, size, URL and renditions of each media
    trenchcoat rm MEDIA_ID    delete a media everywhere (as an operator: user tokens do not exist yet)
    trenchcoat volumes   the logical volumes: state, fill (as last reported, and when), replicas, racks
    trenchcoat warm      volumes in f4 or moving there, their blocks' health, the rebuilder's last scan
    trenchcoat migrate VOLUME   move one logical volume into f4 now, whatever its age
    trenchcoat follow A B    user A follows user B (unfollow A B: stops)
    trenchcoat post FILE --user A --caption TEXT   upload a photo and post it
    trenchcoat feed A [--cursor C]   user A's home feed, a page at a time, with URLs
    trenchcoat jobs [MEDIA_ID]   rendition jobs: queued, running, dead letters (--retry JOB_ID)
    trenchcoat top       the dashboard's key panels, live, from the cluster's Prometheus
    trenchcoat demo      start a fresh cluster, show it working, stop it (what `make demo` runs)
    trenchcoat config    print the effective config, or with --reference every key

Every verb takes ``--config FILE`` (default: $TRENCHCOAT_CONFIG, else ./trenchcoat.toml,
else built-in defaults); TRENCHCOAT_<SECTION>__<KEY> variables override single keys.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from trenchcoat import config as configmod
from trenchcoat import rendition_keys, rpc, shardmove, tls, tokens
from trenchcoat.errors import TrenchcoatError
from trenchcoat.ops import admin
from trenchcoat.ops.launcher import (
    Cluster,
    ProcessStatus,
    process_names,
    read_state,
    status_from_state,
)
from trenchcoat.redact import redact

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = configmod.load(args.config or configmod.default_path(os.environ), os.environ)
        directory = config.cluster.tls_directory()
        if args.run not in (cmd_certs, cmd_config, cmd_token, cmd_permissions):
            if directory is None:
                tls.warn_insecure("trenchcoat")
            else:
                # The operator's verbs call the cluster as its admin (`up` and `demo` make the
                # identities on their first start, in the data directory they run in); those
                # that act for a user (upload, post, follow, delete) carry its token.
                rpc.use_tls(tls.ClientTls(tls.Identity(directory, "admin")), user_keys=directory)
        return int(args.run(args, config))
    except TrenchcoatError as exc:
        print(f"trenchcoat: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, configmod.ConfigError) else EXIT_FAILED
    except tls.TlsError as exc:
        print(f"trenchcoat: cluster.tls_dir: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trenchcoat", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="cluster config file (TOML)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    up = verbs.add_parser("up", help="start the local cluster and watch it until Ctrl-C")
    up.set_defaults(run=cmd_up)

    status = verbs.add_parser("status", help="health of every process of the running cluster")
    status.set_defaults(run=cmd_status)

    put = verbs.add_parser("put", help="upload a file; prints its media_id and URL")
    put.add_argument("file", type=Path, help="file to upload")
    put.add_argument("--user", type=int, required=True, help="owner's user id (picks the id's shard)")
    put.add_argument("--content-type", default="", help="MIME type (default: guessed from the name)")
    put.add_argument("--idempotency-key", default="", help="a retry with the same key returns the first upload")
    put.set_defaults(run=cmd_put)

    get = verbs.add_parser("get", help="the bytes of a media, or of one of its image sizes",
                           description="Reads a media through the router (any tier). Writes its bytes to FILE, "
                                       "or to stdout when that is a pipe or a file; never to a terminal.")
    get.add_argument("media_id", type=_media_id, metavar="MEDIA_ID")
    get.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the bytes here (default: stdout)")
    which = get.add_mutually_exclusive_group()
    which.add_argument("--size", type=_image_size, default=0, metavar="N",
                       help="image size N instead of the original: its alternate key, 1..255 "
                            "(`trenchcoat stat MEDIA_ID` lists them as 'size N')")
    which.add_argument("--key", type=_alternate_key, default=0, metavar="K", dest="key",
                       help="any rendition by its alternate key, decimal or 0x hex (a video's poster is "
                            "0x3000000, its master playlists 0x2000000 + rungs; see media.proto)")
    get.set_defaults(run=cmd_get)

    stat = verbs.add_parser("stat", help="what is known of media: tier, state, owner, size, URLs, renditions")
    stat.add_argument("media_ids", type=_media_id, nargs="+", metavar="MEDIA_ID")
    stat.set_defaults(run=cmd_stat)

    rm = verbs.add_parser("rm", help="delete a media everywhere (acts as an operator)",
                          description="Deletes a media: its row, every replica's needle and its renditions, "
                                      "the caches' copies, its f4 keys. It acts as an operator, for no user: "
                                      "user tokens do not exist yet.")
    rm.add_argument("media_id", type=_media_id, metavar="MEDIA_ID")
    rm.set_defaults(run=cmd_rm)

    volumes = verbs.add_parser("volumes", help="the logical volumes: state, fill (as last reported, and when), "
                                               "replicas, racks")
    volumes.set_defaults(run=cmd_volumes)

    warm = verbs.add_parser("warm", help="volumes moving into or living in f4, block health, the rebuilder's "
                                         "last scan, rebuilds")
    warm.set_defaults(run=cmd_warm)

    migrate = verbs.add_parser("migrate", help="move one logical volume into f4 now, whatever its age")
    migrate.add_argument("volume", type=int, metavar="VOLUME", help="logical volume id (see `trenchcoat volumes`)")
    migrate.set_defaults(run=cmd_migrate)

    top = verbs.add_parser("top", help="the dashboard's key panels, live, from the cluster's Prometheus")
    top.add_argument("--once", action="store_true", help="print one frame and exit (what a pipe gets anyway)")
    top.add_argument("--every", type=float, default=2.0, metavar="S", help="seconds between redraws (default 2)")
    top.set_defaults(run=cmd_top)

    jobs = verbs.add_parser("jobs", help="rendition jobs: queued, running, dead letters (and retry one)")
    jobs.add_argument("media_id", type=int, nargs="?", default=0, help="show this media's jobs instead")
    jobs.add_argument("--retry", default="", metavar="JOB_ID", help="put a dead-lettered job back on the queue")
    jobs.set_defaults(run=cmd_jobs)

    for name, undo in (("follow", False), ("unfollow", True)):
        edge = verbs.add_parser(name, help=f"user A {name}s user B")
        edge.add_argument("follower", type=int, metavar="A")
        edge.add_argument("followee", type=int, metavar="B")
        edge.set_defaults(run=cmd_follow, undo=undo)

    post = verbs.add_parser("post", help="upload a photo and post it to the author's followers")
    post.add_argument("file", type=Path, help="photo to post")
    post.add_argument("--user", type=int, required=True, help="the author")
    post.add_argument("--caption", default="", help="caption (at most 2,200 characters)")
    post.set_defaults(run=cmd_post)

    feed = verbs.add_parser("feed", help="a user's home feed, newest first, with URLs")
    feed.add_argument("user", type=int)
    feed.add_argument("--cursor", type=int, default=0, help="the next_cursor a previous page printed")
    feed.add_argument("--limit", type=int, default=0, help="entries on the page (default: feed.page_size)")
    feed.set_defaults(run=cmd_feed)

    demo = verbs.add_parser("demo", help="start a cluster, show it working, stop it")
    demo.set_defaults(run=cmd_demo)

    certs = verbs.add_parser("certs", help="the cluster CA and a certificate per service identity (mutual TLS)")
    certs.add_argument("--dir", default="", help="where they live (default: cluster.tls_dir, or <cluster.data_dir>/tls)")
    certs.add_argument("--role", action="append", default=[], choices=tls.ROLES,
                       help="an identity to issue for (repeatable; default: every role)")
    certs.add_argument("--host", action="append", default=[],
                       help="a DNS name or IP the certificates answer to (repeatable; default: loopback, or with "
                            "--k8s the names each role's pods are dialled by in the namespace)")
    certs.add_argument("--rotate", action="store_true",
                       help="issue the roles' certificates again with the same CA (servers take them up at once)")
    certs.add_argument("--k8s", action="store_true",
                       help="print what the pods need as Kubernetes Secrets: each identity (trenchcoat-tls-<role>), "
                            "the user tokens' public key, the in-cluster PostgreSQL's password")
    certs.set_defaults(run=cmd_certs)

    token = verbs.add_parser("token", help="mint a user token (for grpcurl's -H 'authorization: Bearer ...')")
    token.add_argument("--user", type=int, required=True, help="the user id it acts for")
    token.add_argument("--ttl", type=float, default=tokens.DEFAULT_TTL_S,
                       help=f"seconds it is valid (default {tokens.DEFAULT_TTL_S}, at most {tokens.MAX_TTL_S})")
    token.add_argument("--dir", default="", help="where users.key lives (default: cluster.tls_dir, or <cluster.data_dir>/tls)")
    token.set_defaults(run=cmd_token)

    shards_verb = verbs.add_parser("shards", help="the shard map: which PostgreSQL instance holds each logical "
                                   "shard, and the rows on each")
    shards_verb.add_argument("action", nargs="?", choices=["init", "move"],
                             help="init: store the shards split evenly over the instances (unless a map is stored); "
                                  "move SHARDS --to INSTANCE: move logical shards to another instance while serving")
    shards_verb.add_argument("span", nargs="?", metavar="SHARDS", help="move: FIRST-LAST (or one shard), e.g. 0-1023")
    shards_verb.add_argument("--to", metavar="INSTANCE", help="move: the instance id to move them to (see the list)")
    shards_verb.add_argument("--abort", action="store_true",
                             help="move: roll back the unfinished move instead (before its map flip)")
    shards_verb.set_defaults(run=cmd_shards)

    perms = verbs.add_parser("permissions", help="the permission table: who may call each method (from the protos)")
    perms.set_defaults(run=cmd_permissions)

    cfg = verbs.add_parser("config", help="print the effective config")
    cfg.add_argument("--reference", action="store_true", help="list every key with its default and meaning")
    cfg.add_argument("--example", action="store_true", help="print the commented example config file")
    cfg.set_defaults(run=cmd_config)
    return parser


def cmd_up(args: argparse.Namespace, config: configmod.Config) -> int:
    cluster = Cluster(config, config_path=args.config)
    stop = _StopFlag()
    print(f"starting cluster {config.cluster.name!r} in {cluster.data_dir}", flush=True)
    cluster.start()
    print("cluster up; Ctrl-C stops it. `trenchcoat status` shows health.", flush=True)
    try:
        clean = cluster.supervise(stop.is_set)
    finally:
        print("stopping cluster", flush=True)
        cluster.stop()
    return EXIT_OK if clean else EXIT_FAILED


def cmd_status(args: argparse.Namespace, config: configmod.Config) -> int:
    data_dir = Path(config.cluster.data_dir).resolve()
    state = read_state(data_dir)
    if state is None:
        print(f"no cluster running on {data_dir} (start one with `trenchcoat up`)")
        return EXIT_NOT_RUNNING
    rows = status_from_state(state)
    print(f"cluster on {data_dir} (launcher pid {state['launcher_pid']})")
    _print_status(rows)
    healthy = all(r.health == "SERVING" for r in rows)
    if any(r.name.startswith("directory") for r in rows):
        print()
        try:
            print("\n".join(admin.stores_table(config, process_names(state))))
        except TrenchcoatError as exc:
            print(f"stores: cannot ask the directory: {exc}")
            healthy = False
    return EXIT_OK if healthy else EXIT_FAILED


def cmd_put(args: argparse.Namespace, config: configmod.Config) -> int:
    media = admin.put(config, args.file, args.user, args.content_type, args.idempotency_key)
    print(f"media_id {media.media_id}")
    print(f"url      {media.url}")
    return EXIT_OK


def cmd_get(args: argparse.Namespace, config: configmod.Config) -> int:
    if args.output is None and sys.stdout.isatty():
        # Binary in a terminal garbles it (and may send it control sequences).
        print("trenchcoat: not writing a media's bytes to a terminal: give -o FILE, or redirect stdout "
              f"(trenchcoat get {args.media_id} > FILE)", file=sys.stderr)
        return EXIT_USAGE
    media, data = admin.get(config, args.media_id, args.size or args.key)
    if args.output is None:
        try:
            sys.stdout.buffer.write(data)  # only the bytes: stdout is someone's file or pipe
            sys.stdout.buffer.flush()
        except BrokenPipeError:  # the reader stopped early (`| head -c 100`): not our failure
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush is quiet
        return EXIT_OK
    try:
        args.output.write_bytes(data)
    except OSError as exc:
        print(f"trenchcoat: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    what = rendition_keys.describe(args.size or args.key) if args.size or args.key else f"original, {media.content_type}"
    print(f"wrote {len(data)} bytes of media {media.media_id} ({what}) to {args.output}")
    return EXIT_OK


def cmd_stat(args: argparse.Namespace, config: configmod.Config) -> int:
    results = admin.stat(config, args.media_ids)
    now_ms = int(time.time() * 1000)
    print("\n\n".join("\n".join(admin.stat_lines(r, now_ms)) for r in results))
    return EXIT_OK if all(r.outcome == "found" for r in results) else EXIT_FAILED


def cmd_rm(args: argparse.Namespace, config: configmod.Config) -> int:
    deleted = admin.delete(config, args.media_id)
    print(f"media {args.media_id} deleted" if deleted else f"media {args.media_id} was already deleted")
    return EXIT_OK


def cmd_follow(args: argparse.Namespace, config: configmod.Config) -> int:
    changed = admin.follow(config, args.follower, args.followee, undo=args.undo)
    verb = "unfollowed" if args.undo else "follows"
    print(f"user {args.follower} {verb} user {args.followee}" + ("" if changed else " (already)"))
    return EXIT_OK


def cmd_post(args: argparse.Namespace, config: configmod.Config) -> int:
    media, entry = admin.post(config, args.file, args.user, args.caption)
    print(f"media_id {entry.media_id}")
    print(f"url      {media.url}")
    return EXIT_OK


def cmd_feed(args: argparse.Namespace, config: configmod.Config) -> int:
    page = admin.feed_page(config, args.user, args.cursor, args.limit)
    for item in page.items or []:
        print(f"{item.entry.media_id}  by {item.entry.author_id:<8} {item.media.url}  {item.caption}")
    if not page.items:
        print("(nothing here)" if not args.cursor else "(no more)")
    if page.next_cursor:
        print(f"next page: trenchcoat feed {args.user} --cursor {page.next_cursor}")
    return EXIT_OK


def cmd_volumes(args: argparse.Namespace, config: configmod.Config) -> int:
    print("\n".join(admin.volumes_table(config)))
    return EXIT_OK


def cmd_warm(args: argparse.Namespace, config: configmod.Config) -> int:
    print("\n".join(admin.warm_table(config)))
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace, config: configmod.Config) -> int:
    print(admin.migrate(config, args.volume))
    return EXIT_OK


def cmd_top(args: argparse.Namespace, config: configmod.Config) -> int:
    from trenchcoat.ops import top

    base = f"http://{config.cluster.host}:{config.prometheus.port}"
    if args.once or not sys.stdout.isatty():
        print("\n".join(top.plain(top.read_all(base))))
        return EXIT_OK
    top.live(base, max(0.5, args.every), _StopFlag().is_set)
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace, config: configmod.Config) -> int:
    print("\n".join(admin.jobs_table(config, args.media_id, args.retry)))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, config: configmod.Config) -> int:
    from trenchcoat.ops import demo

    ok = demo.run(config, args.config, lambda line: print(line, flush=True))
    return EXIT_OK if ok else EXIT_FAILED


def cmd_token(args: argparse.Namespace, config: configmod.Config) -> int:
    directory = Path(args.dir) if args.dir else config.cluster.tls_directory() or Path(config.cluster.data_dir) / "tls"
    try:
        key = (directory / tokens.PRIVATE_FILE).read_bytes()
    except FileNotFoundError:
        print(f"token: {directory / tokens.PRIVATE_FILE} is missing: make it with trenchcoat certs", file=sys.stderr)
        return EXIT_USAGE
    try:
        print(tokens.mint(key, args.user, args.ttl))
    except ValueError as exc:
        print(f"token: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def cmd_certs(args: argparse.Namespace, config: configmod.Config) -> int:
    directory = Path(args.dir) if args.dir else config.cluster.tls_directory() or Path(config.cluster.data_dir) / "tls"
    roles = args.role or list(tls.ROLES)

    def hosts(role: str) -> list[str]:
        if args.host:
            return list(args.host)
        if args.k8s:  # the names its pods are dialled by in the namespace
            from trenchcoat.ops import k8s

            return k8s.certificate_hosts(role)
        return list(tls.LOCAL_HOSTS)

    try:
        made = []
        for role in roles:
            if args.rotate or tls.ensure(directory, [role], hosts=hosts(role)):
                if args.rotate:
                    tls.issue(directory, role, hosts=hosts(role))
                made.append(role)
    except tls.TlsError as exc:
        print(f"certs: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.k8s:
        from trenchcoat.ops import k8s

        print(k8s.secrets(directory, roles), end="")
        return EXIT_OK
    print(f"{directory}: CA {tls.CA_FILE}; " + (f"issued {', '.join(made)}" if made else "every certificate there already"))
    return EXIT_OK


def cmd_shards(args: argparse.Namespace, config: configmod.Config) -> int:
    if args.action == "move":
        if args.abort == bool(args.span or args.to):
            print("shards move: give SHARDS and --to INSTANCE, or --abort alone", file=sys.stderr)
            return EXIT_USAGE
        try:
            span = None if args.abort else shardmove.parse_span(args.span)
        except ValueError as exc:
            print(f"shards move: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if span is not None and not args.to:
            print("shards move: say where with --to INSTANCE (an id `trenchcoat shards` lists)", file=sys.stderr)
            return EXIT_USAGE
        print("\n".join(admin.move_shards(config, span, args.to)))
        return EXIT_OK
    if args.span or args.to or args.abort:
        print("shards: SHARDS, --to and --abort go with `shards move`", file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(admin.shards_table(config, init=args.action == "init")))
    return EXIT_OK


def cmd_permissions(args: argparse.Namespace, config: configmod.Config) -> int:
    from trenchcoat import permissions

    print("\n".join(permissions.table_lines()))
    return EXIT_OK


def cmd_config(args: argparse.Namespace, config: configmod.Config) -> int:
    if args.example:
        print(configmod.example_toml(), end="")
        return EXIT_OK
    if args.reference:
        for key, default, doc in configmod.describe():
            section, name = key.split(".", 1)
            print(f"{key} = {default}\n    {doc}\n    env: {configmod.env_key(section, name)}")
        return EXIT_OK
    for part in dataclasses.fields(config):
        print(f"[{part.name}]")
        values = getattr(config, part.name)
        for f in dataclasses.fields(values):
            print(f"{f.name} = {configmod.to_toml(getattr(values, f.name))}")
        print()
    return EXIT_OK


def _media_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a media_id is a positive integer, got {text!r}") from None
    if not 0 < value < 1 << 64:
        raise argparse.ArgumentTypeError(f"a media_id is a positive 64-bit integer, got {text}")
    return value


def _alternate_key(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        value = -1
    if not 1 <= value <= 0xFFFF_FFFF:
        raise argparse.ArgumentTypeError(f"an alternate key is 1..4294967295 (decimal or 0x hex), got {text!r}")
    return value


def _image_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 1 <= value <= 0xFF:  # the image sizes' alternate keys (trenchcoat.rendition_keys)
        raise argparse.ArgumentTypeError(f"an image size is its alternate key, 1..255, got {text!r} "
                                         "(`trenchcoat stat MEDIA_ID` lists a media's sizes)")
    return value


def _print_status(rows: Sequence[ProcessStatus]) -> None:
    print(f"{'NAME':<14}{'KIND':<10}{'PID':>8}  {'HEALTH':<12}ENDPOINT")
    for r in rows:
        print(f"{r.name:<14}{r.kind:<10}{r.pid or '-':>8}  {r.health:<12}{redact(r.endpoint)}")


class _StopFlag:
    """Set by SIGINT or SIGTERM."""

    def __init__(self) -> None:
        self._set = False
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


if __name__ == "__main__":
    sys.exit(main())
