"""The F4RebuilderService servicer: protobuf in, a call on the Scanner, protobuf out."""

from __future__ import annotations

from grpc.aio import ServicerContext

from f4.rebuilder.scan import Health, Scanner
from f4.storage.service import block_id, block_message
from trenchcoat.errors import InvalidArgument
from trenchcoat.v1 import f4_pb2, f4_pb2_grpc

SERVICE_NAME = "trenchcoat.v1.F4RebuilderService"


class RebuilderServicer(f4_pb2_grpc.F4RebuilderServiceServicer):
    def __init__(self, scanner: Scanner) -> None:
        self._scanner = scanner

    async def RebuildBlock(
        self, request: f4_pb2.RebuildBlockRequest,
        context: ServicerContext[f4_pb2.RebuildBlockRequest, f4_pb2.RebuildBlockResponse],
    ) -> f4_pb2.RebuildBlockResponse:
        if not request.HasField("block"):
            raise InvalidArgument("RebuildBlock names the block to rebuild")
        if request.target_node:
            raise InvalidArgument("target_node is chosen by the rebuilder (in place, or a failure domain the "
                                  "stripe does not use); leave it empty")
        return f4_pb2.RebuildBlockResponse(rebuild_id=await self._scanner.request(block_id(request.block)))

    async def RebuildStatus(
        self, request: f4_pb2.RebuildStatusRequest,
        context: ServicerContext[f4_pb2.RebuildStatusRequest, f4_pb2.RebuildStatusResponse],
    ) -> f4_pb2.RebuildStatusResponse:
        rebuilder, health = self._scanner.rebuilder, list(self._scanner.health.values())
        return f4_pb2.RebuildStatusResponse(
            rebuilds=[f4_pb2.Rebuild(rebuild_id=p.rebuild_id, block=block_message(p.block), done_bytes=p.done_bytes,
                                     total_bytes=p.total_bytes, finished=p.finished, node=p.node, domain=p.domain,
                                     reason=p.reason, error=p.error, resumed_bytes=p.resumed_bytes)
                      for p in rebuilder.progress],
            throttle_bytes_per_s=int(rebuilder.bytes_per_s),
            healthy_blocks=health.count(Health.HEALTHY),
            damaged_blocks=health.count(Health.DAMAGED) + health.count(Health.MISSING),
            lost_blocks=health.count(Health.LOST),
            grace_s=self._scanner.grace_s,
            last_scan_unix_ms=self._scanner.last_scan_unix_ms,
            scan_interval_s=self._scanner.interval_s,
        )
