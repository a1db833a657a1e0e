"""f4/crypto.py: sealed blobs open only under their key, for their needle, undamaged."""

from __future__ import annotations

import os

import pytest

from f4 import crypto
from trenchcoat.errors import ChecksumMismatch, DataLoss, InvalidArgument


def test_a_sealed_blob_opens_with_its_key_and_hides_its_plaintext():
    key = crypto.new_key()
    data = b"a warm photo " * 100
    sealed = crypto.seal(key, data, key=7, alternate_key=0)
    assert len(sealed) == len(data) + crypto.OVERHEAD
    assert b"a warm photo" not in sealed
    assert crypto.open_sealed(key, sealed, key=7, alternate_key=0) == data
    assert crypto.seal(key, data, key=7, alternate_key=0) != sealed  # a fresh nonce each time


@pytest.mark.parametrize("change", ["byte", "other key", "other needle", "other rendition", "truncated"])
def test_anything_else_is_data_loss_never_bytes(change):
    key = crypto.new_key()
    sealed = crypto.seal(key, os.urandom(1000), key=7, alternate_key=0)
    args = {"key": 7, "alternate_key": 0}
    if change == "byte":
        sealed = sealed[:500] + bytes([sealed[500] ^ 1]) + sealed[501:]
    elif change == "other key":
        key = crypto.new_key()
    elif change == "other needle":
        args["key"] = 8
    elif change == "other rendition":
        args["alternate_key"] = 1
    else:
        sealed = sealed[:20]
    with pytest.raises(ChecksumMismatch) as info:
        crypto.open_sealed(key, sealed, **args)
    assert isinstance(info.value, DataLoss)


def test_a_key_of_the_wrong_size_is_refused():
    with pytest.raises(InvalidArgument, match="32 bytes"):
        crypto.seal(b"short", b"x", key=1, alternate_key=0)
