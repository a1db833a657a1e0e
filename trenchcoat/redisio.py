"""Redis for the services that keep state there (the feed's timelines, caches and job
streams; the transformer's jobs): one client per process, every command bounded by a
deadline, and a failure to reach Redis in time turned into ``Unavailable`` naming it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis.asyncio as aioredis
import redis.exceptions

from trenchcoat.errors import Unavailable

MAX_CONNECTIONS = 128
"""Connections one process keeps to Redis; more concurrent commands wait for one (within
their deadline) rather than opening more."""


def connect(url: str, *, timeout_s: float, max_connections: int = MAX_CONNECTIONS) -> aioredis.Redis:
    """A client (a bounded connection pool, connecting lazily) whose every command, connect
    attempt and wait for a free connection gives up after ``timeout_s``. Replies are bytes."""
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
    except redis.exceptions.ResponseError as exc:
        if reply_code(exc) not in TRANSIENT_REPLIES:
            raise
        raise Unavailable(f"Redis cannot serve {what} now ({exc}); retry") from exc
