"""Client verbs of the ``trenchcoat`` command that talk to a running cluster over gRPC:
``put`` (upload a file), ``volumes`` (the volume map) and the Directory part of
``status`` (stores and leader)."""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from trenchcoat.config import Config
from trenchcoat.errors import InvalidArgument, Unavailable
from trenchcoat.server import MAX_MESSAGE_BYTES
from trenchcoat.v1 import directory_pb2 as dpb
from trenchcoat.v1 import directory_pb2_grpc, router_pb2, router_pb2_grpc

CHUNK = 1024 * 1024
_STATE_NAMES = {dpb.VOLUME_STATE_WRITABLE: "writable", dpb.VOLUME_STATE_READ_ONLY: "read-only",
                dpb.VOLUME_STATE_SEALED: "sealed", dpb.VOLUME_STATE_WARM: "warm"}


def router_address(config: Config) -> str:
    return f"{config.cluster.host}:{config.router.port}"


async def put(config: Config, path: Path, user: int, content_type: str = "", key: str = "") -> router_pb2.UploadResponse:
    if not path.is_file():
        raise InvalidArgument(f"{path} is not a readable file")
    content_type = content_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    size = path.stat().st_size

    async def messages() -> AsyncIterator[router_pb2.UploadRequest]:
        yield router_pb2.UploadRequest(header=router_pb2.UploadHeader(
            owner_id=user, content_type=content_type, size_bytes=size, idempotency_key=key))
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield router_pb2.UploadRequest(chunk=chunk)

    options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
    async with grpc.aio.insecure_channel(router_address(config), options=options) as channel:
        try:
            return await router_pb2_grpc.MediaServiceStub(channel).Upload(messages(), timeout=60)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, f"router at {router_address(config)}") from None


async def _directory_call(config: Config, method: str, request: object) -> object:
    last = None
    for endpoint in config.directory_endpoints():
        async with grpc.aio.insecure_channel(endpoint) as channel:
            try:
                return await getattr(directory_pb2_grpc.DirectoryServiceStub(channel), method)(request, timeout=5)
            except grpc.aio.AioRpcError as exc:
                last = _error(exc, f"directory at {endpoint}")
    raise last or Unavailable("no directory endpoints")


def _error(exc: grpc.aio.AioRpcError, who: str) -> Exception:
    if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(exc.details())
    return Unavailable(f"{who}: {exc.code().name}: {exc.details()}")


def volumes_table(config: Config) -> list[str]:
    reply = asyncio.run(_directory_call(config, "ListVolumes", dpb.ListVolumesRequest()))
    lines = [f"{'ID':>6}  {'STATE':<10}{'FILL':>7}  {'USED':>10}  REPLICAS (machine@rack, ! = down)"]
    for v in reply.volumes:  # type: ignore[attr-defined]
        fill = 100 * v.used_bytes / v.capacity_bytes if v.capacity_bytes else 0
        replicas = "  ".join(f"{r.machine_id}@{r.rack}{'' if r.alive else '!'}" for r in v.replicas)
        lines.append(f"{v.id:>6}  {_STATE_NAMES.get(v.state, '?'):<10}{fill:>6.1f}%  {_size(v.used_bytes):>10}  {replicas}")
    if not reply.volumes:  # type: ignore[attr-defined]
        lines.append("(no volumes yet)")
    return lines


def writable_volumes(config: Config) -> int:
    reply = asyncio.run(_directory_call(config, "ListVolumes", dpb.ListVolumesRequest()))
    return sum(v.state == dpb.VOLUME_STATE_WRITABLE for v in reply.volumes)  # type: ignore[attr-defined]


def stores_table(config: Config) -> list[str]:
    stores = asyncio.run(_directory_call(config, "ListStores", dpb.ListStoresRequest()))
    try:
        leader = asyncio.run(_directory_call(config, "GetLeader", dpb.GetLeaderRequest()))
        lead = f"leader: {leader.leader} ({leader.address})"  # type: ignore[attr-defined]
    except Unavailable as exc:
        lead = f"leader: none ({exc})"
    lines = [lead, f"{'STORE':>6}  {'RACK':<10}{'STATE':<7}{'FREE':>10}  ADDRESS"]
    for s in stores.stores:  # type: ignore[attr-defined]
        lines.append(f"{s.machine_id:>6}  {s.rack:<10}{'up' if s.alive else 'DOWN':<7}{_size(s.free_bytes):>10}  {s.address}")
    return lines


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)
