"""Keypairs: SSH (or x509) public keys a user names and hands to their servers.

A keypair belongs to a user, not a project, as in Nova. Keys are generated
here when none is given (the private half is returned once and never kept).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from pocketstack.compute import models, quotas
from pocketstack.core import errors, pagination
from pocketstack.core.context import RequestContext

SSH = "ssh"
X509 = "x509"


@dataclass(frozen=True, slots=True)
class KeyPairView:
    id: int
    name: str
    user_id: str
    type: str
    public_key: str
    fingerprint: str
    created_at: datetime
    private_key: str | None = None


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _ssh_fingerprint(public_key: str) -> str:
    """The colon-separated MD5 of the key blob, as Nova shows it."""
    parts = public_key.strip().split()
    if len(parts) < 2:
        raise errors.Invalid("Keypair data is invalid: failed to parse the public key.")
    try:
        serialization.load_ssh_public_key(" ".join(parts[:2]).encode())
        blob = base64.b64decode(parts[1], validate=True)
    except (ValueError, TypeError):
        raise errors.Invalid("Keypair data is invalid: failed to parse the public key.") from None
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _x509_fingerprint(public_key: str) -> str:
    try:
        certificate = x509.load_pem_x509_certificate(public_key.encode())
    except ValueError:
        raise errors.Invalid("Keypair data is invalid: failed to load the certificate.") from None
    digest = certificate.fingerprint(hashes.SHA1()).hex()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _generate(key_type: str, user_id: str) -> tuple[str, str]:
    """A new RSA key: (OpenSSH public key or a self-signed PEM certificate, PEM private key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    if key_type == X509:
        return _self_signed(key, user_id), private
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return f"{public.decode()} Generated-by-Nova", private


def _self_signed(key: rsa.RSAPrivateKey, user_id: str) -> str:
    """A ten-year certificate naming the user, as Nova makes for generated x509 keys."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user_id or "pocketstack")])
    start = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _view(row: models.KeyPair, private_key: str | None = None) -> KeyPairView:
    return KeyPairView(
        row.id,
        row.name,
        row.user_id,
        row.type,
        row.public_key,
        row.fingerprint,
        row.created_at,
        private_key,
    )


def create_keypair(
    ctx: RequestContext, user_id: str, name: str, key_type: str, public_key: str | None
) -> KeyPairView:
    """Import `public_key`, or generate a key pair when it is None."""
    private_key = None
    if public_key is None:
        public_key, private_key = _generate(key_type, user_id)
    fingerprint = _ssh_fingerprint(public_key) if key_type == SSH else _x509_fingerprint(public_key)
    _check_quota(ctx, user_id)
    try:
        with ctx.db.write() as session:
            if session.scalar(
                select(models.KeyPair.id).where(
                    models.KeyPair.user_id == user_id, models.KeyPair.name == name
                )
            ):
                raise errors.Conflict(f"Key pair '{name}' already exists.")
            row = models.KeyPair(
                user_id=user_id,
                name=name,
                type=key_type,
                public_key=public_key,
                fingerprint=fingerprint,
                created_at=now(),
            )
            session.add(row)
            session.flush()
            return _view(row, private_key)
    except IntegrityError:
        raise errors.Conflict(f"Key pair '{name}' already exists.") from None


def _check_quota(ctx: RequestContext, user_id: str) -> None:
    """A user's keypairs stay within the `key_pairs` quota of the caller's project."""
    limit = quotas.limits(ctx, ctx.project_id or "", user_id)["key_pairs"]
    if limit < 0:
        return
    with ctx.db.read() as session:
        count = session.scalar(select(func.count()).where(models.KeyPair.user_id == user_id))
    if (count or 0) + 1 > limit:
        raise errors.OverQuota("Quota exceeded, too many key pairs.")


def get_keypair(ctx: RequestContext, user_id: str, name: str) -> KeyPairView:
    with ctx.db.read() as session:
        row = session.scalar(
            select(models.KeyPair).where(
                models.KeyPair.user_id == user_id, models.KeyPair.name == name
            )
        )
        if row is None:
            raise errors.NotFound(f"Keypair {name} not found for user {user_id}")
        return _view(row)


def list_keypairs(
    ctx: RequestContext, user_id: str, marker: str | None, limit: int | None
) -> list[KeyPairView]:
    stmt = select(models.KeyPair).where(models.KeyPair.user_id == user_id)
    with ctx.db.read() as session:
        marker_row = None
        if marker is not None:
            marker_row = session.scalar(stmt.where(models.KeyPair.name == marker))
            if marker_row is None:
                raise errors.Invalid(f"marker [{marker}] not found")
        stmt = pagination.apply(stmt, models.KeyPair, [pagination.SortKey("id")], marker_row, limit)
        return [_view(row) for row in session.scalars(stmt)]


def delete_keypair(ctx: RequestContext, user_id: str, name: str) -> None:
    with ctx.db.write() as session:
        row = session.scalar(
            select(models.KeyPair).where(
                models.KeyPair.user_id == user_id, models.KeyPair.name == name
            )
        )
        if row is None:
            raise errors.NotFound(f"Keypair {name} not found for user {user_id}")
        session.delete(row)
