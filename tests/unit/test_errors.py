"""trenchcoat.errors: the wire form of a typed error turns back into the same class."""

from __future__ import annotations

import grpc
import pytest

from trenchcoat import errors
from trenchcoat.errors import (
    BY_STATUS,
    ChecksumMismatch,
    DataLoss,
    Internal,
    NeedleNotFound,
    NotFound,
    TrenchcoatError,
    Unavailable,
    VolumeNotFound,
    from_wire,
    wire_name,
)

CHASSIS = [c for c in vars(errors).values()
           if isinstance(c, type) and issubclass(c, TrenchcoatError) and c.__module__ == errors.__name__]


def test_every_status_code_has_a_class_and_every_class_a_status_code():
    assert {c.name for c in grpc.StatusCode} - {"OK"} == set(BY_STATUS)
    assert all(c.status in {s.name for s in grpc.StatusCode} for c in CHASSIS)


@pytest.mark.parametrize("cls", CHASSIS, ids=lambda c: c.__name__)
def test_each_chassis_class_survives_the_wire(cls):
    sent = cls("what happened")
    got = from_wire(sent.status, str(sent), wire_name(sent), "store 10.0.0.1:7200")
    assert type(got) is cls
    assert str(got) == "store 10.0.0.1:7200: what happened" and got.remote == "store 10.0.0.1:7200"


def test_a_service_subclass_travels_as_its_nearest_chassis_class():
    class ServiceNeedleGone(NeedleNotFound):
        pass

    class ServiceHiccup(Unavailable):
        pass

    assert wire_name(ServiceNeedleGone("x")) == "NeedleNotFound"
    assert wire_name(ServiceHiccup("x")) == "Unavailable"


def test_the_hot_tier_tells_a_missing_needle_from_a_missing_volume():
    needle = from_wire("NOT_FOUND", "m", "NeedleNotFound", "s")
    volume = from_wire("NOT_FOUND", "m", "VolumeNotFound", "s")
    assert isinstance(needle, NeedleNotFound) and not isinstance(needle, VolumeNotFound)
    assert isinstance(volume, VolumeNotFound) and not isinstance(volume, NeedleNotFound)
    assert isinstance(from_wire("DATA_LOSS", "m", "ChecksumMismatch", "s"), ChecksumMismatch)


def test_an_unknown_or_disagreeing_name_falls_back_to_the_status():
    assert type(from_wire("NOT_FOUND", "m", "SomethingNewer", "s")) is NotFound
    assert type(from_wire("DATA_LOSS", "m", "NeedleNotFound", "s")) is DataLoss  # name and code disagree
    assert type(from_wire("UNKNOWN", "m", "", "s")) is Internal
    assert type(from_wire("NOT_A_CODE", "m", "", "s")) is Internal
