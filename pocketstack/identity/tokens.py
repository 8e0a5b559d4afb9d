"""Self-contained, encrypted tokens (Fernet) and the key repository behind them.

A token carries who, how and for what scope, sealed with the primary key of
`<state_dir>/fernet-keys`; any API worker holding the keys can open it
without a database row. Keys rotate Keystone's way: file `0` is the staged
key, the highest number is the primary (signs new tokens), the others still
open old tokens. `pocketstack token rotate-keys` promotes the staged key.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

_CHECK_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class TokenPayload:
    """What a token says; roles and catalog are recomputed at validation."""

    user_id: str
    methods: tuple[str, ...]
    audit_ids: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime
    project_id: str | None = None
    domain_id: str | None = None
    system: bool = False
    application_credential_id: str | None = None


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


def encode_payload(payload: TokenPayload) -> bytes:
    fields: dict[str, object] = {
        "u": payload.user_id,
        "m": list(payload.methods),
        "a": list(payload.audit_ids),
        "i": _ts(payload.issued_at.replace(tzinfo=UTC)),
        "e": _ts(payload.expires_at.replace(tzinfo=UTC)),
    }
    if payload.project_id:
        fields["p"] = payload.project_id
    if payload.domain_id:
        fields["d"] = payload.domain_id
    if payload.system:
        fields["s"] = 1
    if payload.application_credential_id:
        fields["c"] = payload.application_credential_id
    return json.dumps(fields, separators=(",", ":")).encode()


def decode_payload(raw: bytes) -> TokenPayload:
    fields = json.loads(raw)
    return TokenPayload(
        user_id=fields["u"],
        methods=tuple(fields["m"]),
        audit_ids=tuple(fields["a"]),
        issued_at=_dt(fields["i"]),
        expires_at=_dt(fields["e"]),
        project_id=fields.get("p"),
        domain_id=fields.get("d"),
        system=bool(fields.get("s")),
        application_credential_id=fields.get("c"),
    )


def new_audit_id() -> str:
    """22 url-safe characters, the length Keystone's audit ids have."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")


class KeyRepository:
    """The Fernet keys on disk; re-read when the directory changes (another worker rotated)."""

    def __init__(self, directory: Path, max_active_keys: int = 3) -> None:
        self.directory = directory
        self.max_active_keys = max_active_keys
        self._lock = threading.Lock()
        self._mtime = -1.0
        self._checked = 0.0
        self._fernet: MultiFernet | None = None

    def setup(self) -> None:
        """Create the directory with a staged and a primary key, unless keys exist."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self._indexes():
            self._write_key(0)
            self._write_key(1)

    def _indexes(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        return sorted(int(p.name) for p in self.directory.iterdir() if p.name.isdigit())

    def _write_key(self, index: int) -> None:
        tmp = self.directory / f".{index}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
        tmp.replace(self.directory / str(index))

    def rotate(self) -> int:
        """Promote the staged key to primary, stage a new one, prune the oldest.

        Returns the index of the new primary key."""
        indexes = self._indexes()
        if not indexes:
            self.setup()
            indexes = self._indexes()
        new_primary = max(indexes) + 1
        (self.directory / "0").replace(self.directory / str(new_primary))
        self._write_key(0)
        secondaries = [i for i in self._indexes() if i not in (0, new_primary)]
        keep = max(self.max_active_keys - 2, 0)
        for index in secondaries[: max(len(secondaries) - keep, 0)]:
            (self.directory / str(index)).unlink()
        with self._lock:
            self._fernet = None
        return new_primary

    def _current(self) -> MultiFernet:
        now = time.monotonic()
        if self._fernet is not None and now - self._checked < _CHECK_INTERVAL_S:
            return self._fernet
        with self._lock:
            mtime = self.directory.stat().st_mtime
            if self._fernet is None or mtime != self._mtime:
                indexes = self._indexes()
                if not indexes:
                    raise RuntimeError(f"no token keys in {self.directory}; run `pocketstack up`")
                # Primary first: MultiFernet encrypts with the first key.
                ordered = sorted(indexes, key=lambda i: (i == 0, -i))
                keys = [Fernet((self.directory / str(i)).read_bytes().strip()) for i in ordered]
                self._fernet = MultiFernet(keys)
                self._mtime = mtime
            self._checked = now
            return self._fernet

    def seal(self, data: bytes) -> str:
        return self._current().encrypt(data).decode("ascii").rstrip("=")

    def open(self, token: str) -> bytes | None:
        """The payload, or None if no active key opens the token."""
        padded = token + "=" * (-len(token) % 4)
        try:
            return self._current().decrypt(padded.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError, ValueError):
            return None
