"""Who may do what, on a cluster as users run it: mutual TLS on every gRPC hop (the suite's
clusters all run so, tests/conftest.py), the permission table checked against each caller's
certificate, and user tokens on the calls that act for a user.

- a caller without a client certificate, or with one of another CA, is refused at the
  handshake by every server;
- a cluster certificate of the wrong role is refused by name (PERMISSION_DENIED naming the
  role and the method): the cache's may read needles, never write them; the operator's may
  neither write needles nor free volumes;
- a user's token acts for that user only: user 42's cannot delete 43's media, post, follow
  or read a home feed as 43 (PERMISSION_DENIED); a missing, expired, tampered or foreign
  token is UNAUTHENTICATED, saying which;
- 2,000 fuzzed ``authorization`` values and a spread of odd certificates never make a
  server answer INTERNAL or UNKNOWN.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import functools
import hashlib
import hmac
import json
import os
import random
import string
import time
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests import harness
from tests.cluster import MediaCluster, eventually, feed_cluster, shared
from trenchcoat import rpc, tls, tokens
from trenchcoat.clients.store import StoreClient
from trenchcoat.errors import PermissionDenied, TrenchcoatError, Unauthenticated, Unavailable
from trenchcoat.needle_ref import NeedleRef
from trenchcoat.ops import ports
from trenchcoat.v1 import feed_pb2, feed_pb2_grpc, router_pb2, router_pb2_grpc

pytestmark = pytest.mark.integration

PHOTO = b"\xff\xd8" + bytes(range(256)) * 8


@pytest.fixture(scope="module")
def cluster(module_service, etcd, postgres, redis_server, tmp_path_factory) -> MediaCluster:
    return shared(feed_cluster(module_service, etcd, postgres, redis_server.endpoint,
                               tmp_path_factory.mktemp("security"), fanout_workers=1))


def servers(cluster: MediaCluster) -> dict[str, str]:
    assert cluster.router is not None and cluster.feed is not None and cluster.directories[0] is not None
    return {"router": cluster.router.address, "feed": cluster.feed.address,
            "directory": cluster.directories[0].address,
            **{f"store-{m}": p.address for m, p in cluster.stores.items() if p is not None}}


async def health_with(credentials: grpc.ChannelCredentials | None, address: str) -> str:
    """The health check over a channel of these credentials (None: plaintext)."""
    channel = (grpc.aio.secure_channel(address, credentials) if credentials is not None
               else grpc.aio.insecure_channel(address))
    try:
        check: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(rpc.HEALTH_CHECK)
        await rpc.unary(check, b"", remote=address, timeout=10)
        return "answered"
    finally:
        await channel.close()


def other_ca_identity(directory: Path, role: str = "admin") -> tls.Identity:
    tls.make_ca(directory, name="someone else's CA")
    tls.issue(directory, role)
    return tls.Identity(directory, role)


async def test_no_certificate_or_another_cas_is_refused_at_the_handshake_by_every_server(cluster, tmp_path):
    ca = (harness.tls_dir() / tls.CA_FILE).read_bytes()
    other = other_ca_identity(tmp_path / "other")
    _, cert, key = other.read()
    for name, address in servers(cluster).items():
        with pytest.raises(Unavailable):  # plaintext
            await health_with(None, address)
        with pytest.raises(Unavailable):  # TLS, the right CA, no client certificate
            await health_with(grpc.ssl_channel_credentials(root_certificates=ca), address)
        with pytest.raises(Unavailable):  # TLS, a client certificate of another CA
            await health_with(grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                                           certificate_chain=cert), address)
        # ... and the same server answers a certificate of its own CA.
        admin = tls.ClientTls(tls.Identity(harness.tls_dir(), "admin")).credentials()
        assert await health_with(admin, address) == "answered", name


async def test_a_certificate_of_the_wrong_role_is_refused_by_name(cluster):
    volume = (await cluster.volumes())[0]
    store_address = volume.replicas[0].address
    async with rpc.ChannelPool(tls=tls.ClientTls(tls.Identity(harness.tls_dir(), "cache"))) as as_cache:
        store = StoreClient(as_cache, timeout_s=10)
        with pytest.raises(PermissionDenied,
                           match=r"role 'cache' may not call /trenchcoat\.v1\.StoreService/WriteNeedle"):
            await store.write(store_address, NeedleRef(logical_volume=volume.id, key=2, cookie=1), b"x")
    async with rpc.ChannelPool(tls=tls.ClientTls(tls.Identity(harness.tls_dir(), "admin"))) as as_admin:
        store = StoreClient(as_admin, timeout_s=10)
        with pytest.raises(PermissionDenied, match=r"role 'admin' may not call /trenchcoat\.v1\.StoreService/FreeVolume"):
            await store.free_volume(store_address, volume.id)
        with pytest.raises(PermissionDenied, match="WriteNeedle"):
            await store.write(store_address, NeedleRef(logical_volume=volume.id, key=1, cookie=1), b"x")


def token(user: int) -> str:
    return tokens.Minter(harness.tls_dir()).token_for(user)


def _signed(user: int, *, key: bytes | None = None, **claims: object) -> str:
    now = int(time.time())
    body = {"sub": str(user), "iss": tokens.ISSUER, "aud": tokens.AUDIENCE, "iat": now, "exp": now + 300, **claims}
    pem = key or (harness.tls_dir() / tokens.PRIVATE_FILE).read_bytes()
    return jwt.encode(body, serialization.load_pem_private_key(pem, password=None), algorithm="EdDSA")  # type: ignore[arg-type]


async def test_a_users_token_acts_for_that_user_only(cluster):
    async with cluster.clients() as c:
        theirs = await c.media.upload(PHOTO, owner_id=43, content_type="image/jpeg")
        mine = await c.media.upload(PHOTO, owner_id=42, content_type="image/jpeg", token=token(42))
        as_42 = token(42)
        # Another user's media: refused whichever owner the request names.
        with pytest.raises(PermissionDenied, match=r"acts for user 42.*act for user 43"):
            await c.media.delete(theirs.media_id, owner_id=43, token=as_42)
        with pytest.raises(PermissionDenied, match=f"media {theirs.media_id} belongs to another user"):
            await c.media.delete(theirs.media_id, owner_id=42, token=as_42)
        with pytest.raises(PermissionDenied, match="act for user 43"):
            await c.media.upload(PHOTO, owner_id=43, content_type="image/jpeg", token=as_42)
        with pytest.raises(PermissionDenied, match="act for user 43"):  # streamed: checked on its header
            await c.media.upload(PHOTO * 40, owner_id=43, content_type="image/jpeg", token=as_42, chunk_bytes=1024)
        with pytest.raises(PermissionDenied, match="act for user 43"):
            await c.feed.post(43, theirs.media_id, token=as_42)
        with pytest.raises(PermissionDenied, match="act for user 43"):
            await c.feed.follow(43, 42, token=as_42)
        with pytest.raises(PermissionDenied, match="act for user 43"):
            await c.feed.home(43, token=as_42)
        # Its own: all of it works, and the other user's media is still there.
        await c.feed.post(42, mine.media_id, token=as_42)
        assert await c.feed.follow(42, 43, token=as_42)
        await c.feed.home(42, token=as_42)
        assert (await c.media.stat(theirs.media_id)).state == "active"
        assert await c.media.delete(mine.media_id, owner_id=42, token=as_42)


async def test_a_missing_expired_tampered_or_foreign_token_is_unauthenticated(cluster, tmp_path):
    tls.make_user_keys(tmp_path)
    foreign = (tmp_path / tokens.PRIVATE_FILE).read_bytes()
    good = token(42)
    header, payload, signature = good.split(".")
    forged = base64.urlsafe_b64encode(json.dumps(
        {**json.loads(base64.urlsafe_b64decode(payload + "==")), "sub": "43"}).encode()).rstrip(b"=").decode()
    cases = {
        "send 'authorization: Bearer <token>'": None,
        "expired": _signed(42, iat=int(time.time()) - 3600, exp=int(time.time()) - 600),
        "signature does not verify": f"{header}.{forged}.{signature}",
        "signature does not verify ": _signed(42, key=foreign),
        "not valid": _signed(42, aud="someone-else"),
    }
    async with cluster.clients() as c:
        for why, value in cases.items():
            metadata = () if value is None else (("authorization", f"Bearer {value}"),)
            stub = c.pool.stub(router_pb2_grpc.MediaServiceStub, cluster.router.address)
            request = router_pb2.UploadBytesRequest(header=router_pb2.UploadHeader(owner_id=42, content_type="image/jpeg"),
                                                    data=PHOTO)
            with pytest.raises(Unauthenticated, match=why.strip()):
                await rpc.unary(stub.UploadBytes, request, remote="router", timeout=10, metadata=metadata)


def _fuzzed_values(rng: random.Random, good: str, n: int) -> list[str]:
    """``authorization`` values a confused or hostile client might send."""
    printable = string.ascii_letters + string.digits + string.punctuation + " "
    header, payload, signature = good.split(".")

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def junk(k: int) -> str:
        return "".join(rng.choice(printable) for _ in range(k))

    # The old algorithm confusion: HS256 "signed" with the public key as the secret.
    body = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(
        {"sub": "42", "aud": "trenchcoat", "iss": "trenchcoat", "iat": 0, "exp": 2**40}).encode())
    mac = hmac.new((harness.tls_dir() / tokens.PUBLIC_FILE).read_bytes(), body.encode(), hashlib.sha256).digest()
    confused = f"{body}.{b64(mac)}"
    makers = [
        lambda: junk(rng.randint(0, 80)),
        lambda: "Bearer " + junk(rng.randint(0, 200)),
        lambda: "bearer " + ".".join(junk(rng.randint(0, 30)) for _ in range(rng.randint(1, 5))),
        lambda: "Bearer " + ".".join([header, payload, b64(os.urandom(rng.randint(0, 80)))]),
        lambda: "Bearer " + ".".join([b64(json.dumps({"alg": rng.choice(["none", "HS256", "RS256", "EdDSA", ""]),
                                                      "typ": "JWT"}).encode()), payload, signature]),
        lambda: "Bearer " + ".".join([header, b64(json.dumps({"sub": rng.choice(["0", "-1", "x", "9" * 30, 42, None]),
                                                               "exp": rng.choice([0, 2**70, "soon"])}).encode()),
                                      signature]),
        lambda: "Bearer " + good[: rng.randint(0, len(good))],
        lambda: "Bearer " + confused,
        lambda: "Bearer " + "A" * rng.randint(4000, 9000),
        lambda: rng.choice(["Basic ", "Token ", "Bearer", " Bearer  ", "BEARER "]) + good,
    ]
    return [rng.choice(makers)() for _ in range(n)]


def _odd_certificates(directory: Path) -> list[tuple[bytes, bytes]]:
    """(certificate, key) pairs signed by the cluster's CA but naming no role, or no
    organisation, or several names, or already expired, or not yet valid; and one of
    another CA with a real role."""
    ca_cert = x509.load_pem_x509_certificate((directory / tls.CA_FILE).read_bytes())
    ca_key = serialization.load_pem_private_key((directory / tls.CA_KEY_FILE).read_bytes(), password=None)
    now = datetime.datetime.now(datetime.UTC)
    subjects = [
        [(NameOID.ORGANIZATION_NAME, "trenchcoat"), (NameOID.COMMON_NAME, "root")],
        [(NameOID.ORGANIZATION_NAME, "evil"), (NameOID.COMMON_NAME, "router")],
        [(NameOID.COMMON_NAME, "router")],
        [(NameOID.ORGANIZATION_NAME, "trenchcoat"), (NameOID.COMMON_NAME, "router"), (NameOID.COMMON_NAME, "admin")],
        [(NameOID.ORGANIZATION_NAME, "trenchcoat"), (NameOID.COMMON_NAME, "ROUTER")],
        [(NameOID.ORGANIZATION_NAME, "trenchcoat"), (NameOID.COMMON_NAME, "router\x00admin")],
    ]
    out = []
    for i, subject in enumerate([*subjects, subjects[0], subjects[0]]):
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=1)
        if i == len(subjects):
            start, end = now - datetime.timedelta(days=10), now - datetime.timedelta(days=5)  # expired
        elif i == len(subjects) + 1:
            start, end = now + datetime.timedelta(days=5), now + datetime.timedelta(days=10)  # not yet valid
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(o, v) for o, v in subject]))
                .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
                .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
        out.append((cert.public_bytes(serialization.Encoding.PEM),
                    key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())))
    return out


async def test_fuzzed_tokens_and_certificates_never_make_a_server_fault(cluster, tmp_path):
    rng = random.Random(2500)
    good = token(42)
    values = _fuzzed_values(rng, good, 2000)
    request = router_pb2.UploadBytesRequest(header=router_pb2.UploadHeader(owner_id=42, content_type="image/jpeg"),
                                            data=PHOTO)
    feed_request = feed_pb2.FollowRequest(follower_id=42, followee_id=43)
    codes: dict[str, int] = {}
    async with cluster.clients() as c:
        media = c.pool.stub(router_pb2_grpc.MediaServiceStub, cluster.router.address)
        feed = c.pool.stub(feed_pb2_grpc.FeedServiceStub, cluster.feed.address)
        async def one(i: int, value: str) -> None:
            call, message = (media.UploadBytes, request) if i % 2 else (feed.Follow, feed_request)
            try:
                await rpc.unary(call, message, remote="fuzz", timeout=30, metadata=(("authorization", value),))
                status = "OK"
            except TrenchcoatError as exc:
                status = exc.status
                # gRPC's own bound on a call's metadata (8 KiB) refuses the longest before any code of ours.
                assert status != "RESOURCE_EXHAUSTED" or len(value) > 4096, (value[:80], exc)
            codes[status] = codes.get(status, 0) + 1

        for start in range(0, len(values), 50):  # 50 at a time, as many clients would
            await asyncio.gather(*(one(i, v) for i, v in enumerate(values[start:start + 50], start)))
    assert sum(codes.values()) == 2000
    assert set(codes) <= {"UNAUTHENTICATED", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "OK"}, codes
    assert codes["UNAUTHENTICATED"] > 1500, codes  # nearly all are refused; a good token now and then passes
    ca = (harness.tls_dir() / tls.CA_FILE).read_bytes()
    other = other_ca_identity(tmp_path / "other", "router")
    pairs = [*_odd_certificates(harness.tls_dir()), other.read()[1:]]
    address = servers(cluster)["store-1"]
    for cert, key in pairs:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
        channel = grpc.aio.secure_channel(address, credentials)
        try:
            write: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/trenchcoat.v1.StoreService/WriteNeedle")
            with pytest.raises(TrenchcoatError) as refused:
                await rpc.unary(write, b"", remote="fuzz", timeout=10)
            # Refused at the handshake (UNAVAILABLE), or by the table: never a fault.
            assert refused.value.status in ("UNAVAILABLE", "PERMISSION_DENIED"), (cert[:60], refused.value)
        finally:
            await channel.close()


async def test_insecure_serves_plaintext_and_says_so_at_every_start(service, tmp_path):
    """Plaintext is a choice made explicitly (cluster.insecure = true), and the process says
    what it means at every start."""
    port, metrics_port = ports.free_port(), ports.free_port()
    env = {"TRENCHCOAT_CLUSTER__INSECURE": "true", "TRENCHCOAT_CLUSTER__TLS_DIR": "",
           "TRENCHCOAT_CLUSTER__DATA_DIR": str(tmp_path / "data"), "TRENCHCOAT_ETCD__ENDPOINTS": "",
           "TRENCHCOAT_STORE__MACHINE_ID": "1", "TRENCHCOAT_STORE__PORT": str(port),
           "TRENCHCOAT_STORE__METRICS_PORT": str(metrics_port), "TRENCHCOAT_STORE__HTTP_PORT": str(ports.free_port()),
           "TRENCHCOAT_STORE__COUNT": "1"}
    for start in range(2):
        store = service(f"store-insecure-{start}", harness.python_module("store"), port=port, metrics_port=metrics_port,
                        env=env, wait=False)
        async with rpc.ChannelPool(tls=False) as plaintext:
            await eventually(functools.partial(_serving, plaintext, store.address), timeout=60,
                             what="the insecure store serving plaintext")
        assert "cluster.insecure = true: gRPC is plaintext and unauthenticated" in store.process.log_path.read_text()
        store.process.stop()


async def _serving(pool: rpc.ChannelPool, address: str) -> bool:
    try:
        return await rpc.health(pool, address, remote="store", timeout=5) == "SERVING"
    except Unavailable:
        return False
