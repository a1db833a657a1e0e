from trenchcoat.v1 import auth_pb2 as _auth_pb2
from trenchcoat.v1 import media_pb2 as _media_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CacheReadRequest(_message.Message):
    __slots__ = ("machine_id", "needle", "via_cdn", "internal")
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    NEEDLE_FIELD_NUMBER: _ClassVar[int]
    VIA_CDN_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    machine_id: int
    needle: _media_pb2.NeedleLocator
    via_cdn: bool
    internal: bool
    def __init__(self, machine_id: _Optional[int] = ..., needle: _Optional[_Union[_media_pb2.NeedleLocator, _Mapping]] = ..., via_cdn: _Optional[bool] = ..., internal: _Optional[bool] = ...) -> None: ...

class CacheReadResponse(_message.Message):
    __slots__ = ("data", "hit", "admitted")
    DATA_FIELD_NUMBER: _ClassVar[int]
    HIT_FIELD_NUMBER: _ClassVar[int]
    ADMITTED_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    hit: bool
    admitted: bool
    def __init__(self, data: _Optional[bytes] = ..., hit: _Optional[bool] = ..., admitted: _Optional[bool] = ...) -> None: ...

class InvalidateRequest(_message.Message):
    __slots__ = ("ref", "alternate_key")
    REF_FIELD_NUMBER: _ClassVar[int]
    ALTERNATE_KEY_FIELD_NUMBER: _ClassVar[int]
    ref: _media_pb2.MediaRef
    alternate_key: int
    def __init__(self, ref: _Optional[_Union[_media_pb2.MediaRef, _Mapping]] = ..., alternate_key: _Optional[int] = ...) -> None: ...

class InvalidateResponse(_message.Message):
    __slots__ = ("dropped",)
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    dropped: int
    def __init__(self, dropped: _Optional[int] = ...) -> None: ...

class CacheStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CacheStatsResponse(_message.Message):
    __slots__ = ("bytes", "capacity_bytes", "entries", "hits", "misses", "lease_grants", "lease_waits")
    BYTES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    LEASE_GRANTS_FIELD_NUMBER: _ClassVar[int]
    LEASE_WAITS_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    capacity_bytes: int
    entries: int
    hits: int
    misses: int
    lease_grants: int
    lease_waits: int
    def __init__(self, bytes: _Optional[int] = ..., capacity_bytes: _Optional[int] = ..., entries: _Optional[int] = ..., hits: _Optional[int] = ..., misses: _Optional[int] = ..., lease_grants: _Optional[int] = ..., lease_waits: _Optional[int] = ...) -> None: ...
