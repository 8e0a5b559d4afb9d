"""The backup engine's manifests: chunks named by BLAKE3 now, and by SHA-256 in the
manifests of earlier backups, which still restore with their hashes checked."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import zstandard

from pocketstack.volume import backup_engine
from pocketstack.volume.drivers.repository import DirectoryRepository

CHUNK = backup_engine.CHUNK_BYTES


def _volume(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(CHUNK) + bytes(CHUNK) + os.urandom(CHUNK // 2)
    path = tmp_path / "volume.raw"
    path.write_bytes(data)
    return path, data


def test_a_backup_restores_byte_for_byte(tmp_path: Path) -> None:
    source, data = _volume(tmp_path)
    repository = DirectoryRepository(tmp_path / "repo")
    result = backup_engine.back_up(source, len(data), repository, 1, lambda done, total: None)
    assert result.manifest["version"] == 2 and result.manifest["chunks"][1] is None
    target = tmp_path / "restored.raw"
    target.touch()
    backup_engine.restore(result.manifest, repository, target, 1, lambda done, total: None)
    assert target.read_bytes() == data


def test_an_earlier_sha256_manifest_still_restores_and_is_checked(tmp_path: Path) -> None:
    _, data = _volume(tmp_path)
    repository = DirectoryRepository(tmp_path / "repo")
    pieces = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    names: list[str | None] = []
    for piece in pieces:
        if piece == bytes(len(piece)):
            names.append(None)
            continue
        digest = hashlib.sha256(piece).hexdigest()
        repository.put_chunk(digest, [zstandard.ZstdCompressor().compress(piece)])
        names.append(digest)
    manifest = {"version": 1, "chunk_bytes": CHUNK, "size_bytes": len(data), "parent_id": None,
                "chunks": names}  # fmt: skip
    target = tmp_path / "restored.raw"
    target.touch()
    backup_engine.restore(manifest, repository, target, 1, lambda done, total: None)
    assert target.read_bytes() == data
    with pytest.raises(backup_engine.CorruptChunk, match="version"):
        backup_engine.restore({**manifest, "version": 9}, repository, target, 1,
                              lambda done, total: None)  # fmt: skip
    first = names[0] or ""
    damaged = os.urandom(CHUNK)
    chunk_file = next((tmp_path / "repo").rglob(f"{first}.zst"))
    chunk_file.write_bytes(zstandard.ZstdCompressor().compress(damaged))
    with pytest.raises(backup_engine.CorruptChunk, match="damaged"):
        backup_engine.restore(manifest, repository, target, 1, lambda done, total: None)


def test_a_sparse_volume_longer_than_a_run_restores_with_progress_in_chunks(
    tmp_path: Path,
) -> None:
    """Workers take runs of consecutive chunks; holes cut runs short, and progress still
    counts chunks, ending at the number that hold data."""
    chunks = backup_engine.RUN_CHUNKS + 3
    path = tmp_path / "sparse.raw"
    with path.open("wb") as disk:
        disk.truncate(chunks * CHUNK - CHUNK // 4)
        written = {}
        for index in (0, 1, 4, *range(6, chunks)):
            piece = os.urandom(CHUNK // 8)
            disk.seek(index * CHUNK)
            disk.write(piece)
            written[index] = piece
    data = path.read_bytes()
    repository = DirectoryRepository(tmp_path / "repo")
    seen: list[tuple[int, int]] = []
    result = backup_engine.back_up(path, len(data), repository, 2,
                                   lambda done, total: seen.append((done, total)))  # fmt: skip
    stored = [i for i, digest in enumerate(result.manifest["chunks"]) if digest]
    assert stored == sorted(written) and seen[-1] == (len(written), len(written))
    target = tmp_path / "restored.raw"
    target.touch()
    backup_engine.restore(result.manifest, repository, target, 2, lambda done, total: None)
    assert target.read_bytes() == data


def test_a_chunk_that_would_not_shrink_is_stored_as_it_is_and_reads_back_as_zstd(
    tmp_path: Path,
) -> None:
    """Random data costs the repository its own size and no more; data that compresses
    is compressed; both are zstd frames that any zstd decoder reads."""
    random_chunk = os.urandom(CHUNK)
    mostly_zeros = os.urandom(CHUNK // 4) + bytes(CHUNK - CHUNK // 4)
    path = tmp_path / "volume.raw"
    path.write_bytes(random_chunk + mostly_zeros)
    repository = DirectoryRepository(tmp_path / "repo")
    result = backup_engine.back_up(path, 2 * CHUNK, repository, 1, lambda done, total: None)
    first, second = (next((tmp_path / "repo").rglob(f"{digest}.zst"))
                     for digest in result.manifest["chunks"])  # fmt: skip
    assert CHUNK < first.stat().st_size < CHUNK + 200
    assert second.stat().st_size < CHUNK // 2
    assert result.stored_bytes == first.stat().st_size + second.stat().st_size
    decoder = zstandard.ZstdDecompressor()
    assert decoder.decompress(first.read_bytes()) == random_chunk
    assert decoder.decompress(second.read_bytes()) == mostly_zeros


def test_a_chunk_the_repository_cannot_take_fails_the_backup_and_the_next_one_works(
    tmp_path: Path,
) -> None:
    """Chunks are written on a thread of their own while the next are hashed: a write
    that fails still fails the backup, and leaves the workers fit for the next one."""
    source, data = _volume(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "chunks").write_text("a file where the chunk folders should be")
    with pytest.raises(OSError):
        backup_engine.back_up(source, len(data), DirectoryRepository(broken), 1,
                              lambda done, total: None)  # fmt: skip
    repository = DirectoryRepository(tmp_path / "repo")
    result = backup_engine.back_up(source, len(data), repository, 1, lambda done, total: None)
    target = tmp_path / "restored.raw"
    target.touch()
    backup_engine.restore(result.manifest, repository, target, 1, lambda done, total: None)
    assert target.read_bytes() == data
