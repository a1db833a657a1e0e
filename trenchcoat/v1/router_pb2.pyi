from trenchcoat.v1 import auth_pb2 as _auth_pb2
from trenchcoat.v1 import media_pb2 as _media_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAT_OUTCOME_UNSPECIFIED: _ClassVar[StatOutcome]
    STAT_FOUND: _ClassVar[StatOutcome]
    STAT_NOT_FOUND: _ClassVar[StatOutcome]
    STAT_DELETED: _ClassVar[StatOutcome]
    STAT_UNAVAILABLE: _ClassVar[StatOutcome]
STAT_OUTCOME_UNSPECIFIED: StatOutcome
STAT_FOUND: StatOutcome
STAT_NOT_FOUND: StatOutcome
STAT_DELETED: StatOutcome
STAT_UNAVAILABLE: StatOutcome

class UploadHeader(_message.Message):
    __slots__ = ("owner_id", "content_type", "size_bytes", "idempotency_key")
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    owner_id: int
    content_type: str
    size_bytes: int
    idempotency_key: str
    def __init__(self, owner_id: _Optional[int] = ..., content_type: _Optional[str] = ..., size_bytes: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class UploadRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadResponse(_message.Message):
    __slots__ = ("media",)
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    media: _media_pb2.MediaInfo
    def __init__(self, media: _Optional[_Union[_media_pb2.MediaInfo, _Mapping]] = ...) -> None: ...

class UploadBytesRequest(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadBytesResponse(_message.Message):
    __slots__ = ("media",)
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    media: _media_pb2.MediaInfo
    def __init__(self, media: _Optional[_Union[_media_pb2.MediaInfo, _Mapping]] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("ref", "alternate_key", "offset", "length", "internal")
    REF_FIELD_NUMBER: _ClassVar[int]
    ALTERNATE_KEY_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    ref: _media_pb2.MediaRef
    alternate_key: int
    offset: int
    length: int
    internal: bool
    def __init__(self, ref: _Optional[_Union[_media_pb2.MediaRef, _Mapping]] = ..., alternate_key: _Optional[int] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., internal: _Optional[bool] = ...) -> None: ...

class ReadResponse(_message.Message):
    __slots__ = ("media", "offset", "data")
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    media: _media_pb2.MediaInfo
    offset: int
    data: bytes
    def __init__(self, media: _Optional[_Union[_media_pb2.MediaInfo, _Mapping]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("ref", "owner_id")
    REF_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    ref: _media_pb2.MediaRef
    owner_id: int
    def __init__(self, ref: _Optional[_Union[_media_pb2.MediaRef, _Mapping]] = ..., owner_id: _Optional[int] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class StatRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: _media_pb2.MediaRef
    def __init__(self, ref: _Optional[_Union[_media_pb2.MediaRef, _Mapping]] = ...) -> None: ...

class StatResponse(_message.Message):
    __slots__ = ("media",)
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    media: _media_pb2.MediaInfo
    def __init__(self, media: _Optional[_Union[_media_pb2.MediaInfo, _Mapping]] = ...) -> None: ...

class BatchStatRequest(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedCompositeFieldContainer[_media_pb2.MediaRef]
    def __init__(self, refs: _Optional[_Iterable[_Union[_media_pb2.MediaRef, _Mapping]]] = ...) -> None: ...

class BatchStatResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StatResult]
    def __init__(self, results: _Optional[_Iterable[_Union[StatResult, _Mapping]]] = ...) -> None: ...

class StatResult(_message.Message):
    __slots__ = ("ref", "outcome", "media", "reason")
    REF_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ref: _media_pb2.MediaRef
    outcome: StatOutcome
    media: _media_pb2.MediaInfo
    reason: str
    def __init__(self, ref: _Optional[_Union[_media_pb2.MediaRef, _Mapping]] = ..., outcome: _Optional[_Union[StatOutcome, str]] = ..., media: _Optional[_Union[_media_pb2.MediaInfo, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class PutRenditionRequest(_message.Message):
    __slots__ = ("ref", "alternate_key", "content_type", "width", "height", "data")
    REF_FIELD_NUMBER: _ClassVar[int]
    ALTERNATE_KEY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ref: _media_pb2.MediaRef
    alternate_key: int
    content_type: str
    width: int
    height: int
    data: bytes
    def __init__(self, ref: _Optional[_Union[_media_pb2.MediaRef, _Mapping]] = ..., alternate_key: _Optional[int] = ..., content_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class PutRenditionResponse(_message.Message):
    __slots__ = ("rendition", "created")
    RENDITION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    rendition: _media_pb2.RenditionInfo
    created: bool
    def __init__(self, rendition: _Optional[_Union[_media_pb2.RenditionInfo, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class FinishRenditionsRequest(_message.Message):
    __slots__ = ("ref", "recipe_version", "failure", "width", "height")
    REF_FIELD_NUMBER: _ClassVar[int]
    RECIPE_VERSION_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ref: _media_pb2.MediaRef
    recipe_version: int
    failure: str
    width: int
    height: int
    def __init__(self, ref: _Optional[_Union[_media_pb2.MediaRef, _Mapping]] = ..., recipe_version: _Optional[int] = ..., failure: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class FinishRenditionsResponse(_message.Message):
    __slots__ = ("recorded",)
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    recorded: bool
    def __init__(self, recorded: _Optional[bool] = ...) -> None: ...
