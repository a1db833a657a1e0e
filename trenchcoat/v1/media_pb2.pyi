from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Rendition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RENDITION_ORIGINAL: _ClassVar[Rendition]
    RENDITION_THUMBNAIL: _ClassVar[Rendition]
    RENDITION_SMALL: _ClassVar[Rendition]
    RENDITION_MEDIUM: _ClassVar[Rendition]
    RENDITION_LARGE: _ClassVar[Rendition]
    RENDITION_VIDEO_480P: _ClassVar[Rendition]
    RENDITION_VIDEO_720P: _ClassVar[Rendition]
    RENDITION_VIDEO_1080P: _ClassVar[Rendition]

class Tier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_UNSPECIFIED: _ClassVar[Tier]
    TIER_HOT: _ClassVar[Tier]
    TIER_WARM: _ClassVar[Tier]

class MediaState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEDIA_STATE_UNSPECIFIED: _ClassVar[MediaState]
    MEDIA_STATE_ACTIVE: _ClassVar[MediaState]
    MEDIA_STATE_DELETED: _ClassVar[MediaState]

class RenditionsState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RENDITIONS_STATE_UNSPECIFIED: _ClassVar[RenditionsState]
    RENDITIONS_PENDING: _ClassVar[RenditionsState]
    RENDITIONS_DONE: _ClassVar[RenditionsState]
    RENDITIONS_FAILED: _ClassVar[RenditionsState]
RENDITION_ORIGINAL: Rendition
RENDITION_THUMBNAIL: Rendition
RENDITION_SMALL: Rendition
RENDITION_MEDIUM: Rendition
RENDITION_LARGE: Rendition
RENDITION_VIDEO_480P: Rendition
RENDITION_VIDEO_720P: Rendition
RENDITION_VIDEO_1080P: Rendition
TIER_UNSPECIFIED: Tier
TIER_HOT: Tier
TIER_WARM: Tier
MEDIA_STATE_UNSPECIFIED: MediaState
MEDIA_STATE_ACTIVE: MediaState
MEDIA_STATE_DELETED: MediaState
RENDITIONS_STATE_UNSPECIFIED: RenditionsState
RENDITIONS_PENDING: RenditionsState
RENDITIONS_DONE: RenditionsState
RENDITIONS_FAILED: RenditionsState

class MediaRef(_message.Message):
    __slots__ = ("media_id",)
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    media_id: int
    def __init__(self, media_id: _Optional[int] = ...) -> None: ...

class NeedleLocator(_message.Message):
    __slots__ = ("logical_volume", "key", "alternate_key", "cookie")
    LOGICAL_VOLUME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ALTERNATE_KEY_FIELD_NUMBER: _ClassVar[int]
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    logical_volume: int
    key: int
    alternate_key: int
    cookie: int
    def __init__(self, logical_volume: _Optional[int] = ..., key: _Optional[int] = ..., alternate_key: _Optional[int] = ..., cookie: _Optional[int] = ...) -> None: ...

class RenditionInfo(_message.Message):
    __slots__ = ("alternate_key", "content_type", "size_bytes", "width", "height", "url")
    ALTERNATE_KEY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    alternate_key: int
    content_type: str
    size_bytes: int
    width: int
    height: int
    url: str
    def __init__(self, alternate_key: _Optional[int] = ..., content_type: _Optional[str] = ..., size_bytes: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., url: _Optional[str] = ...) -> None: ...

class MediaInfo(_message.Message):
    __slots__ = ("ref", "owner_id", "content_type", "size_bytes", "width", "height", "created_unix_ms", "state", "tier", "url", "renditions", "renditions_state", "renditions_error")
    REF_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    RENDITIONS_FIELD_NUMBER: _ClassVar[int]
    RENDITIONS_STATE_FIELD_NUMBER: _ClassVar[int]
    RENDITIONS_ERROR_FIELD_NUMBER: _ClassVar[int]
    ref: MediaRef
    owner_id: int
    content_type: str
    size_bytes: int
    width: int
    height: int
    created_unix_ms: int
    state: MediaState
    tier: Tier
    url: str
    renditions: _containers.RepeatedCompositeFieldContainer[RenditionInfo]
    renditions_state: RenditionsState
    renditions_error: str
    def __init__(self, ref: _Optional[_Union[MediaRef, _Mapping]] = ..., owner_id: _Optional[int] = ..., content_type: _Optional[str] = ..., size_bytes: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., created_unix_ms: _Optional[int] = ..., state: _Optional[_Union[MediaState, str]] = ..., tier: _Optional[_Union[Tier, str]] = ..., url: _Optional[str] = ..., renditions: _Optional[_Iterable[_Union[RenditionInfo, _Mapping]]] = ..., renditions_state: _Optional[_Union[RenditionsState, str]] = ..., renditions_error: _Optional[str] = ...) -> None: ...
