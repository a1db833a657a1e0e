"""Signed user tokens: who a mutation acts for.

A user-facing caller (the ``app`` and ``admin`` roles) of a method that changes a user's
data (an upload, a delete, a post, a follow, reading one's own home feed) sends a JWT in
the call's ``authorization`` metadata (``Bearer <token>``): EdDSA over Ed25519, its subject
the user's id, issued for this audience, expiring within minutes. Which request field names
the user is declared with the contract (``(trenchcoat.v1.acts_for)`` in the protos); the
chassis's interceptor checks that field against the token's subject (``Verifier``), so a
token for user 42 cannot post as 43, and a service checks what the user owns (a router
deletes only its owner's media).

The signing key (``users.key``) is the user-facing application's, which mints a token when
a user signs in; services hold only the public half (``users.pub``), both in the cluster's
TLS directory (``trenchcoat certs`` makes them: ``tls.make_user_keys``). ``trenchcoat token --user N`` mints one for
grpcurl and scripts; the CLI mints its own for the user a verb names.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from trenchcoat.errors import Unauthenticated

PRIVATE_FILE, PUBLIC_FILE = "users.key", "users.pub"
ALGORITHM = "EdDSA"
ISSUER = AUDIENCE = "trenchcoat"
DEFAULT_TTL_S = 900
"""A token's life unless asked otherwise: long enough for a session's calls, short enough
that a leaked one is soon worthless."""
MAX_TTL_S = 24 * 3600
LEEWAY_S = 30
"""Clock skew forgiven between the minter and a service."""
METADATA_KEY = "authorization"
VERIFIED_CACHE = 65536
"""Verified tokens remembered at most (emptied when full)."""
MAX_TOKEN_CHARS = 4096
"""Longer ``authorization`` values are refused before any parsing."""


def mint(key_pem: bytes, user_id: int, ttl_s: float = DEFAULT_TTL_S, *, now: float | None = None) -> str:
    """A token for ``user_id`` signed with ``key_pem`` (``users.key``'s contents)."""
    if user_id <= 0:
        raise ValueError(f"user ids are positive, got {user_id}")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"a token lives between 1 s and {MAX_TTL_S} s, got {ttl_s}")
    issued = int(time.time() if now is None else now)
    claims = {"sub": str(user_id), "iss": ISSUER, "aud": AUDIENCE, "iat": issued, "exp": issued + int(ttl_s)}
    return jwt.encode(claims, serialization.load_pem_private_key(key_pem, password=None), algorithm=ALGORITHM)  # type: ignore[arg-type]


class Minter:
    """Tokens for any user, from ``users.key``: the user-facing side's (the CLI's, a
    test's). A token is reused until a fifth of its life is left."""

    def __init__(self, directory: Path, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.path = directory / PRIVATE_FILE
        self.ttl_s = ttl_s
        self._key: bytes | None = None
        self._tokens: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def token_for(self, user_id: int) -> str:
        now = time.time()
        with self._lock:
            held = self._tokens.get(user_id)
            if held is not None and held[1] - now > self.ttl_s / 5:
                return held[0]
            if self._key is None:
                try:
                    self._key = self.path.read_bytes()
                except FileNotFoundError:
                    raise Unauthenticated(f"{self.path} is missing: no user tokens can be made here "
                                          "(trenchcoat certs makes the key pair)") from None
            token = mint(self._key, user_id, self.ttl_s, now=now)
            self._tokens[user_id] = (token, now + self.ttl_s)
            return token


TokenSource = Callable[[int], str]
"""Given a user id, a token acting for that user."""
_source: TokenSource | None = None


def use(source: TokenSource | None) -> None:
    """Sets where this process's clients get a user's token (``Minter.token_for``; None:
    they send none, as services do: their calls act for no user)."""
    global _source
    _source = source


def token_for(user_id: int) -> str | None:
    """The process's token for ``user_id`` (``use``); None without a source, or for an id
    that names no user."""
    return _source(user_id) if _source is not None and user_id > 0 else None


def metadata_for(user_id: int, token: str | None = None) -> tuple[tuple[str, str], ...]:
    """The call metadata acting for ``user_id``: ``token`` when given, else the process's
    (``token_for``); none without either."""
    token = token if token is not None else token_for(user_id)
    return ((METADATA_KEY, f"Bearer {token}"),) if token else ()


class Verifier:
    """Checks tokens against ``users.pub``, looked at again when the file changes (the key
    pair replaced: tokens of the old key stop being accepted)."""

    def __init__(self, path: Path, recheck_s: float = 5.0) -> None:
        """``recheck_s``: how often the key file is looked at for a change."""
        self.path = path
        self.recheck_s = recheck_s
        self._key: ed25519.Ed25519PublicKey | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._verified: dict[str, tuple[int, ed25519.Ed25519PublicKey, float]] = {}
        """Tokens already verified: subject, the key they verified with, expiry. A session's
        calls carry the same token; its signature is checked once."""

    def _public_key(self) -> ed25519.Ed25519PublicKey:
        now = time.monotonic()
        if self._key is None or now - self._checked >= self.recheck_s:
            self._checked = now
            try:
                st = self.path.stat()
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                if stamp != self._stamp:
                    key = serialization.load_pem_public_key(self.path.read_bytes())
                    if not isinstance(key, ed25519.Ed25519PublicKey):
                        raise Unauthenticated(f"{self.path} is not an Ed25519 public key: no user token can be checked")
                    self._key, self._stamp = key, stamp
            except FileNotFoundError:
                if self._key is None:
                    raise Unauthenticated(f"this server has no {self.path}: it cannot check user tokens "
                                          "(trenchcoat certs makes the key pair)") from None
        assert self._key is not None
        return self._key

    def subject(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> int:
        """The user id a call's ``authorization`` token names; Unauthenticated, saying why,
        when there is none or it does not hold."""
        values = [v for k, v in metadata or () if k == METADATA_KEY]
        if not values:
            raise Unauthenticated("this call acts for a user: send 'authorization: Bearer <token>' "
                                  "(trenchcoat token --user N mints one)")
        if len(values) > 1:
            raise Unauthenticated("the call carries more than one authorization value")
        value = values[0]
        if isinstance(value, bytes):
            raise Unauthenticated("the authorization value must be text: 'Bearer <token>'")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the authorization value must be 'Bearer <token>'")
        if len(value) > MAX_TOKEN_CHARS:
            raise Unauthenticated(f"the token is longer than {MAX_TOKEN_CHARS} characters")
        token = token.strip()
        key = self._public_key()
        held = self._verified.get(token)
        if held is not None and held[1] is key and time.time() < held[2] + LEEWAY_S:
            return held[0]
        subject, expires = self._verify(token, key)
        if len(self._verified) >= VERIFIED_CACHE:
            self._verified.clear()
        self._verified[token] = (subject, key, expires)
        return subject

    def _verify(self, token: str, key: ed25519.Ed25519PublicKey) -> tuple[int, float]:
        """The token's subject and expiry, its signature and claims checked."""
        try:
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=AUDIENCE,
                                issuer=ISSUER, leeway=LEEWAY_S,
                                options={"require": ["exp", "iat", "sub", "aud", "iss"]})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the user token has expired: mint a new one") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the user token's signature does not verify (tampered, or signed with "
                                  "another key)") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the user token is not valid: {exc}") from None
        sub = claims["sub"]
        if not isinstance(sub, str) or len(sub) > 19 or not sub.isdigit() or int(sub) <= 0:
            raise Unauthenticated(f"the user token's subject is not a user id: {str(sub)[:40]!r}")
        return int(sub), float(claims["exp"])
