from trenchcoat.v1 import auth_pb2 as _auth_pb2
from trenchcoat.v1 import media_pb2 as _media_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BlockId(_message.Message):
    __slots__ = ("volume_id", "stripe", "index")
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    STRIPE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    stripe: int
    index: int
    def __init__(self, volume_id: _Optional[int] = ..., stripe: _Optional[int] = ..., index: _Optional[int] = ...) -> None: ...

class EncodeVolumeRequest(_message.Message):
    __slots__ = ("logical_volume",)
    LOGICAL_VOLUME_FIELD_NUMBER: _ClassVar[int]
    logical_volume: int
    def __init__(self, logical_volume: _Optional[int] = ...) -> None: ...

class EncodeVolumeResponse(_message.Message):
    __slots__ = ("stripes", "blobs", "logical_bytes", "stored_bytes")
    STRIPES_FIELD_NUMBER: _ClassVar[int]
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    stripes: int
    blobs: int
    logical_bytes: int
    stored_bytes: int
    def __init__(self, stripes: _Optional[int] = ..., blobs: _Optional[int] = ..., logical_bytes: _Optional[int] = ..., stored_bytes: _Optional[int] = ...) -> None: ...

class ReadBlobRequest(_message.Message):
    __slots__ = ("needle",)
    NEEDLE_FIELD_NUMBER: _ClassVar[int]
    needle: _media_pb2.NeedleLocator
    def __init__(self, needle: _Optional[_Union[_media_pb2.NeedleLocator, _Mapping]] = ...) -> None: ...

class ReadBlobResponse(_message.Message):
    __slots__ = ("data", "reconstructed", "content_type")
    DATA_FIELD_NUMBER: _ClassVar[int]
    RECONSTRUCTED_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    reconstructed: bool
    content_type: str
    def __init__(self, data: _Optional[bytes] = ..., reconstructed: _Optional[bool] = ..., content_type: _Optional[str] = ...) -> None: ...

class DeleteBlobRequest(_message.Message):
    __slots__ = ("ref", "alternate_key")
    REF_FIELD_NUMBER: _ClassVar[int]
    ALTERNATE_KEY_FIELD_NUMBER: _ClassVar[int]
    ref: _media_pb2.MediaRef
    alternate_key: int
    def __init__(self, ref: _Optional[_Union[_media_pb2.MediaRef, _Mapping]] = ..., alternate_key: _Optional[int] = ...) -> None: ...

class DeleteBlobResponse(_message.Message):
    __slots__ = ("discarded",)
    DISCARDED_FIELD_NUMBER: _ClassVar[int]
    discarded: int
    def __init__(self, discarded: _Optional[int] = ...) -> None: ...

class F4VolumeStatusRequest(_message.Message):
    __slots__ = ("volume_id",)
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    def __init__(self, volume_id: _Optional[int] = ...) -> None: ...

class BlockStatus(_message.Message):
    __slots__ = ("block", "node", "rack", "healthy", "size_bytes")
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    RACK_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    block: BlockId
    node: str
    rack: str
    healthy: bool
    size_bytes: int
    def __init__(self, block: _Optional[_Union[BlockId, _Mapping]] = ..., node: _Optional[str] = ..., rack: _Optional[str] = ..., healthy: _Optional[bool] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class F4VolumeStatusResponse(_message.Message):
    __slots__ = ("blocks",)
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    blocks: _containers.RepeatedCompositeFieldContainer[BlockStatus]
    def __init__(self, blocks: _Optional[_Iterable[_Union[BlockStatus, _Mapping]]] = ...) -> None: ...

class PutBlockRequest(_message.Message):
    __slots__ = ("block", "data", "crc32c", "domain")
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    block: BlockId
    data: bytes
    crc32c: int
    domain: str
    def __init__(self, block: _Optional[_Union[BlockId, _Mapping]] = ..., data: _Optional[bytes] = ..., crc32c: _Optional[int] = ..., domain: _Optional[str] = ...) -> None: ...

class PutBlockResponse(_message.Message):
    __slots__ = ("size_bytes",)
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    size_bytes: int
    def __init__(self, size_bytes: _Optional[int] = ...) -> None: ...

class ReadRangeRequest(_message.Message):
    __slots__ = ("block", "offset", "length")
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    block: BlockId
    offset: int
    length: int
    def __init__(self, block: _Optional[_Union[BlockId, _Mapping]] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class ReadRangeResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class ListBlocksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBlocksResponse(_message.Message):
    __slots__ = ("blocks", "domains", "cell")
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    CELL_FIELD_NUMBER: _ClassVar[int]
    blocks: _containers.RepeatedCompositeFieldContainer[BlockStatus]
    domains: _containers.RepeatedScalarFieldContainer[str]
    cell: str
    def __init__(self, blocks: _Optional[_Iterable[_Union[BlockStatus, _Mapping]]] = ..., domains: _Optional[_Iterable[str]] = ..., cell: _Optional[str] = ...) -> None: ...

class DeleteBlockRequest(_message.Message):
    __slots__ = ("block",)
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    block: BlockId
    def __init__(self, block: _Optional[_Union[BlockId, _Mapping]] = ...) -> None: ...

class DeleteBlockResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class ReconstructRequest(_message.Message):
    __slots__ = ("block", "offset", "length", "sources")
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    block: BlockId
    offset: int
    length: int
    sources: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, block: _Optional[_Union[BlockId, _Mapping]] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., sources: _Optional[_Iterable[str]] = ...) -> None: ...

class ReconstructResponse(_message.Message):
    __slots__ = ("data", "bytes_read")
    DATA_FIELD_NUMBER: _ClassVar[int]
    BYTES_READ_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    bytes_read: int
    def __init__(self, data: _Optional[bytes] = ..., bytes_read: _Optional[int] = ...) -> None: ...

class RebuildBlockRequest(_message.Message):
    __slots__ = ("block", "target_node")
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    TARGET_NODE_FIELD_NUMBER: _ClassVar[int]
    block: BlockId
    target_node: str
    def __init__(self, block: _Optional[_Union[BlockId, _Mapping]] = ..., target_node: _Optional[str] = ...) -> None: ...

class RebuildBlockResponse(_message.Message):
    __slots__ = ("rebuild_id",)
    REBUILD_ID_FIELD_NUMBER: _ClassVar[int]
    rebuild_id: str
    def __init__(self, rebuild_id: _Optional[str] = ...) -> None: ...

class RebuildStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Rebuild(_message.Message):
    __slots__ = ("rebuild_id", "block", "done_bytes", "total_bytes", "finished", "node", "domain", "reason", "error", "resumed_bytes")
    REBUILD_ID_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    DONE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESUMED_BYTES_FIELD_NUMBER: _ClassVar[int]
    rebuild_id: str
    block: BlockId
    done_bytes: int
    total_bytes: int
    finished: bool
    node: str
    domain: str
    reason: str
    error: str
    resumed_bytes: int
    def __init__(self, rebuild_id: _Optional[str] = ..., block: _Optional[_Union[BlockId, _Mapping]] = ..., done_bytes: _Optional[int] = ..., total_bytes: _Optional[int] = ..., finished: _Optional[bool] = ..., node: _Optional[str] = ..., domain: _Optional[str] = ..., reason: _Optional[str] = ..., error: _Optional[str] = ..., resumed_bytes: _Optional[int] = ...) -> None: ...

class RebuildStatusResponse(_message.Message):
    __slots__ = ("rebuilds", "throttle_bytes_per_s", "healthy_blocks", "damaged_blocks", "lost_blocks", "grace_s", "last_scan_unix_ms", "scan_interval_s")
    REBUILDS_FIELD_NUMBER: _ClassVar[int]
    THROTTLE_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    LOST_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    GRACE_S_FIELD_NUMBER: _ClassVar[int]
    LAST_SCAN_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    SCAN_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    rebuilds: _containers.RepeatedCompositeFieldContainer[Rebuild]
    throttle_bytes_per_s: int
    healthy_blocks: int
    damaged_blocks: int
    lost_blocks: int
    grace_s: float
    last_scan_unix_ms: int
    scan_interval_s: float
    def __init__(self, rebuilds: _Optional[_Iterable[_Union[Rebuild, _Mapping]]] = ..., throttle_bytes_per_s: _Optional[int] = ..., healthy_blocks: _Optional[int] = ..., damaged_blocks: _Optional[int] = ..., lost_blocks: _Optional[int] = ..., grace_s: _Optional[float] = ..., last_scan_unix_ms: _Optional[int] = ..., scan_interval_s: _Optional[float] = ...) -> None: ...

class CreateKeyRequest(_message.Message):
    __slots__ = ("needle",)
    NEEDLE_FIELD_NUMBER: _ClassVar[int]
    needle: _media_pb2.NeedleLocator
    def __init__(self, needle: _Optional[_Union[_media_pb2.NeedleLocator, _Mapping]] = ...) -> None: ...

class CreateKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class GetKeyRequest(_message.Message):
    __slots__ = ("needle",)
    NEEDLE_FIELD_NUMBER: _ClassVar[int]
    needle: _media_pb2.NeedleLocator
    def __init__(self, needle: _Optional[_Union[_media_pb2.NeedleLocator, _Mapping]] = ...) -> None: ...

class GetKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class DiscardKeyRequest(_message.Message):
    __slots__ = ("needle", "every_rendition")
    NEEDLE_FIELD_NUMBER: _ClassVar[int]
    EVERY_RENDITION_FIELD_NUMBER: _ClassVar[int]
    needle: _media_pb2.NeedleLocator
    every_rendition: bool
    def __init__(self, needle: _Optional[_Union[_media_pb2.NeedleLocator, _Mapping]] = ..., every_rendition: _Optional[bool] = ...) -> None: ...

class DiscardKeyResponse(_message.Message):
    __slots__ = ("discarded", "keys_discarded")
    DISCARDED_FIELD_NUMBER: _ClassVar[int]
    KEYS_DISCARDED_FIELD_NUMBER: _ClassVar[int]
    discarded: bool
    keys_discarded: int
    def __init__(self, discarded: _Optional[bool] = ..., keys_discarded: _Optional[int] = ...) -> None: ...
