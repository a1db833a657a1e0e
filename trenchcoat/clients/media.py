"""The one client of the router's ``MediaService``: upload (bytes or a file: in one
message when it fits one chunk, else streamed in chunks), read, stat, batch stat and
delete. Used by the ``trenchcoat`` command, the demo,
the benchmarks and the tests, and by the services that come after the media pipeline
(the feed checks a post's media with ``stat`` and hydrates timelines with
``batch_stat``).

Results are plain values (``Media``); failures are typed errors (``NotFound`` for an
unknown or deleted media_id, ``InvalidArgument`` for a rejected upload, ``Unavailable``
when it should be retried). Protobuf stays in this module.
"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from trenchcoat import rpc, tokens
from trenchcoat.errors import Internal, InvalidArgument
from trenchcoat.v1 import media_pb2, router_pb2, router_pb2_grpc

CHUNK_BYTES = 1024 * 1024
"""An upload travels in messages of at most this many bytes."""
SINGLE_MESSAGE_BYTES = CHUNK_BYTES
"""An object of up to this many bytes is uploaded in one message (``UploadBytes``);
a larger one is streamed in chunks (``Upload``)."""

_STATES = {media_pb2.MEDIA_STATE_ACTIVE: "active", media_pb2.MEDIA_STATE_DELETED: "deleted"}
_TIERS = {media_pb2.TIER_HOT: "hot", media_pb2.TIER_WARM: "warm"}
_RENDITIONS_STATES = {media_pb2.RENDITIONS_PENDING: "pending", media_pb2.RENDITIONS_DONE: "done",
                      media_pb2.RENDITIONS_FAILED: "failed"}
_OUTCOMES = {router_pb2.STAT_FOUND: "found", router_pb2.STAT_NOT_FOUND: "not_found",
             router_pb2.STAT_DELETED: "deleted", router_pb2.STAT_UNAVAILABLE: "unavailable"}


@dataclass(frozen=True, slots=True)
class Rendition:
    """One stored rendition of a media object."""

    alternate_key: int
    content_type: str
    size_bytes: int
    width: int
    height: int
    url: str


@dataclass(frozen=True, slots=True)
class Media:
    """The small facts about a media object (the contract's MediaInfo)."""

    media_id: int
    owner_id: int
    content_type: str
    size_bytes: int
    created_unix_ms: int
    state: str
    """"active" or "deleted"."""
    tier: str
    """"hot" (Haystack) or "warm" (f4)."""
    url: str
    """Photo URL of the original through the CDN ("" unless active)."""
    width: int = 0
    height: int = 0
    renditions: tuple[Rendition, ...] = ()
    renditions_state: str = ""
    """"pending", "done" or "failed" ("" unless active)."""
    renditions_error: str = ""


@dataclass(frozen=True, slots=True)
class StatResult:
    """What ``batch_stat`` found for one media_id (the contract's StatResult)."""

    media_id: int
    outcome: str
    """"found", "not_found", "deleted" or "unavailable"."""
    media: Media | None = None
    """Its facts when found (and, with state "deleted", when deleted)."""
    reason: str = ""
    """Why it could not be described now ("unavailable")."""


def media(info: media_pb2.MediaInfo) -> Media:
    return Media(
        media_id=info.ref.media_id, owner_id=info.owner_id, content_type=info.content_type,
        size_bytes=info.size_bytes, created_unix_ms=info.created_unix_ms, state=_STATES.get(info.state, ""),
        tier=_TIERS.get(info.tier, ""), url=info.url, width=info.width, height=info.height,
        renditions=tuple(Rendition(r.alternate_key, r.content_type, r.size_bytes, r.width, r.height, r.url)
                         for r in info.renditions),
        renditions_state=_RENDITIONS_STATES.get(info.renditions_state, ""), renditions_error=info.renditions_error,
    )


class MediaClient:
    """Calls to one router (its gRPC address) over a channel pool."""

    def __init__(self, pool: rpc.ChannelPool, address: str, *, timeout_s: float = 60.0) -> None:
        self._pool = pool
        self.address = address
        self.timeout_s = timeout_s
        self._remote = f"router {address}"

    def _stub(self) -> router_pb2_grpc.MediaServiceStub:
        return self._pool.stub(router_pb2_grpc.MediaServiceStub, self.address)

    async def upload(self, data: bytes | Path, *, owner_id: int, content_type: str = "",
                     idempotency_key: str = "", chunk_bytes: int = CHUNK_BYTES, token: str | None = None) -> Media:
        """Stores ``data`` (bytes, or a file read in chunks) for ``owner_id``; returns once every
        replica holds it durably. ``content_type`` defaults to a guess from the file name.
        ``token``: the owner's user token (default: the process's, ``trenchcoat.tokens.use``)."""
        metadata = tokens.metadata_for(owner_id, token)
        if isinstance(data, Path):
            # A slow disk (or a network file system) must not stall the loop: every look at
            # the file is in a thread.
            if not await asyncio.to_thread(data.is_file):
                raise InvalidArgument(f"{data} is not a readable file")
            content_type = content_type or mimetypes.guess_type(data.name)[0] or "application/octet-stream"
            size = (await asyncio.to_thread(data.stat)).st_size
            if size <= min(chunk_bytes, SINGLE_MESSAGE_BYTES):
                data = await asyncio.to_thread(data.read_bytes)  # a slow disk must not stall the loop
                size = len(data)
        else:
            content_type = content_type or "application/octet-stream"
            size = len(data)
        header = router_pb2.UploadHeader(owner_id=owner_id, content_type=content_type, size_bytes=size,
                                         idempotency_key=idempotency_key)
        if isinstance(data, bytes) and size <= min(chunk_bytes, SINGLE_MESSAGE_BYTES):
            # One message: a stream's extra messages cost both sides more CPU than the bytes.
            reply = await rpc.unary(self._stub().UploadBytes, router_pb2.UploadBytesRequest(header=header, data=data),
                                    remote=self._remote, timeout=self.timeout_s, metadata=metadata)
        else:
            reply = await rpc.stream_in(self._stub().Upload, upload_messages(header, data, chunk_bytes),
                                        remote=self._remote, timeout=self.timeout_s, metadata=metadata)
        return media(reply.media)

    async def read(self, media_id: int, *, alternate_key: int = 0, offset: int = 0,
                   length: int = 0, internal: bool = False) -> tuple[Media, bytes]:
        """The object's facts and its bytes (``length`` 0: to the end). ``internal``: a read
        by the pipeline itself (the transformer's), which the cache serves but never keeps."""
        request = router_pb2.ReadRequest(ref=media_pb2.MediaRef(media_id=media_id), alternate_key=alternate_key,
                                         offset=offset, length=length, internal=internal)
        info, parts = None, []
        async for message in rpc.stream_out(self._stub().Read, request, remote=self._remote, timeout=self.timeout_s):
            if message.HasField("media"):
                info = message.media
            parts.append(message.data)
        if info is None:
            raise Internal(f"{self._remote}: Read of {media_id} answered without the object's facts")
        return media(info), b"".join(parts)

    async def stat(self, media_id: int) -> Media:
        reply = await rpc.unary(self._stub().Stat, router_pb2.StatRequest(ref=media_pb2.MediaRef(media_id=media_id)),
                                remote=self._remote, timeout=self.timeout_s)
        return media(reply.media)

    async def batch_stat(self, media_ids: Sequence[int]) -> list[StatResult]:
        """What is known of up to 1,000 objects, one result each, in order: one that cannot
        be described now is a result ("unavailable", with the reason), never a failed call."""
        request = router_pb2.BatchStatRequest(refs=[media_pb2.MediaRef(media_id=m) for m in media_ids])
        reply = await rpc.unary(self._stub().BatchStat, request, remote=self._remote, timeout=self.timeout_s)
        if len(reply.results) != len(media_ids):
            raise Internal(f"{self._remote}: BatchStat of {len(media_ids)} ids answered {len(reply.results)} results")
        return [StatResult(r.ref.media_id, _OUTCOMES.get(r.outcome, "unavailable"),
                           media(r.media) if r.HasField("media") else None, r.reason) for r in reply.results]

    async def delete(self, media_id: int, *, owner_id: int = 0, token: str | None = None) -> bool:
        """Deletes the object everywhere, acting for ``owner_id`` (whose object it must be;
        0: for no user, as a service); False if it already was. ``token``: the owner's user
        token (default: the process's, ``trenchcoat.tokens.use``)."""
        reply = await rpc.unary(self._stub().Delete,
                                router_pb2.DeleteRequest(ref=media_pb2.MediaRef(media_id=media_id), owner_id=owner_id),
                                remote=self._remote, timeout=self.timeout_s,
                                metadata=tokens.metadata_for(owner_id, token))
        return bool(reply.deleted)


    async def put_rendition(self, media_id: int, alternate_key: int, *, content_type: str, width: int, height: int,
                            data: bytes) -> tuple[Rendition, bool]:
        """Stores one rendition (the transformer's output); returns the rendition recorded
        under that alternate key and whether it is this one (False: one was before)."""
        request = router_pb2.PutRenditionRequest(ref=media_pb2.MediaRef(media_id=media_id), alternate_key=alternate_key,
                                                 content_type=content_type, width=width, height=height, data=data)
        reply = await rpc.unary(self._stub().PutRendition, request, remote=self._remote, timeout=self.timeout_s)
        r = reply.rendition
        return Rendition(r.alternate_key, r.content_type, r.size_bytes, r.width, r.height, r.url), reply.created

    async def finish_renditions(self, media_id: int, recipe_version: int, failure: str = "", *,
                                width: int = 0, height: int = 0) -> bool:
        """Records the object's renditions finished (or, with ``failure``, failed for good),
        and the original's displayed size when known; False when the object is not active."""
        request = router_pb2.FinishRenditionsRequest(ref=media_pb2.MediaRef(media_id=media_id),
                                                     recipe_version=recipe_version, failure=failure, width=width,
                                                     height=height)
        reply = await rpc.unary(self._stub().FinishRenditions, request, remote=self._remote, timeout=self.timeout_s)
        return bool(reply.recorded)


async def upload_messages(header: router_pb2.UploadHeader, data: bytes | Path,
                          chunk_bytes: int = CHUNK_BYTES) -> AsyncIterator[router_pb2.UploadRequest]:
    """An upload stream: the header, then the bytes in chunks."""
    yield router_pb2.UploadRequest(header=header)
    if isinstance(data, Path):
        with data.open("rb") as f:  # read in a thread: a slow disk must not stall the loop
            while chunk := await asyncio.to_thread(f.read, chunk_bytes):
                yield router_pb2.UploadRequest(chunk=chunk)
        return
    view = memoryview(data)
    for start in range(0, len(data), chunk_bytes):
        yield router_pb2.UploadRequest(chunk=bytes(view[start:start + chunk_bytes]))
