"""Fernet tokens: sealed, opened by any holder of the keys, and rotated Keystone's way."""

from datetime import datetime, timedelta
from pathlib import Path

from pocketstack.identity import auth, passwords, tokens
from pocketstack.identity.models import RevocationEvent

NOW = datetime(2026, 11, 24, 12, 0, 0, 123456)


def payload(**overrides: object) -> tokens.TokenPayload:
    fields: dict = {
        "user_id": "u1",
        "methods": ("password",),
        "audit_ids": ("a1",),
        "issued_at": NOW,
        "expires_at": NOW + timedelta(hours=1),
        "project_id": "p1",
    }
    fields.update(overrides)
    return tokens.TokenPayload(**fields)


def test_payload_round_trip_keeps_microseconds() -> None:
    original = payload(application_credential_id="c1")
    assert tokens.decode_payload(tokens.encode_payload(original)) == original


def test_rotation_keeps_old_tokens_valid_until_their_key_is_pruned(tmp_path: Path) -> None:
    repo = tokens.KeyRepository(tmp_path / "keys", max_active_keys=3)
    repo.setup()
    first = repo.seal(b"one")
    repo.rotate()
    other_worker = tokens.KeyRepository(tmp_path / "keys", max_active_keys=3)
    assert other_worker.open(first) == b"one"
    second = repo.seal(b"two")
    repo.rotate()
    repo.rotate()
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["0", "3", "4"]
    fresh = tokens.KeyRepository(tmp_path / "keys")
    assert fresh.open(first) is None
    assert fresh.open(second) is None
    assert fresh.open(repo.seal(b"three")) == b"three"


def test_garbage_does_not_open(tmp_path: Path) -> None:
    repo = tokens.KeyRepository(tmp_path / "keys")
    repo.setup()
    assert repo.open("not-a-token") is None
    assert repo.open("ü") is None


def test_audit_ids_look_like_keystones() -> None:
    assert len(tokens.new_audit_id()) == 22


def event(**fields: object) -> RevocationEvent:
    return RevocationEvent(issued_before=NOW + timedelta(seconds=1), revoked_at=NOW, **fields)


def test_revocation_matches_every_given_field() -> None:
    token = payload()
    assert auth._is_revoked([event(user_id="u1")], token)
    assert auth._is_revoked([event(audit_id="a1")], token)
    assert auth._is_revoked([event(user_id="u1", project_id="p1")], token)
    assert not auth._is_revoked([event(user_id="u1", project_id="p2")], token)
    assert not auth._is_revoked([event(user_id="u2")], token)


def test_tokens_issued_after_the_event_survive_it() -> None:
    later = payload(issued_at=NOW + timedelta(seconds=5))
    assert not auth._is_revoked([event(user_id="u1")], later)


def test_passwords_verify_and_long_ones_are_cut_at_72_bytes() -> None:
    hashed = passwords.hash_secret("s" * 100, rounds=4)
    assert passwords.verify_secret("s" * 100, hashed)
    assert passwords.verify_secret("s" * 72 + "different", hashed)
    assert not passwords.verify_secret("wrong", hashed)
    assert not passwords.verify_secret("x", None)
    assert not passwords.verify_secret("x", "not-a-hash")
