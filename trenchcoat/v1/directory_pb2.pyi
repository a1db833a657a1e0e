from trenchcoat.v1 import auth_pb2 as _auth_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VolumeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VOLUME_STATE_UNSPECIFIED: _ClassVar[VolumeState]
    VOLUME_STATE_WRITABLE: _ClassVar[VolumeState]
    VOLUME_STATE_READ_ONLY: _ClassVar[VolumeState]
    VOLUME_STATE_SEALED: _ClassVar[VolumeState]
    VOLUME_STATE_WARM: _ClassVar[VolumeState]
VOLUME_STATE_UNSPECIFIED: VolumeState
VOLUME_STATE_WRITABLE: VolumeState
VOLUME_STATE_READ_ONLY: VolumeState
VOLUME_STATE_SEALED: VolumeState
VOLUME_STATE_WARM: VolumeState

class Replica(_message.Message):
    __slots__ = ("machine_id", "volume_id", "address", "rack", "alive", "http_address")
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RACK_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    HTTP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    machine_id: int
    volume_id: int
    address: str
    rack: str
    alive: bool
    http_address: str
    def __init__(self, machine_id: _Optional[int] = ..., volume_id: _Optional[int] = ..., address: _Optional[str] = ..., rack: _Optional[str] = ..., alive: _Optional[bool] = ..., http_address: _Optional[str] = ...) -> None: ...

class LogicalVolume(_message.Message):
    __slots__ = ("id", "replicas", "state", "used_bytes", "capacity_bytes", "created_unix_ms", "freed_machines", "used_reported_unix_ms", "repair", "reason", "replacing")
    ID_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    FREED_MACHINES_FIELD_NUMBER: _ClassVar[int]
    USED_REPORTED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    REPAIR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REPLACING_FIELD_NUMBER: _ClassVar[int]
    id: int
    replicas: _containers.RepeatedCompositeFieldContainer[Replica]
    state: VolumeState
    used_bytes: int
    capacity_bytes: int
    created_unix_ms: int
    freed_machines: _containers.RepeatedScalarFieldContainer[int]
    used_reported_unix_ms: int
    repair: bool
    reason: str
    replacing: Replacement
    def __init__(self, id: _Optional[int] = ..., replicas: _Optional[_Iterable[_Union[Replica, _Mapping]]] = ..., state: _Optional[_Union[VolumeState, str]] = ..., used_bytes: _Optional[int] = ..., capacity_bytes: _Optional[int] = ..., created_unix_ms: _Optional[int] = ..., freed_machines: _Optional[_Iterable[int]] = ..., used_reported_unix_ms: _Optional[int] = ..., repair: _Optional[bool] = ..., reason: _Optional[str] = ..., replacing: _Optional[_Union[Replacement, _Mapping]] = ...) -> None: ...

class Replacement(_message.Message):
    __slots__ = ("lost_machine", "new_machine", "source_machine", "new_address")
    LOST_MACHINE_FIELD_NUMBER: _ClassVar[int]
    NEW_MACHINE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_MACHINE_FIELD_NUMBER: _ClassVar[int]
    NEW_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    lost_machine: int
    new_machine: int
    source_machine: int
    new_address: str
    def __init__(self, lost_machine: _Optional[int] = ..., new_machine: _Optional[int] = ..., source_machine: _Optional[int] = ..., new_address: _Optional[str] = ...) -> None: ...

class StoreMachine(_message.Message):
    __slots__ = ("machine_id", "address", "rack", "capacity_bytes", "free_bytes", "alive", "http_address")
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RACK_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    HTTP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    machine_id: int
    address: str
    rack: str
    capacity_bytes: int
    free_bytes: int
    alive: bool
    http_address: str
    def __init__(self, machine_id: _Optional[int] = ..., address: _Optional[str] = ..., rack: _Optional[str] = ..., capacity_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., alive: _Optional[bool] = ..., http_address: _Optional[str] = ...) -> None: ...

class AllocateRequest(_message.Message):
    __slots__ = ("size_bytes", "exclude", "avoid_machines")
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_FIELD_NUMBER: _ClassVar[int]
    AVOID_MACHINES_FIELD_NUMBER: _ClassVar[int]
    size_bytes: int
    exclude: _containers.RepeatedScalarFieldContainer[int]
    avoid_machines: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, size_bytes: _Optional[int] = ..., exclude: _Optional[_Iterable[int]] = ..., avoid_machines: _Optional[_Iterable[int]] = ...) -> None: ...

class AllocateResponse(_message.Message):
    __slots__ = ("volume",)
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    volume: LogicalVolume
    def __init__(self, volume: _Optional[_Union[LogicalVolume, _Mapping]] = ...) -> None: ...

class LocateRequest(_message.Message):
    __slots__ = ("logical_volume",)
    LOGICAL_VOLUME_FIELD_NUMBER: _ClassVar[int]
    logical_volume: int
    def __init__(self, logical_volume: _Optional[int] = ...) -> None: ...

class LocateResponse(_message.Message):
    __slots__ = ("volume",)
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    volume: LogicalVolume
    def __init__(self, volume: _Optional[_Union[LogicalVolume, _Mapping]] = ...) -> None: ...

class MarkReadOnlyRequest(_message.Message):
    __slots__ = ("logical_volume", "reason", "repair")
    LOGICAL_VOLUME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REPAIR_FIELD_NUMBER: _ClassVar[int]
    logical_volume: int
    reason: str
    repair: bool
    def __init__(self, logical_volume: _Optional[int] = ..., reason: _Optional[str] = ..., repair: _Optional[bool] = ...) -> None: ...

class MarkReadOnlyResponse(_message.Message):
    __slots__ = ("volume",)
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    volume: LogicalVolume
    def __init__(self, volume: _Optional[_Union[LogicalVolume, _Mapping]] = ...) -> None: ...

class ListVolumesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListVolumesResponse(_message.Message):
    __slots__ = ("volumes",)
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    volumes: _containers.RepeatedCompositeFieldContainer[LogicalVolume]
    def __init__(self, volumes: _Optional[_Iterable[_Union[LogicalVolume, _Mapping]]] = ...) -> None: ...

class ListStoresRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListStoresResponse(_message.Message):
    __slots__ = ("stores",)
    STORES_FIELD_NUMBER: _ClassVar[int]
    stores: _containers.RepeatedCompositeFieldContainer[StoreMachine]
    def __init__(self, stores: _Optional[_Iterable[_Union[StoreMachine, _Mapping]]] = ...) -> None: ...

class WatchVolumesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchVolumesResponse(_message.Message):
    __slots__ = ("snapshot", "volumes", "revision")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    snapshot: bool
    volumes: _containers.RepeatedCompositeFieldContainer[LogicalVolume]
    revision: int
    def __init__(self, snapshot: _Optional[bool] = ..., volumes: _Optional[_Iterable[_Union[LogicalVolume, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class GetLeaderRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetLeaderResponse(_message.Message):
    __slots__ = ("leader", "address")
    LEADER_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    leader: str
    address: str
    def __init__(self, leader: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class MigrateVolumeRequest(_message.Message):
    __slots__ = ("logical_volume",)
    LOGICAL_VOLUME_FIELD_NUMBER: _ClassVar[int]
    logical_volume: int
    def __init__(self, logical_volume: _Optional[int] = ...) -> None: ...

class MigrateVolumeResponse(_message.Message):
    __slots__ = ("volume",)
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    volume: LogicalVolume
    def __init__(self, volume: _Optional[_Union[LogicalVolume, _Mapping]] = ...) -> None: ...

class ListDamagedNeedlesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DamagedNeedleReport(_message.Message):
    __slots__ = ("volume_id", "key", "alternate_key", "machines", "unrecoverable")
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ALTERNATE_KEY_FIELD_NUMBER: _ClassVar[int]
    MACHINES_FIELD_NUMBER: _ClassVar[int]
    UNRECOVERABLE_FIELD_NUMBER: _ClassVar[int]
    volume_id: int
    key: int
    alternate_key: int
    machines: _containers.RepeatedScalarFieldContainer[int]
    unrecoverable: bool
    def __init__(self, volume_id: _Optional[int] = ..., key: _Optional[int] = ..., alternate_key: _Optional[int] = ..., machines: _Optional[_Iterable[int]] = ..., unrecoverable: _Optional[bool] = ...) -> None: ...

class ListDamagedNeedlesResponse(_message.Message):
    __slots__ = ("needles",)
    NEEDLES_FIELD_NUMBER: _ClassVar[int]
    needles: _containers.RepeatedCompositeFieldContainer[DamagedNeedleReport]
    def __init__(self, needles: _Optional[_Iterable[_Union[DamagedNeedleReport, _Mapping]]] = ...) -> None: ...
