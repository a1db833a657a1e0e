"""Resize and crop on read, the cache's side: a photo URL with a transform in its query
(``trenchcoat.transforms``) is checked against the allow-list before anything is read,
then the original is read as any photo is (this cache's memory, then the store) and sent
to a transformer worker's ``Transform``. One transform per URL at a time: readers of the
same URL while it runs share its answer (the CDN then keeps it). Workers are tried in an
order fixed by the photo, the next one when one does not answer."""

from __future__ import annotations

import zlib

from cache import metrics
from trenchcoat.clients.transformer import Transformed, TransformerClient
from trenchcoat.errors import Unavailable
from trenchcoat.rpc import ChannelPool
from trenchcoat.singleflight import SingleFlight
from trenchcoat.transforms import TransformSpec, check_allowed


class Resizer:
    def __init__(self, pool: ChannelPool, endpoints: tuple[str, ...], allowed: tuple[str, ...], *,
                 timeout_s: float) -> None:
        self.allowed = allowed
        self._clients = [TransformerClient(pool, e, timeout_s=timeout_s) for e in endpoints]
        self._flights: SingleFlight[tuple[str, str], Transformed] = SingleFlight()

    def check(self, spec: TransformSpec) -> None:
        """BadTransform unless the spec may be served (before any byte is read)."""
        check_allowed(spec, self.allowed)

    async def transform(self, photo: str, data: bytes, spec: TransformSpec) -> Transformed:
        """The photo named ``photo`` (its URL component), whose bytes are ``data``, as
        ``spec`` asks."""
        self.check(spec)
        key = (photo, str(spec))
        shared = self._flights.running(key)
        try:
            out = await self._flights.run(key, lambda: self._call(photo, data, spec))
        except BaseException:
            metrics.TRANSFORMS.labels("failed").inc()
            raise
        metrics.TRANSFORMS.labels("shared" if shared else "ok").inc()
        return out

    async def _call(self, photo: str, data: bytes, spec: TransformSpec) -> Transformed:
        if not self._clients:
            raise Unavailable("no transformer workers to resize on read (transformer.count is 0)")
        first = zlib.crc32(photo.encode()) % len(self._clients)
        failures = []
        for i in range(len(self._clients)):
            client = self._clients[(first + i) % len(self._clients)]
            try:
                return await client.transform(data, spec)
            except Unavailable as exc:
                failures.append(str(exc))
        raise Unavailable(f"no transformer answered: {'; '.join(failures)}")
