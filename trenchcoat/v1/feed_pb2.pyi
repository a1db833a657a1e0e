from trenchcoat.v1 import auth_pb2 as _auth_pb2
from trenchcoat.v1 import media_pb2 as _media_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeedEntry(_message.Message):
    __slots__ = ("media", "author_id")
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    media: _media_pb2.MediaRef
    author_id: int
    def __init__(self, media: _Optional[_Union[_media_pb2.MediaRef, _Mapping]] = ..., author_id: _Optional[int] = ...) -> None: ...

class HydratedEntry(_message.Message):
    __slots__ = ("entry", "caption", "media")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    entry: FeedEntry
    caption: str
    media: _media_pb2.MediaInfo
    def __init__(self, entry: _Optional[_Union[FeedEntry, _Mapping]] = ..., caption: _Optional[str] = ..., media: _Optional[_Union[_media_pb2.MediaInfo, _Mapping]] = ...) -> None: ...

class PostRequest(_message.Message):
    __slots__ = ("author_id", "media", "caption")
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    author_id: int
    media: _media_pb2.MediaRef
    caption: str
    def __init__(self, author_id: _Optional[int] = ..., media: _Optional[_Union[_media_pb2.MediaRef, _Mapping]] = ..., caption: _Optional[str] = ...) -> None: ...

class PostResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: FeedEntry
    def __init__(self, entry: _Optional[_Union[FeedEntry, _Mapping]] = ...) -> None: ...

class DeletePostRequest(_message.Message):
    __slots__ = ("author_id", "media")
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    author_id: int
    media: _media_pb2.MediaRef
    def __init__(self, author_id: _Optional[int] = ..., media: _Optional[_Union[_media_pb2.MediaRef, _Mapping]] = ...) -> None: ...

class DeletePostResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class FollowRequest(_message.Message):
    __slots__ = ("follower_id", "followee_id")
    FOLLOWER_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOWEE_ID_FIELD_NUMBER: _ClassVar[int]
    follower_id: int
    followee_id: int
    def __init__(self, follower_id: _Optional[int] = ..., followee_id: _Optional[int] = ...) -> None: ...

class FollowResponse(_message.Message):
    __slots__ = ("created",)
    CREATED_FIELD_NUMBER: _ClassVar[int]
    created: bool
    def __init__(self, created: _Optional[bool] = ...) -> None: ...

class UnfollowRequest(_message.Message):
    __slots__ = ("follower_id", "followee_id")
    FOLLOWER_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOWEE_ID_FIELD_NUMBER: _ClassVar[int]
    follower_id: int
    followee_id: int
    def __init__(self, follower_id: _Optional[int] = ..., followee_id: _Optional[int] = ...) -> None: ...

class UnfollowResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...

class GetHomeFeedRequest(_message.Message):
    __slots__ = ("user_id", "cursor", "limit", "hydrate")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    HYDRATE_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    cursor: int
    limit: int
    hydrate: bool
    def __init__(self, user_id: _Optional[int] = ..., cursor: _Optional[int] = ..., limit: _Optional[int] = ..., hydrate: _Optional[bool] = ...) -> None: ...

class UnhydratedEntry(_message.Message):
    __slots__ = ("entry", "reason")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    entry: FeedEntry
    reason: str
    def __init__(self, entry: _Optional[_Union[FeedEntry, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class GetHomeFeedResponse(_message.Message):
    __slots__ = ("entries", "hydrated", "next_cursor", "unhydrated")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    HYDRATED_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    UNHYDRATED_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[FeedEntry]
    hydrated: _containers.RepeatedCompositeFieldContainer[HydratedEntry]
    next_cursor: int
    unhydrated: _containers.RepeatedCompositeFieldContainer[UnhydratedEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[FeedEntry, _Mapping]]] = ..., hydrated: _Optional[_Iterable[_Union[HydratedEntry, _Mapping]]] = ..., next_cursor: _Optional[int] = ..., unhydrated: _Optional[_Iterable[_Union[UnhydratedEntry, _Mapping]]] = ...) -> None: ...

class GetUserFeedRequest(_message.Message):
    __slots__ = ("author_id", "cursor", "limit")
    AUTHOR_ID_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    author_id: int
    cursor: int
    limit: int
    def __init__(self, author_id: _Optional[int] = ..., cursor: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class GetUserFeedResponse(_message.Message):
    __slots__ = ("entries", "next_cursor")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[FeedEntry]
    next_cursor: int
    def __init__(self, entries: _Optional[_Iterable[_Union[FeedEntry, _Mapping]]] = ..., next_cursor: _Optional[int] = ...) -> None: ...
