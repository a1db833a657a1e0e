"""The MediaService servicer: protobuf in, a call on the Uploader, Photos or the metadata,
protobuf out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from grpc.aio import ServicerContext

from router import metrics
from router.errors import BatchTooLarge, UploadRejected
from router.facts import Describer, MediaFacts, Outcome, RenditionFacts
from router.metadata import MediaRow, MediaState, MediaStore, RenditionsState
from router.photos import Photos
from router.renditions import RenditionDuties, RenditionWriter
from router.upload import Uploader, check_header
from trenchcoat import ids
from trenchcoat.errors import OutOfRange, TrenchcoatError
from trenchcoat.v1 import media_pb2, router_pb2, router_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = "trenchcoat.v1.MediaService"
MAX_BATCH_STAT = 1000
READ_CHUNK = 1024 * 1024
DRAIN_SECONDS = 2.0

_STATES = {MediaState.ACTIVE: media_pb2.MEDIA_STATE_ACTIVE, MediaState.DELETED: media_pb2.MEDIA_STATE_DELETED}


_RENDITIONS_STATES = {RenditionsState.PENDING: media_pb2.RENDITIONS_PENDING,
                      RenditionsState.DONE: media_pb2.RENDITIONS_DONE,
                      RenditionsState.FAILED: media_pb2.RENDITIONS_FAILED}
_TIERS = {"hot": media_pb2.TIER_HOT, "warm": media_pb2.TIER_WARM}
_OUTCOMES = {Outcome.FOUND: router_pb2.STAT_FOUND, Outcome.NOT_FOUND: router_pb2.STAT_NOT_FOUND,
             Outcome.DELETED: router_pb2.STAT_DELETED, Outcome.UNAVAILABLE: router_pb2.STAT_UNAVAILABLE}


def media_info(facts: MediaFacts) -> media_pb2.MediaInfo:
    row = facts.row
    active = row.state is MediaState.ACTIVE
    return media_pb2.MediaInfo(
        ref=media_pb2.MediaRef(media_id=row.media_id), owner_id=row.owner_id,
        content_type=row.content_type, size_bytes=row.size_bytes, width=row.width, height=row.height,
        created_unix_ms=ids.unix_ms(row.media_id), state=_STATES[row.state],
        tier=_TIERS.get(facts.tier, media_pb2.TIER_UNSPECIFIED), url=facts.url,
        renditions=[rendition_info(r) for r in facts.renditions],
        renditions_state=_RENDITIONS_STATES[row.renditions_state] if active else None,
        renditions_error=row.renditions_error or "",
    )


def rendition_info(r: RenditionFacts) -> media_pb2.RenditionInfo:
    return media_pb2.RenditionInfo(alternate_key=r.row.alternate_key, content_type=r.row.content_type,
                                   size_bytes=r.row.size_bytes, width=r.row.width, height=r.row.height, url=r.url)


class MediaServicer(router_pb2_grpc.MediaServiceServicer):
    def __init__(self, uploader: Uploader, media: MediaStore, photos: Photos, renditions: RenditionWriter,
                 duties: RenditionDuties | None = None) -> None:
        self._uploader = uploader
        self._media = media
        self._photos = photos
        self._facts = Describer(media, photos)
        self._renditions = renditions
        self._duties = duties

    async def info(self, row: MediaRow) -> media_pb2.MediaInfo:
        return media_info(await self._facts.facts(row))

    def _uploaded(self, row: MediaRow) -> None:
        if self._duties is not None:
            self._duties.uploaded(row.media_id, row.content_type)

    async def Upload(
        self, request_iterator: AsyncIterator[router_pb2.UploadRequest],
        context: ServicerContext[router_pb2.UploadRequest, router_pb2.UploadResponse],
    ) -> router_pb2.UploadResponse:
        try:
            return await self._upload(request_iterator)
        except UploadRejected:
            # A client still streaming when the call ends sees a transport error instead of
            # our status: read (and drop) a bounded remainder first, so it gets the reason.
            await _drain(request_iterator, self._uploader.limits.max_bytes, DRAIN_SECONDS)
            raise

    async def _upload(self, request_iterator: AsyncIterator[router_pb2.UploadRequest]) -> router_pb2.UploadResponse:
        header: router_pb2.UploadHeader | None = None
        parts: list[bytes] = []
        size = 0
        limits = self._uploader.limits
        async for message in request_iterator:
            kind = message.WhichOneof("part")
            if header is None:
                if kind != "header":
                    raise UploadRejected("the first message of an upload must be its header")
                header = message.header
                check_header(header.owner_id, header.content_type, header.size_bytes, header.idempotency_key,
                             limits)
                continue
            if kind != "chunk":
                raise UploadRejected("an upload has one header, then chunks")
            size += len(message.chunk)
            if size > limits.max_bytes:
                raise UploadRejected(f"the upload is larger than the {limits.max_bytes} bytes an upload may carry")
            parts.append(message.chunk)
        if header is None:
            raise UploadRejected("empty upload stream: send a header, then the bytes")
        if header.size_bytes and header.size_bytes != size:
            raise UploadRejected(f"the header declared {header.size_bytes} bytes but {size} arrived")
        row = await self._uploader.upload(header.owner_id, header.content_type, b"".join(parts),
                                          header.idempotency_key)
        self._uploaded(row)
        return router_pb2.UploadResponse(media=await self.info(row))

    async def UploadBytes(
        self, request: router_pb2.UploadBytesRequest,
        context: ServicerContext[router_pb2.UploadBytesRequest, router_pb2.UploadBytesResponse],
    ) -> router_pb2.UploadBytesResponse:
        header = request.header
        data = request.data  # (each access of a bytes field copies it)
        if header.size_bytes and header.size_bytes != len(data):
            raise UploadRejected(f"the header declared {header.size_bytes} bytes but {len(data)} arrived")
        row = await self._uploader.upload(header.owner_id, header.content_type, data, header.idempotency_key)
        self._uploaded(row)
        return router_pb2.UploadBytesResponse(media=await self.info(row))

    async def Read(
        self, request: router_pb2.ReadRequest,
        context: ServicerContext[router_pb2.ReadRequest, router_pb2.ReadResponse],
    ) -> AsyncIterator[router_pb2.ReadResponse]:
        row, data = await self._photos.read(request.ref.media_id, request.alternate_key, internal=request.internal)
        # The pipeline's own reads learn every rendition already stored (what not to redo).
        renditions = (await self._media.renditions_of([row.media_id])).get(row.media_id, []) if request.internal else []
        if request.offset > len(data):
            raise OutOfRange(f"offset {request.offset} is past the end ({len(data)} bytes)")
        end = len(data) if not request.length else min(len(data), request.offset + request.length)
        view = memoryview(data)
        first = True
        for start in range(request.offset, max(end, request.offset + 1), READ_CHUNK):
            chunk = bytes(view[start:min(end, start + READ_CHUNK)])
            facts = await self._facts.facts(row, renditions, every=True) if first else None
            yield router_pb2.ReadResponse(media=media_info(facts) if facts else None, offset=start, data=chunk)
            first = False

    async def Delete(
        self, request: router_pb2.DeleteRequest,
        context: ServicerContext[router_pb2.DeleteRequest, router_pb2.DeleteResponse],
    ) -> router_pb2.DeleteResponse:
        return router_pb2.DeleteResponse(deleted=await self._photos.delete(request.ref.media_id, request.owner_id))

    async def Stat(
        self, request: router_pb2.StatRequest,
        context: ServicerContext[router_pb2.StatRequest, router_pb2.StatResponse],
    ) -> router_pb2.StatResponse:
        return router_pb2.StatResponse(media=media_info(await self._facts.stat(request.ref.media_id)))

    async def BatchStat(
        self, request: router_pb2.BatchStatRequest,
        context: ServicerContext[router_pb2.BatchStatRequest, router_pb2.BatchStatResponse],
    ) -> router_pb2.BatchStatResponse:
        if len(request.refs) > MAX_BATCH_STAT:
            raise BatchTooLarge(f"BatchStat takes at most {MAX_BATCH_STAT} refs, got {len(request.refs)}")
        metrics.BATCH_STAT_IDS.inc(len(request.refs))
        described = await self._facts.batch([r.media_id for r in request.refs])
        return router_pb2.BatchStatResponse(results=[
            router_pb2.StatResult(ref=media_pb2.MediaRef(media_id=d.media_id), outcome=_OUTCOMES[d.outcome],
                                  media=media_info(d.facts) if d.facts else None, reason=d.reason)
            for d in described])

    async def PutRendition(
        self, request: router_pb2.PutRenditionRequest,
        context: ServicerContext[router_pb2.PutRenditionRequest, router_pb2.PutRenditionResponse],
    ) -> router_pb2.PutRenditionResponse:
        rendition, created = await self._renditions.put(
            request.ref.media_id, request.alternate_key, request.content_type, request.width, request.height,
            request.data)
        url = await self._photos.url(rendition)
        return router_pb2.PutRenditionResponse(rendition=rendition_info(RenditionFacts(rendition, url)),
                                               created=created)

    async def FinishRenditions(
        self, request: router_pb2.FinishRenditionsRequest,
        context: ServicerContext[router_pb2.FinishRenditionsRequest, router_pb2.FinishRenditionsResponse],
    ) -> router_pb2.FinishRenditionsResponse:
        recorded = await self._renditions.finish(request.ref.media_id, request.recipe_version, request.failure,
                                                 width=request.width, height=request.height)
        return router_pb2.FinishRenditionsResponse(recorded=recorded)


async def _drain(request_iterator: AsyncIterator[router_pb2.UploadRequest], max_bytes: int, seconds: float) -> None:
    async def consume() -> None:
        seen = 0
        async for message in request_iterator:
            seen += message.ByteSize()
            if seen > max_bytes:
                return

    try:
        await asyncio.wait_for(consume(), seconds)
    except (TimeoutError, grpc.RpcError, TrenchcoatError) as exc:
        # Timed out or broken: the reason to answer is already known.
        log.debug("draining a rejected upload's stream stopped: %s", exc)
