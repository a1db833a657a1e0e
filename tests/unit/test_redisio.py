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


async def test_a_redis_cluster_nobody_answers_for_is_unavailable_but_a_cross_slot_command_is_not(redis_cluster):
    """A cluster client whose nodes do not answer (a cluster starting) fails retryably, as a
    single Redis away does; keys of two slots in one transaction are this code's fault."""
    nowhere = redisio.connect(f"redis://127.0.0.1:{ports.free_port()}/0", timeout_s=1.0, cluster=True)
    try:
        with pytest.raises(Unavailable, match="the Redis Cluster cannot serve a read now"), redisio.failures("a read"):
            await nowhere.get("k")
    finally:
        await nowhere.aclose()
    client = redisio.connect(redis_cluster.endpoint, timeout_s=10.0, cluster=True)
    try:
        with pytest.raises(redis.exceptions.RedisClusterException), redisio.failures("a transaction"):
            async with client.pipeline(transaction=True) as pipe:
                pipe.set("{a}x", 1)
                pipe.set("{b}y", 1)
                await pipe.execute()
    finally:
        await client.aclose()
