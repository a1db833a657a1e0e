"""Per-blob encryption: AES-256-GCM under the blob's own key from the key store.

A warm blob is kept only as ciphertext; discarding its key (``F4KeyStoreService``)
deletes it everywhere at once, every copy and every parity byte derived from it, with
nothing to compact. The sealed form is ``nonce (12 bytes) || ciphertext || tag (16
bytes)``; the blob's identity (needle key and alternate key) is authenticated with it,
so a ciphertext moved to another blob's place fails to open (DATA_LOSS), as do damaged
bytes: the tag is the blob's end-to-end check.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trenchcoat.errors import ChecksumMismatch, InvalidArgument

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = NONCE_BYTES + TAG_BYTES
"""Bytes a sealed blob has beyond its plaintext."""


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def _identity(key: int, alternate_key: int) -> bytes:
    return struct.pack("<QI", key, alternate_key)


def seal(blob_key: bytes, data: bytes, *, key: int, alternate_key: int) -> bytes:
    """``data`` encrypted and authenticated under ``blob_key`` for the needle (key, alternate_key)."""
    if len(blob_key) != KEY_BYTES:
        raise InvalidArgument(f"a blob key is {KEY_BYTES} bytes, got {len(blob_key)}")
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(blob_key).encrypt(nonce, data, _identity(key, alternate_key))


def open_sealed(blob_key: bytes, sealed: bytes, *, key: int, alternate_key: int) -> bytes:
    """The plaintext of a sealed blob; ChecksumMismatch (DATA_LOSS) when it does not open
    under this key for this needle (damaged, or another blob's bytes)."""
    if len(sealed) < OVERHEAD:
        raise ChecksumMismatch(f"needle {key:#x}/{alternate_key}: {len(sealed)} sealed bytes are too short to open")
    try:
        return AESGCM(blob_key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _identity(key, alternate_key))
    except InvalidTag:
        raise ChecksumMismatch(f"needle {key:#x}/{alternate_key}: its warm bytes fail authentication "
                               "(damaged, or not this blob's)") from None
