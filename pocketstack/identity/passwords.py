"""Password and secret hashing with bcrypt, at a cost the operator chooses.

bcrypt reads at most 72 bytes; longer secrets are cut there, as every bcrypt
implementation historically did, rather than rejected.
"""

from __future__ import annotations

import bcrypt

_BCRYPT_MAX_BYTES = 72


def _prepare(secret: str) -> bytes:
    return secret.encode("utf-8")[:_BCRYPT_MAX_BYTES]


def hash_secret(secret: str, rounds: int) -> str:
    return bcrypt.hashpw(_prepare(secret), bcrypt.gensalt(rounds)).decode("ascii")


def verify_secret(secret: str, hashed: str | None) -> bool:
    if not hashed:
        return False
    try:
        return bcrypt.checkpw(_prepare(secret), hashed.encode("ascii"))
    except ValueError:
        return False
