"""Redis for the services that keep state there (the feed's timelines, caches and job
streams; the transformer's jobs): one client per process, every command bounded by a
deadline, and a failure to reach Redis in time turned into ``Unavailable`` naming it.

A single Redis or a Redis Cluster (``redis.cluster``: the URL names any node, the client
learns the rest). The callers are written for both: the keys that one command or one
transaction touches together share a hash tag (``{...}``), so they are in one slot; what
differs is behind ``primaries_run`` (each primary's run id) and ``load_scripts``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from trenchcoat.config import RedisConfig
from trenchcoat.errors import Unavailable

MAX_CONNECTIONS = 128
"""Connections one process keeps to Redis; more concurrent commands wait for one (within
their deadline) rather than opening more."""


Client = aioredis.Redis | RedisCluster
"""What the services hold: a client of one Redis, or of a Redis Cluster."""


def from_config(config: RedisConfig) -> Client:
    """The client for the config's ``[redis]``: redis.url, a cluster's node or not."""
    return connect(config.url, timeout_s=config.timeout_s, cluster=config.cluster)


def connect(url: str, *, timeout_s: float, max_connections: int = MAX_CONNECTIONS, cluster: bool = False) -> Client:
    """A client (a bounded connection pool, connecting lazily) whose every command, connect
    attempt and wait for a free connection gives up after ``timeout_s``. Replies are bytes.
    ``cluster``: ``url`` names a node of a Redis Cluster; the client finds the others, sends
    each command to the primary of its key's slot and follows failovers (a pool per node)."""
    if cluster:
        return RedisCluster.from_url(
            url, max_connections=max_connections, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            health_check_interval=30, require_full_coverage=True)
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout_s, socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s, health_check_interval=30, retry_on_timeout=False)
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


TRANSIENT_REPLIES = ("OOM", "READONLY", "MISCONF", "LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN",
                     "NOGROUP")
"""Error replies that describe Redis's state (out of memory, a replica, a failed save,
loading, busy with a script, failing over, a lost stream), not the command."""
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ReadOnlyError, redis.exceptions.OutOfMemoryError, redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError)
"""The classes redis-py raises for the replies of ``TRANSIENT_REPLIES`` it knows (their
code stripped from the message; MASTERDOWN is a ClusterDownError)."""


CLUSTER_IN_FLUX = ("Redis Cluster cannot be connected", "All slots are not covered", "startup_nodes could not agree",
                   "No targets were found")
"""How redis-py's cluster client says no node it knows answers, or the nodes do not yet
agree on who serves every slot (a cluster starting, or failing over): not the request's fault."""


def cluster_unreachable(exc: redis.exceptions.RedisClusterException) -> bool:
    """Whether a cluster client's error is the cluster's state rather than the request's."""
    return isinstance(exc, redis.exceptions.RedisClusterUnreachableError | redis.exceptions.SlotNotCoveredError) \
        or str(exc).startswith(CLUSTER_IN_FLUX)


def reply_code(exc: redis.exceptions.ResponseError) -> str:
    """The error reply's code (its first word), also when a pipeline wrapped the reply in
    "Command # n (...) of pipeline caused error: ..."."""
    text = str(exc).rpartition("caused error: ")[2]
    return text.split(" ", 1)[0]


@contextlib.contextmanager
def failures(what: str) -> Iterator[None]:
    """Turns Redis being unreachable, slow, restarting or otherwise unable to serve into
    Unavailable (retryable)."""
    try:
        yield
    except redis.exceptions.BusyLoadingError as exc:
        raise Unavailable(f"Redis is loading its data; retry {what} shortly") from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, TimeoutError, OSError) as exc:
        raise Unavailable(f"Redis did not answer {what} ({exc}); retry") from exc
    except TRANSIENT_ERRORS as exc:
        raise Unavailable(f"Redis cannot serve {what} now ({type(exc).__name__}: {exc}); retry") from exc
    except redis.exceptions.RedisClusterException as exc:
        if not cluster_unreachable(exc):
            raise  # the request's own fault (keys of two slots in one command: a bug here)
        raise Unavailable(f"the Redis Cluster cannot serve {what} now ({exc}); retry") from exc
    except redis.exceptions.ResponseError as exc:
        if reply_code(exc) not in TRANSIENT_REPLIES:
            raise
        raise Unavailable(f"Redis cannot serve {what} now ({exc}); retry") from exc


async def primaries_run(client: Client) -> str:
    """The run ids of the Redis server(s) holding the data: it changes when one restarts,
    or when a replica takes over from a primary (a failover), that is whenever writes
    acknowledged before may be gone."""
    if isinstance(client, RedisCluster):
        replies: Any = await client.info("server", target_nodes=RedisCluster.PRIMARIES)
        return ",".join(sorted(f"{node}={info.get('run_id', '')}" for node, info in replies.items()))
    info: Any = await client.info("server")
    return str(info.get("run_id", ""))


async def load_scripts(client: Client, *scripts: str) -> None:
    """Loads Lua scripts on every primary: a ``Batch`` sends EVALSHA as it is, so a server
    that has not seen a script (restarted, or a promoted replica) answers NOSCRIPT."""
    for script in scripts:
        await client.script_load(script)


def no_script(exc: BaseException) -> bool:
    """Whether a pipeline failed because a primary did not know a script (``load_scripts``)."""
    return isinstance(exc, redis.exceptions.NoScriptError) or (
        isinstance(exc, redis.exceptions.ResponseError) and reply_code(exc) == "NOSCRIPT")


class Batch:
    """A pipeline (not a transaction) of commands each sent by the slot of its first key. On
    a Redis Cluster each goes straight to the primary serving that slot, so the client need
    not work the slot out from the command's arguments, the larger part of a cluster
    pipeline's cost per command (profiled: bench/README.md); a redirection (a failover)
    still reroutes it by its keys. On a single Redis it is a plain pipeline. Scripts go as
    EVALSHA only: ``pipelined`` loads them when a server did not know one."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._pipe: Any = client.pipeline(transaction=False)
        self._cluster = isinstance(client, RedisCluster)

    def add(self, command: str, key: str, *args: Any) -> None:
        """Queues ``command key *args``; any other key it names shares ``key``'s slot."""
        self._queue(key, command, key, *args)

    def script(self, script: Any, keys: list[str], args: list[Any]) -> None:
        """Queues a registered script (``Client.register_script``) on ``keys``, which share a slot."""
        self._queue(keys[0], "EVALSHA", script.sha, len(keys), *keys, *args)

    def _queue(self, key: str, *command: Any) -> None:
        if self._cluster:
            try:
                node = self._client.nodes_manager.get_node_from_slot(key_slot(key.encode()))  # type: ignore[union-attr]
            except redis.exceptions.SlotNotCoveredError:  # no slots known yet: the client routes it
                node = None
            if node is not None:
                self._pipe.execute_command(*command, target_nodes=node)
                return
        self._pipe.execute_command(*command)

    async def execute(self) -> list[Any]:
        return list(await self._pipe.execute())


async def pipelined(client: Client, queue: Callable[[Batch], None], what: str, *scripts: str) -> list[Any]:
    """Runs a ``Batch`` that ``queue`` fills, Lua scripts among its commands, within
    ``failures(what)``; when a primary did not know one of ``scripts``, loads them on every
    primary and runs the whole batch again (its commands must be idempotent: some ran)."""
    for attempt in (1, 2):
        batch = Batch(client)
        queue(batch)
        try:
            with failures(what):
                return await batch.execute()
        except redis.exceptions.ResponseError as exc:
            if attempt == 2 or not no_script(exc):
                raise
        with failures(what):
            await load_scripts(client, *scripts)
    raise AssertionError("unreachable")
