"""transformer/jobs.py: which failures of a rendition job pass when a dependency comes back
(retried within the retry budget), which count toward max_attempts, and which can never
pass; each as the worker receives it (a router's status across the wire, a Redis error
through redisio, the decoder's refusal raised here)."""

from __future__ import annotations

import pytest
import redis.exceptions

from transformer.errors import UnrenderableSource
from transformer.jobs import failure_of
from trenchcoat import redisio
from trenchcoat.errors import from_wire
from trenchcoat.jobqueue import Failure

ROUTER = "router 127.0.0.1:7300"


@pytest.mark.parametrize("status", ["UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED"])
def test_a_router_away_slow_or_overloaded_is_transient(status):
    assert failure_of(from_wire(status, "failed to connect to all addresses", "", ROUTER)) is Failure.TRANSIENT


def test_redis_away_is_transient():
    with pytest.raises(Exception) as raised, redisio.failures("recording a rendition job's state"):
        raise redis.exceptions.ConnectionError("Connection refused")
    assert failure_of(raised.value) is Failure.TRANSIENT


@pytest.mark.parametrize(("status", "name"), [
    ("INVALID_ARGUMENT", ""), ("NOT_FOUND", "VolumeNotFound"), ("DATA_LOSS", "ChecksumMismatch"),
    ("FAILED_PRECONDITION", "VolumeReadOnly"), ("INTERNAL", ""), ("UNKNOWN", ""), ("PERMISSION_DENIED", ""),
])
def test_a_refusal_lost_data_or_a_bug_counts_toward_max_attempts(status, name):
    assert failure_of(from_wire(status, "no", name, ROUTER)) is Failure.COUNTED


def test_an_exception_of_no_typed_kind_counts_toward_max_attempts():
    assert failure_of(RuntimeError("a bug")) is Failure.COUNTED


def test_a_source_that_can_never_render_is_permanent():
    assert failure_of(UnrenderableSource("the source image cannot be decoded")) is Failure.PERMANENT
