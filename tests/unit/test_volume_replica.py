"""The file backend mirrors a replicated volume only when it was written since its last
mirror, and a write in the same tick as a mirror is never lost."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pocketstack.volume.drivers import file as file_backend

MIB = 1 << 20


def _backend(tmp_path: Path) -> tuple[file_backend.FileBackend, Path, Path]:
    backend = file_backend.FileBackend(tmp_path / "file", tmp_path / "file-replica")
    backend.create("v1", 1)
    name = "volume-v1.raw"
    primary, replica = tmp_path / "file" / "volumes", tmp_path / "file-replica" / "volumes"
    return backend, primary / name, replica / name


def _write(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as disk:
        disk.seek(offset)
        disk.write(data)


def test_an_unwritten_volume_is_not_read_again(tmp_path: Path) -> None:
    backend, primary, replica = _backend(tmp_path)
    _write(primary, 5 * MIB, os.urandom(MIB))
    old = time.time_ns() - 5 * file_backend.SETTLED_NS
    os.utime(primary, ns=(old, old))  # written long before the mirrors below
    assert backend.replicate("v1") == 4 * MIB  # one mirror chunk (4 MiB) holds the change
    assert backend.replicate("v1") == 0
    replica.unlink()  # were it read again, this would be rebuilt
    assert backend.replicate("v1") == 0 and not replica.exists()


def test_a_write_just_before_a_mirror_is_mirrored_on_the_next_pass(tmp_path: Path) -> None:
    backend, primary, replica = _backend(tmp_path)
    backend.replicate("v1")
    _write(primary, 0, b"first")
    stamp = primary.stat().st_mtime_ns
    backend.replicate("v1")
    _write(primary, MIB, b"second")  # may land in the same tick: the mtime may not move
    os.utime(primary, ns=(stamp, stamp))
    backend.replicate("v1")
    assert replica.read_bytes()[MIB : MIB + 6] == b"second"
