from trenchcoat.v1 import auth_pb2 as _auth_pb2
from trenchcoat.v1 import media_pb2 as _media_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateVolumeRequest(_message.Message):
    __slots__ = ("volume_id",)
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    def __init__(self, volume_id: _Optional[int] = ...) -> None: ...

class CreateVolumeResponse(_message.Message):
    __slots__ = ("volume",)
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    volume: VolumeInfo
    def __init__(self, volume: _Optional[_Union[VolumeInfo, _Mapping]] = ...) -> None: ...

class FreeVolumeRequest(_message.Message):
    __slots__ = ("volume_id",)
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    def __init__(self, volume_id: _Optional[int] = ...) -> None: ...

class FreeVolumeResponse(_message.Message):
    __slots__ = ("freed", "freed_bytes")
    FREED_FIELD_NUMBER: _ClassVar[int]
    FREED_BYTES_FIELD_NUMBER: _ClassVar[int]
    freed: bool
    freed_bytes: int
    def __init__(self, freed: _Optional[bool] = ..., freed_bytes: _Optional[int] = ...) -> None: ...

class WriteNeedleRequest(_message.Message):
    __slots__ = ("needle", "data", "content_type")
    NEEDLE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    needle: _media_pb2.NeedleLocator
    data: bytes
    content_type: str
    def __init__(self, needle: _Optional[_Union[_media_pb2.NeedleLocator, _Mapping]] = ..., data: _Optional[bytes] = ..., content_type: _Optional[str] = ...) -> None: ...

class WriteNeedleResponse(_message.Message):
    __slots__ = ("offset", "stored_size")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    STORED_SIZE_FIELD_NUMBER: _ClassVar[int]
    offset: int
    stored_size: int
    def __init__(self, offset: _Optional[int] = ..., stored_size: _Optional[int] = ...) -> None: ...

class ReadNeedleRequest(_message.Message):
    __slots__ = ("needle",)
    NEEDLE_FIELD_NUMBER: _ClassVar[int]
    needle: _media_pb2.NeedleLocator
    def __init__(self, needle: _Optional[_Union[_media_pb2.NeedleLocator, _Mapping]] = ...) -> None: ...

class ReadNeedleResponse(_message.Message):
    __slots__ = ("data", "content_type")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    content_type: str
    def __init__(self, data: _Optional[bytes] = ..., content_type: _Optional[str] = ...) -> None: ...

class BatchReadRequest(_message.Message):
    __slots__ = ("reads",)
    READS_FIELD_NUMBER: _ClassVar[int]
    reads: _containers.RepeatedCompositeFieldContainer[ReadNeedleRequest]
    def __init__(self, reads: _Optional[_Iterable[_Union[ReadNeedleRequest, _Mapping]]] = ...) -> None: ...

class BatchReadResult(_message.Message):
    __slots__ = ("index", "code", "message", "data", "error", "content_type")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    index: int
    code: int
    message: str
    data: bytes
    error: str
    content_type: str
    def __init__(self, index: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., data: _Optional[bytes] = ..., error: _Optional[str] = ..., content_type: _Optional[str] = ...) -> None: ...

class BatchReadResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchReadResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchReadResult, _Mapping]]] = ...) -> None: ...

class DeleteNeedleRequest(_message.Message):
    __slots__ = ("needle",)
    NEEDLE_FIELD_NUMBER: _ClassVar[int]
    needle: _media_pb2.NeedleLocator
    def __init__(self, needle: _Optional[_Union[_media_pb2.NeedleLocator, _Mapping]] = ...) -> None: ...

class DeleteNeedleResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class CompactVolumeRequest(_message.Message):
    __slots__ = ("volume_id",)
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    def __init__(self, volume_id: _Optional[int] = ...) -> None: ...

class CompactVolumeResponse(_message.Message):
    __slots__ = ("reclaimed_bytes", "live_needles")
    RECLAIMED_BYTES_FIELD_NUMBER: _ClassVar[int]
    LIVE_NEEDLES_FIELD_NUMBER: _ClassVar[int]
    reclaimed_bytes: int
    live_needles: int
    def __init__(self, reclaimed_bytes: _Optional[int] = ..., live_needles: _Optional[int] = ...) -> None: ...

class ScrubVolumeRequest(_message.Message):
    __slots__ = ("volume_id",)
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    def __init__(self, volume_id: _Optional[int] = ...) -> None: ...

class DamagedNeedle(_message.Message):
    __slots__ = ("key", "alternate_key", "offset", "reason")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ALTERNATE_KEY_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    key: int
    alternate_key: int
    offset: int
    reason: str
    def __init__(self, key: _Optional[int] = ..., alternate_key: _Optional[int] = ..., offset: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ScrubVolumeResponse(_message.Message):
    __slots__ = ("needles_checked", "damaged")
    NEEDLES_CHECKED_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_FIELD_NUMBER: _ClassVar[int]
    needles_checked: int
    damaged: _containers.RepeatedCompositeFieldContainer[DamagedNeedle]
    def __init__(self, needles_checked: _Optional[int] = ..., damaged: _Optional[_Iterable[_Union[DamagedNeedle, _Mapping]]] = ...) -> None: ...

class VolumeStatusRequest(_message.Message):
    __slots__ = ("volume_id",)
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    def __init__(self, volume_id: _Optional[int] = ...) -> None: ...

class VolumeInfo(_message.Message):
    __slots__ = ("volume_id", "read_only", "needles", "deleted_needles", "live_bytes", "dead_bytes", "file_bytes", "capacity_bytes", "created_unix_ms", "content_digest", "digest_settled")
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    NEEDLES_FIELD_NUMBER: _ClassVar[int]
    DELETED_NEEDLES_FIELD_NUMBER: _ClassVar[int]
    LIVE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DIGEST_SETTLED_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    read_only: bool
    needles: int
    deleted_needles: int
    live_bytes: int
    dead_bytes: int
    file_bytes: int
    capacity_bytes: int
    created_unix_ms: int
    content_digest: bytes
    digest_settled: bool
    def __init__(self, volume_id: _Optional[int] = ..., read_only: _Optional[bool] = ..., needles: _Optional[int] = ..., deleted_needles: _Optional[int] = ..., live_bytes: _Optional[int] = ..., dead_bytes: _Optional[int] = ..., file_bytes: _Optional[int] = ..., capacity_bytes: _Optional[int] = ..., created_unix_ms: _Optional[int] = ..., content_digest: _Optional[bytes] = ..., digest_settled: _Optional[bool] = ...) -> None: ...

class VolumeStatusResponse(_message.Message):
    __slots__ = ("machine_id", "volumes", "restoring")
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    RESTORING_FIELD_NUMBER: _ClassVar[int]
    machine_id: int
    volumes: _containers.RepeatedCompositeFieldContainer[VolumeInfo]
    restoring: _containers.RepeatedCompositeFieldContainer[RestoreProgress]
    def __init__(self, machine_id: _Optional[int] = ..., volumes: _Optional[_Iterable[_Union[VolumeInfo, _Mapping]]] = ..., restoring: _Optional[_Iterable[_Union[RestoreProgress, _Mapping]]] = ...) -> None: ...

class RestoreProgress(_message.Message):
    __slots__ = ("volume_id", "received_bytes", "total_bytes")
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    received_bytes: int
    total_bytes: int
    def __init__(self, volume_id: _Optional[int] = ..., received_bytes: _Optional[int] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class SetReadOnlyRequest(_message.Message):
    __slots__ = ("volume_id", "read_only")
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    read_only: bool
    def __init__(self, volume_id: _Optional[int] = ..., read_only: _Optional[bool] = ...) -> None: ...

class SetReadOnlyResponse(_message.Message):
    __slots__ = ("volume",)
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    volume: VolumeInfo
    def __init__(self, volume: _Optional[_Union[VolumeInfo, _Mapping]] = ...) -> None: ...

class ExportVolumeRequest(_message.Message):
    __slots__ = ("volume_id", "offset", "chunk_bytes")
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    offset: int
    chunk_bytes: int
    def __init__(self, volume_id: _Optional[int] = ..., offset: _Optional[int] = ..., chunk_bytes: _Optional[int] = ...) -> None: ...

class ExportVolumeResponse(_message.Message):
    __slots__ = ("offset", "data", "crc32c", "end_offset")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    END_OFFSET_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    crc32c: int
    end_offset: int
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., crc32c: _Optional[int] = ..., end_offset: _Optional[int] = ...) -> None: ...

class RepairVolumeRequest(_message.Message):
    __slots__ = ("volume_id", "source_address", "chunk_bytes", "bytes_per_s")
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    source_address: str
    chunk_bytes: int
    bytes_per_s: int
    def __init__(self, volume_id: _Optional[int] = ..., source_address: _Optional[str] = ..., chunk_bytes: _Optional[int] = ..., bytes_per_s: _Optional[int] = ...) -> None: ...

class RepairVolumeResponse(_message.Message):
    __slots__ = ("volume", "copied_bytes")
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    COPIED_BYTES_FIELD_NUMBER: _ClassVar[int]
    volume: VolumeInfo
    copied_bytes: int
    def __init__(self, volume: _Optional[_Union[VolumeInfo, _Mapping]] = ..., copied_bytes: _Optional[int] = ...) -> None: ...

class CopyNeedleRequest(_message.Message):
    __slots__ = ("volume_id", "key", "alternate_key")
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ALTERNATE_KEY_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    key: int
    alternate_key: int
    def __init__(self, volume_id: _Optional[int] = ..., key: _Optional[int] = ..., alternate_key: _Optional[int] = ...) -> None: ...

class CopyNeedleResponse(_message.Message):
    __slots__ = ("raw",)
    RAW_FIELD_NUMBER: _ClassVar[int]
    raw: bytes
    def __init__(self, raw: _Optional[bytes] = ...) -> None: ...

class RepairNeedleRequest(_message.Message):
    __slots__ = ("volume_id", "key", "alternate_key", "source_address")
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ALTERNATE_KEY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    key: int
    alternate_key: int
    source_address: str
    def __init__(self, volume_id: _Optional[int] = ..., key: _Optional[int] = ..., alternate_key: _Optional[int] = ..., source_address: _Optional[str] = ...) -> None: ...

class RepairNeedleResponse(_message.Message):
    __slots__ = ("repaired_bytes", "was_damaged")
    REPAIRED_BYTES_FIELD_NUMBER: _ClassVar[int]
    WAS_DAMAGED_FIELD_NUMBER: _ClassVar[int]
    repaired_bytes: int
    was_damaged: bool
    def __init__(self, repaired_bytes: _Optional[int] = ..., was_damaged: _Optional[bool] = ...) -> None: ...

class VolumeDigestRequest(_message.Message):
    __slots__ = ("volume_id",)
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    def __init__(self, volume_id: _Optional[int] = ...) -> None: ...

class VolumeDigestResponse(_message.Message):
    __slots__ = ("bucket_sums", "settled")
    BUCKET_SUMS_FIELD_NUMBER: _ClassVar[int]
    SETTLED_FIELD_NUMBER: _ClassVar[int]
    bucket_sums: bytes
    settled: bool
    def __init__(self, bucket_sums: _Optional[bytes] = ..., settled: _Optional[bool] = ...) -> None: ...

class ListNeedlesRequest(_message.Message):
    __slots__ = ("volume_id", "buckets")
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    buckets: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, volume_id: _Optional[int] = ..., buckets: _Optional[_Iterable[int]] = ...) -> None: ...

class NeedleSummary(_message.Message):
    __slots__ = ("key", "alternate_key", "hash", "deleted", "stored_size")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ALTERNATE_KEY_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    STORED_SIZE_FIELD_NUMBER: _ClassVar[int]
    key: int
    alternate_key: int
    hash: int
    deleted: bool
    stored_size: int
    def __init__(self, key: _Optional[int] = ..., alternate_key: _Optional[int] = ..., hash: _Optional[int] = ..., deleted: _Optional[bool] = ..., stored_size: _Optional[int] = ...) -> None: ...

class ListNeedlesResponse(_message.Message):
    __slots__ = ("needles",)
    NEEDLES_FIELD_NUMBER: _ClassVar[int]
    needles: _containers.RepeatedCompositeFieldContainer[NeedleSummary]
    def __init__(self, needles: _Optional[_Iterable[_Union[NeedleSummary, _Mapping]]] = ...) -> None: ...

class NeedleKey(_message.Message):
    __slots__ = ("key", "alternate_key")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ALTERNATE_KEY_FIELD_NUMBER: _ClassVar[int]
    key: int
    alternate_key: int
    def __init__(self, key: _Optional[int] = ..., alternate_key: _Optional[int] = ...) -> None: ...

class CopyNeedlesRequest(_message.Message):
    __slots__ = ("volume_id", "needles")
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    NEEDLES_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    needles: _containers.RepeatedCompositeFieldContainer[NeedleKey]
    def __init__(self, volume_id: _Optional[int] = ..., needles: _Optional[_Iterable[_Union[NeedleKey, _Mapping]]] = ...) -> None: ...

class CopyNeedlesResponse(_message.Message):
    __slots__ = ("raw",)
    RAW_FIELD_NUMBER: _ClassVar[int]
    raw: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, raw: _Optional[_Iterable[bytes]] = ...) -> None: ...

class CatchUpVolumeRequest(_message.Message):
    __slots__ = ("volume_id", "source_address")
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    source_address: str
    def __init__(self, volume_id: _Optional[int] = ..., source_address: _Optional[str] = ...) -> None: ...

class CatchUpVolumeResponse(_message.Message):
    __slots__ = ("needles_copied", "bytes_copied", "deletes_applied", "conflicts", "bytes_received")
    NEEDLES_COPIED_FIELD_NUMBER: _ClassVar[int]
    BYTES_COPIED_FIELD_NUMBER: _ClassVar[int]
    DELETES_APPLIED_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    needles_copied: int
    bytes_copied: int
    deletes_applied: int
    conflicts: int
    bytes_received: int
    def __init__(self, needles_copied: _Optional[int] = ..., bytes_copied: _Optional[int] = ..., deletes_applied: _Optional[int] = ..., conflicts: _Optional[int] = ..., bytes_received: _Optional[int] = ...) -> None: ...
