"""User tokens (trenchcoat/tokens.py; their keys: tls.make_user_keys): minted for a user, checked by a service with the
public key alone; expired, tampered, foreign and malformed ones refused saying which; a
replaced key pair retires every token of the old one."""

from __future__ import annotations

import time

import pytest

from trenchcoat import tls, tokens
from trenchcoat.errors import Unauthenticated


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return ((tokens.METADATA_KEY, f"Bearer {token}"),)


@pytest.fixture
def keys(tmp_path):
    assert tls.make_user_keys(tmp_path)
    assert not tls.make_user_keys(tmp_path)  # made once
    return tmp_path


def test_a_token_names_its_user_and_the_verifier_needs_only_the_public_key(keys, tmp_path):
    minter = tokens.Minter(keys, ttl_s=60)
    token = minter.token_for(42)
    assert minter.token_for(42) == token  # reused while most of its life is left
    verifier = tokens.Verifier(keys / tokens.PUBLIC_FILE)
    assert verifier.subject(bearer(token)) == 42
    assert verifier.subject(bearer(token)) == 42  # remembered: the same answer
    assert (keys / tokens.PRIVATE_FILE).stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("metadata, why", [
    ((), "send 'authorization: Bearer <token>'"),
    (((tokens.METADATA_KEY, "Basic abc"),), "must be 'Bearer <token>'"),
    (((tokens.METADATA_KEY, "Bearer "),), "must be 'Bearer <token>'"),
    (((tokens.METADATA_KEY, "Bearer a.b.c"), (tokens.METADATA_KEY, "Bearer a.b.c")), "more than one"),
    (((tokens.METADATA_KEY, b"Bearer x"),), "must be text"),
    (((tokens.METADATA_KEY, "Bearer " + "a" * 5000),), "longer than"),
    (((tokens.METADATA_KEY, "Bearer not-a-jwt"),), "not valid"),
])
def test_malformed_values_are_refused_saying_why(keys, metadata, why):
    with pytest.raises(Unauthenticated, match=why):
        tokens.Verifier(keys / tokens.PUBLIC_FILE).subject(metadata)


def test_expired_and_foreign_tokens_are_refused(keys, tmp_path_factory):
    key = (keys / tokens.PRIVATE_FILE).read_bytes()
    verifier = tokens.Verifier(keys / tokens.PUBLIC_FILE)
    old = tokens.mint(key, 7, 60, now=time.time() - 3600)
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.subject(bearer(old))
    other = tmp_path_factory.mktemp("other")
    tls.make_user_keys(other)
    foreign = tokens.mint((other / tokens.PRIVATE_FILE).read_bytes(), 7)
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        verifier.subject(bearer(foreign))
    with pytest.raises(ValueError, match="positive"):
        tokens.mint(key, 0)
    with pytest.raises(ValueError, match="between"):
        tokens.mint(key, 7, 10 * tokens.MAX_TTL_S)


def test_a_replaced_key_pair_retires_the_old_tokens_without_a_restart(keys):
    verifier = tokens.Verifier(keys / tokens.PUBLIC_FILE, recheck_s=0)
    before = tokens.Minter(keys).token_for(9)
    assert verifier.subject(bearer(before)) == 9
    for name in (tokens.PRIVATE_FILE, tokens.PUBLIC_FILE):
        (keys / name).unlink()
    tls.make_user_keys(keys)
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        verifier.subject(bearer(before))  # remembered as good once; not under the new key
    assert verifier.subject(bearer(tokens.Minter(keys).token_for(9))) == 9


def test_a_call_acting_for_no_user_carries_no_token():
    assert tokens.metadata_for(0) == ()  # a service's call (the feed deleting a post's media)
    assert tokens.metadata_for(5, "t") == ((tokens.METADATA_KEY, "Bearer t"),)  # the one it was given
