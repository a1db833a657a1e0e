"""The etcd access every service shares: JSON records under one cluster prefix,
compare-and-swap, and leases kept alive across etcd restarts.

Built on aetcd (the maintained asyncio etcd v3 client). Every call is bounded by a
timeout and fails with ``Unavailable`` when etcd cannot be reached, so callers retry
on their own schedule; the underlying gRPC channel reconnects by itself when etcd comes
back, so no process needs a restart after an etcd restart. Nor after a rotation of the
process's certificate or of the cluster CA: the channels come from a ``rpc.ChannelPool``,
which looks at the identity's files again as it does for every other gRPC client, and the
next call goes out on a channel made with what they hold then (calls under way finish on
the old one). Leases and keys live in etcd, not in a connection, so an election or a
liveness lease carries on through the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aetcd
import aetcd.exceptions
import grpc
from aetcd import rpc as aetcd_rpc
from aetcd import watcher as aetcd_watcher

from trenchcoat import rpc
from trenchcoat.backoff import Backoff
from trenchcoat.errors import Unavailable
from trenchcoat.tls import ClientTls
from trenchcoat.workers import PeriodicWorker

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
    """A JSON value with the etcd revision it was last written at (for CAS)."""

    key: str
    value: dict[str, Any]
    mod_revision: int
    lease: int


CHANNEL_OPTIONS = tuple(option for option in rpc.CHANNEL_OPTIONS if "reconnect_backoff" in option[0])
"""The pool's reconnect backoff (etcd used again within a couple of seconds of its return,
where gRPC's own cap is two minutes), without its keepalive pings: etcd allows none on a
connection with no call under way (it answers them with GOAWAY "too_many_pings")."""


class _PooledClient(aetcd.Client):
    """aetcd's client on a channel of a ``rpc.ChannelPool`` (aetcd itself dials plaintext,
    once): aetcd awaits ``connect`` before every call, and here it asks the pool for the
    endpoint's channel, putting the stubs on it when it is a new one (the pool makes one
    after the identity's files changed). gRPC dials lazily, so nothing here waits: a failure
    to reach etcd surfaces on the call."""

    # aetcd's own attributes, which it gives no types.
    channel: grpc.aio.Channel | None
    _watcher: aetcd_watcher.Watcher | None

    def __init__(self, pool: rpc.ChannelPool, endpoint: str, **kwargs: Any) -> None:
        host, _, port = endpoint.rpartition(":")
        super().__init__(host=host, port=int(port), **kwargs)
        self._pool = pool
        self._endpoint = endpoint

    async def connect(self) -> None:
        channel = self._pool.channel(self._endpoint)
        if channel is self.channel:
            return
        # All swapped before the first await, so a concurrent call sees one set of stubs.
        replaced = self._watcher
        self.channel = channel
        self.kvstub = aetcd_rpc.KVStub(channel)
        self.clusterstub = aetcd_rpc.ClusterStub(channel)
        self.leasestub = aetcd_rpc.LeaseStub(channel)
        self.maintenancestub = aetcd_rpc.MaintenanceStub(channel)
        self._watcher = aetcd_watcher.Watcher(aetcd_rpc.WatchStub(channel), timeout=self._timeout,
                                              metadata=self.metadata)
        self._connected.set()
        if replaced is not None:
            await replaced.shutdown()  # its stream was on the old channel (trenchcoat opens none)


class Etcd:
    """One etcd endpoint list, keys relative to ``/trenchcoat/<cluster>/``."""

    def __init__(self, endpoints: Sequence[str], cluster: str, *, timeout_s: float = 3.0,
                 tls: ClientTls | bool | None = True) -> None:
        """``tls``: the identity presented to etcd (mutual TLS: etcd runs with
        --client-cert-auth and trusts the cluster CA): True for the process's
        (``rpc.use_tls``), False or None for plaintext. Its files are looked at again every
        ``rpc.TLS_RECHECK_S``, as a channel pool does; a rotated certificate (or CA) is
        presented from the next call on."""
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self.endpoints = tuple(endpoints)
        self.prefix = f"/trenchcoat/{cluster}/"
        self._timeout = timeout_s
        self._pool = rpc.ChannelPool(CHANNEL_OPTIONS, tls=tls)
        self._clients = tuple(_PooledClient(self._pool, endpoint, timeout=self._timeout) for endpoint in self.endpoints)
        self._current = 0

    async def close(self) -> None:
        for client in self._clients:
            await client.close()
        await self._pool.close()

    def _key(self, key: str) -> bytes:
        return (self.prefix + key).encode()

    async def _call(self, what: str, fn: Callable[[aetcd.Client], Awaitable[Any]]) -> Any:
        """Runs one etcd call; on a connection failure moves to the next endpoint."""
        current = self._current
        try:
            return await asyncio.wait_for(fn(self._clients[current]), self._timeout)
        except (aetcd.exceptions.ClientError, TimeoutError, OSError) as exc:
            if current == self._current:  # calls failing together move on once, not once each
                self._current = (current + 1) % len(self.endpoints)
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            failed = (f"did not answer {what} within {self._timeout:g}s" if isinstance(exc, TimeoutError)
                      else f"could not serve {what}")
            raise Unavailable(f"etcd {failed} ({detail}); retry, and check that etcd is up at "
                              f"{', '.join(self.endpoints)}") from exc

    # --- reads ---------------------------------------------------------------------------

    async def get(self, key: str) -> Record | None:
        got = await self._call(f"get {key}", lambda c: c.get(self._key(key)))
        if got is None:
            return None
        return Record(key, json.loads(got.value), got.mod_revision, got.lease)

    async def get_prefix(self, prefix: str) -> tuple[dict[str, Record], int]:
        """Every record under ``prefix`` (keys relative to it) and the store revision."""
        got = await self._call(f"list {prefix}", lambda c: c.get_prefix(self._key(prefix)))
        records = {}
        skip = len(self.prefix) + len(prefix)
        for kv in got.kvs:
            key = kv.key.decode()[skip:]
            records[key] = Record(key, json.loads(kv.value), kv.mod_revision, kv.lease)
        return records, got.header.revision

    # --- writes --------------------------------------------------------------------------

    async def put(self, key: str, value: dict[str, Any], lease: int = 0) -> None:
        data = json.dumps(value, sort_keys=True).encode()
        await self._call(f"put {key}", lambda c: c.put(self._key(key), data, lease=lease or None))

    async def create(self, key: str, value: dict[str, Any], lease: int = 0, *, unless: str = "") -> bool:
        """Writes ``key`` only if it does not exist (nor the key ``unless``, when given: of
        two keys created this way, each unless the other, at most one ever exists); True if
        it was written."""
        data = json.dumps(value, sort_keys=True).encode()
        k = self._key(key)

        async def txn(c: aetcd.Client) -> bool:
            ok, _ = await c.transaction(
                compare=[c.transactions.create(k) == 0,
                         *([c.transactions.create(self._key(unless)) == 0] if unless else [])],
                success=[c.transactions.put(k, data, lease=lease or None)], failure=[],
            )
            return bool(ok)

        return await self._call(f"create {key}", txn)

    async def swap(self, key: str, value: dict[str, Any], mod_revision: int, lease: int = 0) -> bool:
        """Writes ``key`` only if nobody wrote it since ``mod_revision``; True if written."""
        data = json.dumps(value, sort_keys=True).encode()
        k = self._key(key)

        async def txn(c: aetcd.Client) -> bool:
            ok, _ = await c.transaction(
                compare=[c.transactions.mod(k) == mod_revision],
                success=[c.transactions.put(k, data, lease=lease or None)], failure=[],
            )
            return bool(ok)

        return await self._call(f"update {key}", txn)

    async def remove(self, key: str, mod_revision: int) -> bool:
        """Deletes ``key`` only if nobody wrote it since ``mod_revision``; True if deleted."""
        k = self._key(key)

        async def txn(c: aetcd.Client) -> bool:
            ok, _ = await c.transaction(compare=[c.transactions.mod(k) == mod_revision],
                                        success=[c.transactions.delete(k)], failure=[])
            return bool(ok)

        return await self._call(f"delete {key}", txn)

    # --- leases --------------------------------------------------------------------------

    async def grant(self, ttl_s: int) -> int:
        lease = await self._call("lease grant", lambda c: c.lease(ttl_s))
        return int(lease.id)

    async def refresh(self, lease: int) -> bool:
        """Keeps a lease alive; False when it has already expired (its keys are gone)."""
        reply = await self._call("lease refresh", lambda c: c.refresh_lease(lease))
        return reply is not None and reply.TTL > 0

    async def revoke(self, lease: int) -> None:
        await self._call("lease revoke", lambda c: c.revoke_lease(lease))


class LeasedKey(PeriodicWorker):
    """A key that exists exactly while its owner is alive and can reach etcd: written
    under a lease refreshed every ttl/3, rewritten when ``value()`` changes, and claimed
    again when the lease is lost (etcd unreachable for longer than the ttl, or restarted
    without its data).

    When the key is held by someone else, ``take_over(record)`` decides: True to take it
    (the holder is this owner's own earlier incarnation), False to wait for it to lapse;
    it may raise to refuse for good.

    A background loop (``PeriodicWorker``): ``shutdown()`` waits for a claim or refresh
    under way to end, then revokes the lease, so the key goes at once and no claim can land
    after it (one that did would hold the key for a whole TTL after its owner stopped).
    """

    def __init__(self, etcd: Etcd, key: str, ttl_s: int, value: Callable[[], dict[str, Any]],
                 take_over: Callable[[Record], bool] = lambda record: False) -> None:
        # A failed refresh is tried again at the usual cadence, not after a growing backoff:
        # the lease lapses one TTL after the last refresh that reached etcd.
        super().__init__(f"{key} lease", ttl_s / 3, retry=Backoff(base_s=ttl_s / 3, max_s=ttl_s / 3))
        self._etcd = etcd
        self.key = key
        self._ttl = ttl_s
        self._value = value
        self._take_over = take_over
        self._written: dict[str, Any] | None = None
        self.lease = 0
        self.held = asyncio.Event()
        self.refused: Exception | None = None
        """Why ``take_over`` refused the key for good (the loop then ends raising it)."""
        self.wake()  # the first tick claims at once

    async def claim(self) -> bool:
        """One attempt to hold the key; True when held."""
        lease = await self._etcd.grant(self._ttl)
        value = self._value()
        try:
            won = await self._etcd.create(self.key, value, lease)
            if not won:
                holder = await self._etcd.get(self.key)
                if holder is not None and self._take_over(holder):
                    won = await self._etcd.swap(self.key, value, holder.mod_revision, lease)
        except BaseException:
            await self._revoke(lease)
            raise
        if not won:
            await self._revoke(lease)
            return False
        self.lease, self._written = lease, value
        self.held.set()
        log.info("%s: held (lease %x)", self.key, lease)
        return True

    async def tick(self) -> None:
        """Claims the key when not held; else keeps the lease alive and the value current.
        Failures (etcd away) are the loop's to log and retry."""
        if not self.lease:
            try:
                await self.claim()
            except Unavailable:
                raise  # etcd away: tried again
            except Exception as exc:  # noqa: BLE001 - take_over refused the key for good: stop, then raise it
                self.refused = exc
                self._stop.set()
        elif not await self._etcd.refresh(self.lease):
            log.warning("%s: lease %x expired; claiming again", self.key, self.lease)
            self._drop()
            self.wake()
        else:
            value = self._value()
            if value != self._written:
                await self._etcd.put(self.key, value, self.lease)
                self._written = value

    async def run(self) -> None:
        await super().run()
        if self.refused is not None:
            raise self.refused  # the service reports NOT_SERVING, saying why

    def _drop(self) -> None:
        self.lease = 0
        self.held.clear()

    async def _revoke(self, lease: int) -> None:
        with contextlib.suppress(Unavailable):  # it lapses by itself
            await self._etcd.revoke(lease)

    async def shutdown(self) -> None:
        """Stops the loop (waiting for a claim or refresh under way), then revokes the
        lease, so the key goes at once."""
        await super().shutdown()
        if self.lease:
            await self._revoke(self.lease)
            self._drop()
