"""Mutual TLS for every gRPC hop: a cluster CA, a certificate per service identity, and
the credentials servers and clients present, reloaded when their files change.

A cluster's TLS directory holds ``ca.crt`` (and ``ca.key``, kept by whoever issues
certificates: ``trenchcoat certs``, ``trenchcoat up``, or cert-manager in Kubernetes) and,
for each identity, ``<role>.crt`` and ``<role>.key``. A certificate names exactly one role
(``ROLES``) as its subject's common name, under the organisation ``trenchcoat``; the
server side reads the caller's role from the certificate it verified (``role_of``), which
is what per-method permissions are checked against. Keys are ECDSA P-256: cheap
handshakes, and connections are pooled, so a call pays none.

Rotation needs no restart: a server's credentials ask for the files again before every
new connection it accepts and use them as soon as they change (``ServerTls``); a client
makes its channels with whatever the files hold then (``ClientTls.credentials``, checked
again by the channel pool).
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import logging
import os
import secrets
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trenchcoat import tokens

ROLES = ("directory", "store", "cache", "router", "transformer", "f4-front", "f4-storage", "f4-backoff",
         "f4-rebuilder", "f4-keystore", "feed", "fanout", "cdn", "app", "admin", "prometheus")
"""Every identity a certificate may name: one per kind of process (``cdn``: the pull CDN,
nginx, reading the caches' photo ports), plus the callers from outside (``app``: a
user-facing application; ``admin``: the operator's CLI; ``prometheus``)."""
ROLE_OF_MODULE = {"directory": "directory", "store": "store", "cache": "cache", "router": "router",
                  "transformer": "transformer", "feedsvc": "feed", "feedsvc.worker": "fanout", "f4": "f4-front",
                  "f4.storage": "f4-storage", "f4.backoff": "f4-backoff", "f4.rebuilder": "f4-rebuilder",
                  "f4.keystore": "f4-keystore", "trenchcoat.ops.cdn": "cdn"}
"""The identity (``ROLES``) each service's processes present and serve with."""
DEPENDENCIES = ("etcd", "postgres", "redis")
"""The dependencies' server identities (``<name>.crt``): not roles, so a trenchcoat server
refuses them every method; their clients present their own role's certificate (etcd) or a
password over TLS (PostgreSQL, Redis: ``password``)."""
ORGANISATION = "trenchcoat"
CA_FILE, CA_KEY_FILE = "ca.crt", "ca.key"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Names every certificate ``trenchcoat up`` makes answers to: its processes dial loopback."""
CA_DAYS = 3650
CERT_DAYS = 90


def warn_insecure(prog: str) -> None:
    """What a process run with ``cluster.insecure`` says at every start."""
    logging.getLogger(prog).warning(
        "cluster.insecure = true: gRPC is plaintext and unauthenticated, and any caller that reaches a port "
        "may call any method; for a throwaway cluster on a private machine only")


class TlsError(ValueError):
    """A TLS directory, certificate or key that cannot be used: the message says which file
    and what to do."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_private(path: Path, data: bytes) -> None:
    """Writes a key readable by its owner only, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(directory: Path, *, name: str = "trenchcoat cluster CA", days: int = CA_DAYS) -> Path:
    """Creates the cluster CA (``ca.crt``, ``ca.key``) in ``directory``; refuses to replace
    one (every certificate it signed would stop being trusted). Returns ``ca.crt``."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / CA_FILE).exists() or (directory / CA_KEY_FILE).exists():
        raise TlsError(f"{directory} already holds a CA ({CA_FILE}); remove it first to make another "
                       "(every certificate it signed would then be refused)")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_private(directory / CA_KEY_FILE, _key_pem(key))
    _write_public(directory / CA_FILE, cert.public_bytes(serialization.Encoding.PEM))
    return directory / CA_FILE


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((directory / CA_FILE).read_bytes())
        key = serialization.load_pem_private_key((directory / CA_KEY_FILE).read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise TlsError(f"{exc.filename} is missing: make the cluster CA first (trenchcoat certs)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsError(f"{directory / CA_KEY_FILE} is not an EC key")
    return cert, key


def issue(directory: Path, role: str, *, hosts: Sequence[str] = LOCAL_HOSTS, days: int = CERT_DAYS) -> tuple[Path, Path]:
    """Issues ``<role>.crt`` and ``<role>.key`` in ``directory``, signed by its CA, valid for
    ``hosts`` (DNS names and IP addresses: where this identity's servers are dialled) and
    usable as both server and client. Replaces an older pair (rotation). Returns the paths."""
    if role not in ROLES and role not in DEPENDENCIES:
        raise TlsError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    ca_cert, ca_key = _load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
                                     x509.NameAttribute(NameOID.COMMON_NAME, role)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    crt, pem = directory / f"{role}.crt", directory / f"{role}.key"
    # The key first: a reader that sees the new certificate finds its key already there.
    _write_private(pem, _key_pem(key))
    _write_public(crt, cert.public_bytes(serialization.Encoding.PEM))
    return crt, pem


def make_user_keys(directory: Path) -> bool:
    """The user-token key pair (``trenchcoat.tokens``) in ``directory``: ``users.key``
    (owner only; what mints tokens) and ``users.pub`` (what services check them with), made
    unless both are there; True when made now."""
    private, public = directory / tokens.PRIVATE_FILE, directory / tokens.PUBLIC_FILE
    if private.exists() and public.exists():
        return False
    directory.mkdir(parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    _write_private(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    _write_public(public, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo))
    return True


def names_of(directory: Path, role: str) -> list[str]:
    """The DNS names and addresses ``<role>.crt`` answers to ([] when there is none)."""
    try:
        cert = x509.load_pem_x509_certificate((directory / f"{role}.crt").read_bytes())
    except FileNotFoundError:
        return []
    try:
        alternatives = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*alternatives.get_values_for_type(x509.DNSName),
            *(str(ip) for ip in alternatives.get_values_for_type(x509.IPAddress))]


def ensure(directory: Path, roles: Iterable[str] = ROLES, *, hosts: Sequence[str] = LOCAL_HOSTS) -> list[str]:
    """The CA, the user-token key pair (``trenchcoat.tokens``) and a certificate for each of
    ``roles``, made where missing (``trenchcoat up``'s first start); returns the roles issued now."""
    if not (directory / CA_FILE).exists():
        make_ca(directory)
    make_user_keys(directory)
    made = []
    for role in roles:
        if not (directory / f"{role}.crt").exists() or not (directory / f"{role}.key").exists():
            issue(directory, role, hosts=hosts)
            made.append(role)
    return made


def password(directory: Path, name: str) -> str:
    """The password of dependency ``name`` (``<name>.password`` beside the identities, owner
    only): made once, at random, and the same from then on."""
    path = directory / f"{name}.password"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    directory.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made meanwhile by another process: that one holds
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


def role_of_certificate(pem: bytes) -> str:
    """The role a certificate names (TlsError when it names none of ``ROLES``)."""
    cert = x509.load_pem_x509_certificate(pem)
    org = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if org != [ORGANISATION] or len(names) != 1 or names[0] not in ROLES:
        raise TlsError(f"the certificate {cert.subject.rfc4514_string()} names no trenchcoat role")
    return str(names[0])


def role_of(context: grpc.aio.ServicerContext) -> str | None:
    """The role of the caller's verified certificate (None on a plaintext connection, or
    for a certificate naming no role: the server's CA signed it, but not for trenchcoat)."""
    auth = context.auth_context()
    pem = next(iter(auth.get("x509_pem_cert") or ()), None)
    return _role_of_pem(pem) if pem else None


@functools.lru_cache(maxsize=1024)
def _role_of_pem(pem: bytes) -> str | None:
    """``role_of_certificate``, remembered: a connection's calls all present the same
    certificate, and parsing it is most of what checking a call costs."""
    try:
        return role_of_certificate(pem)
    except (TlsError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Identity:
    """The files of one identity in a TLS directory."""

    directory: Path
    role: str

    @property
    def ca(self) -> Path:
        return self.directory / CA_FILE

    @property
    def cert(self) -> Path:
        return self.directory / f"{self.role}.crt"

    @property
    def key(self) -> Path:
        return self.directory / f"{self.role}.key"

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(CA, certificate, key) as they are on disk now."""
        try:
            return self.ca.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()
        except FileNotFoundError as exc:
            raise TlsError(f"{exc.filename} is missing: issue the {self.role} certificate "
                           f"(trenchcoat certs --dir {self.directory})") from None

    def stamp(self) -> tuple[float, ...]:
        """Changes when any of the three files does (modification times and sizes)."""
        out: list[float] = []
        for path in (self.ca, self.cert, self.key):
            try:
                st = path.stat()
                out += [st.st_mtime_ns, st.st_size, st.st_ino]
            except FileNotFoundError:
                out += [0, 0, 0]
        return tuple(out)


class ServerTls:
    """A server's credentials: its identity's certificate, and client certificates required
    and verified against the CA. The files are looked at before every new connection; a
    change is used from then on (connections open keep their session)."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self._stamp = identity.stamp()
        self.reloads = 0
        """Times a changed certificate was taken up."""

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        ca, cert, key = self.identity.read()
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        stamp = self.identity.stamp()
        if stamp == self._stamp:
            return None  # unchanged: gRPC keeps what it has
        try:
            configuration = self._configuration()
        except (TlsError, OSError):
            return None  # half-written (a rotation under way): the next connection looks again
        self._stamp = stamp
        self.reloads += 1
        return configuration

    def credentials(self) -> grpc.ServerCredentials:
        # gRPC's fetcher may answer None for "unchanged" (its stubs do not say so).
        return grpc.dynamic_ssl_server_credentials(self._configuration(), self._fetch,  # type: ignore[arg-type]
                                                   require_client_authentication=True)


class HttpServerTls:
    """An HTTP listener's TLS: its identity's certificate, client certificates required (or,
    ``clients_may_be_anonymous``, verified when presented) against the CA; ``refresh``
    takes up a rotated certificate for the connections accepted from then on."""

    def __init__(self, identity: Identity, *, clients_may_be_anonymous: bool = False) -> None:
        self.identity = identity
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(identity.ca))
        self.context.verify_mode = ssl.CERT_OPTIONAL if clients_may_be_anonymous else ssl.CERT_REQUIRED
        self.context.load_cert_chain(identity.cert, identity.key)
        self._stamp = identity.stamp()

    def refresh(self) -> bool:
        """Loads the files again if they changed; True when it did."""
        stamp = self.identity.stamp()
        if stamp == self._stamp:
            return False
        try:
            self.context.load_verify_locations(cafile=str(self.identity.ca))
            self.context.load_cert_chain(self.identity.cert, self.identity.key)
        except (OSError, ssl.SSLError):
            return False  # half-written (a rotation under way): looked at again shortly
        self._stamp = stamp
        return True


def role_of_peer(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The role of the certificate an HTTPS client presented (None without one)."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    return _role_of_pem(x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM))


class ClientTls:
    """A client's credentials: its identity's certificate, servers verified against the CA."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity

    def stamp(self) -> tuple[float, ...]:
        return self.identity.stamp()

    def credentials(self) -> grpc.ChannelCredentials:
        ca, cert, key = self.identity.read()
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)

    def http_context(self) -> ssl.SSLContext:
        """The same identity for an HTTPS client: servers verified against the CA, this
        certificate presented."""
        context = ssl.create_default_context(cafile=str(self.identity.ca))
        context.load_cert_chain(self.identity.cert, self.identity.key)
        return context
