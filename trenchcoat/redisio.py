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


def connect(url: str, *, timeout_s: float) -> aioredis.Redis:
    """A client (a connection pool, connecting lazily) whose every command and connect
    attempt gives up after ``timeout_s``. Replies are bytes."""
    return aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                   health_check_interval=30, retry_on_timeout=False)


@contextlib.contextmanager
def failures(what: str) -> Iterator[None]:
    """Turns Redis being unreachable, slow or restarting into Unavailable (retryable)."""
    try:
        yield
    except redis.exceptions.BusyLoadingError as exc:
        raise Unavailable(f"Redis is loading its data; retry {what} shortly") from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, TimeoutError, OSError) as exc:
        raise Unavailable(f"Redis did not answer {what} ({exc}); retry") from exc
