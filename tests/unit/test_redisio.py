"""trenchcoat/redisio.py: Redis unable to serve (a replica, a lost consumer group), as the
real server answers it, alone or inside a pipeline, is Unavailable; a bad command is not."""

from __future__ import annotations

import pytest
import redis.exceptions

from trenchcoat import redisio
from trenchcoat.errors import Unavailable
from trenchcoat.ops import ports


async def test_a_replica_refusing_writes_and_a_lost_group_are_unavailable_alone_or_in_a_pipeline(private_redis):
    client = redisio.connect(private_redis.endpoint, timeout_s=10.0)
    try:
        with pytest.raises(Unavailable, match="NOGROUP"), redisio.failures("taking jobs"):
            await client.xreadgroup("nobody", "c", {"no-stream": ">"}, count=1)
        with pytest.raises(Unavailable, match="NOGROUP"), redisio.failures("taking jobs"):
            async with client.pipeline(transaction=False) as pipe:
                pipe.xreadgroup("nobody", "c", {"no-stream": ">"}, count=1)
                await pipe.execute()
        with pytest.raises(redis.exceptions.ResponseError), redisio.failures("a typo"):  # the command's fault
            await client.execute_command("NOSUCHCOMMAND")
        # A master that became a replica (of a master that is down) refuses writes: READONLY,
        # which redis-py raises as ReadOnlyError with the code stripped from its message.
        await client.execute_command("REPLICAOF", "127.0.0.1", str(ports.free_port()))
        with pytest.raises(Unavailable, match="ReadOnlyError"), redisio.failures("adding to a timeline"):
            await client.set("k", "v")
        with pytest.raises(Unavailable, match="ReadOnlyError"), redisio.failures("fanning out"):
            async with client.pipeline(transaction=False) as pipe:
                pipe.set("k", "v")
                await pipe.execute()
    finally:
        await client.aclose()
