"""Reading a volume into a backup repository and writing it back, in parallel.

A volume is cut into fixed chunks of CHUNK_BYTES; worker processes each read
their chunk straight from the file (pread), skip it if it is all zeros, hash it
(BLAKE3) and, unless the repository holds that hash already, compress it
(zstd) and store it. So an incremental backup, whose unchanged chunks hash as
its parent's did, stores only what changed. Restore runs the other way and
checks every chunk's hash before it writes it. Processes, not threads: hashing
and compressing are CPU work, and each worker has its own interpreter. The
processes stay for the next backup, each with a read buffer it reuses, and the
kernel is asked to read ahead of them (they read out of order, which its own
read-ahead does not follow).
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import zstandard

from pocketstack.host import blockfiles
from pocketstack.volume.drivers.repository import Repository

CHUNK_BYTES = 4 << 20
ZSTD_LEVEL = 1  # volume data is often incompressible; level 1 costs half of level 3 there
_ZEROS = bytes(CHUNK_BYTES)
# Version 1 manifests name chunks by SHA-256, version 2 by BLAKE3 (five times faster on
# one CPU here: 9 GB/s against 1.8); both are read back, version 2 is written.
MANIFEST_VERSION = 2
_HASHES: dict[int, Callable[[bytes | bytearray | memoryview], str]] = {
    1: lambda data: hashlib.sha256(data).hexdigest(),
    2: lambda data: blake3.blake3(data).hexdigest(),
}
PROGRESS_EVERY_S = 1.0
IN_FLIGHT_PER_WORKER = 4  # chunks queued per worker: bounded memory, workers never idle
PREFETCH_CHUNKS = 16  # 64 MiB ahead of the workers

# (chunks done, chunks in all): called at most every PROGRESS_EVERY_S, and at the end.
ProgressCallback = Callable[[int, int], None]


class CorruptChunk(Exception):
    """A chunk read back from the repository does not hash to its name."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    manifest: dict[str, Any]
    stored_bytes: int  # what this backup added to the repository (compressed)
    chunks: int


def default_workers() -> int:
    """One worker per CPU but one: the kernel's reading and page-cache writing for the
    workers is a CPU's worth of work of its own (on 2 vCPUs, 2 workers back up at 48% of
    the raw read rate and 1 at 77%; docs/benchmarks.md)."""
    return max(1, (os.cpu_count() or 1) - 1)


def chunk_count(size_bytes: int) -> int:
    return (size_bytes + CHUNK_BYTES - 1) // CHUNK_BYTES


class _WorkerState(threading.local):
    """What a worker keeps from chunk to chunk: a read buffer and a compressor. Fresh
    4 MiB buffers cost more than the copy into them (every page faults in anew)."""

    def __init__(self) -> None:
        self.buffer = bytearray(CHUNK_BYTES)
        self.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)


_WORKER = _WorkerState()


def _store_chunk(repository: Repository, path: str, index: int) -> tuple[str | None, int]:
    """In a worker: the chunk's hash (None: zeros) and the bytes it added."""
    buffer = _WORKER.buffer
    with open(path, "rb") as source:
        length = os.preadv(source.fileno(), [buffer], index * CHUNK_BYTES)
    if length == CHUNK_BYTES:
        data: bytes | bytearray | memoryview = buffer
        if buffer == _ZEROS:
            return None, 0
    else:
        data = memoryview(buffer)[:length]
        if bytes(data) == _ZEROS[:length]:
            return None, 0
    digest = _HASHES[MANIFEST_VERSION](data)
    if repository.has_chunk(digest):
        return digest, 0
    return digest, repository.put_chunk(digest, _WORKER.compressor.compress(data))


def _restore_chunk(
    repository: Repository, path: str, index: int, digest: str, version: int
) -> None:
    """In a worker: the chunk, checked against its hash, written at its place."""
    data = zstandard.ZstdDecompressor().decompress(repository.get_chunk(digest))
    if _HASHES[version](data) != digest:
        raise CorruptChunk(f"chunk {index} ({digest}) is damaged in the backup repository")
    with open(path, "r+b") as target:
        os.pwrite(target.fileno(), data, index * CHUNK_BYTES)


def _chunks_with_data(path: Path, size_bytes: int) -> set[int]:
    """The chunks that hold data: the file's holes (a thin volume is mostly holes) need
    no reading to be known as zeros."""
    found: set[int] = set()
    with path.open("rb") as source:
        for start, end in blockfiles.data_extents(source.fileno(), size_bytes):
            found.update(range(start // CHUNK_BYTES, (end - 1) // CHUNK_BYTES + 1))
    return found


@functools.cache
def _pool(workers: int) -> ProcessPoolExecutor:
    """The worker processes, started once and kept for the next backup (starting them
    costs more than backing up a small volume). Spawned, not forked: the service process
    runs threads (a fork copies their locks)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def _prefetched(
    path: Path, indexes: Sequence[int], calls: Iterable[tuple[Callable[..., Any], tuple[Any, ...]]]
) -> Iterator[tuple[Callable[..., Any], tuple[Any, ...]]]:
    """The calls, each after asking the kernel to start reading the chunk PREFETCH_CHUNKS
    ahead: workers read chunks out of order, which defeats the kernel's own read-ahead,
    and without it each read waits for the disk."""
    with path.open("rb") as source:
        for position, call in enumerate(calls):
            if position + PREFETCH_CHUNKS < len(indexes):
                start = indexes[position + PREFETCH_CHUNKS] * CHUNK_BYTES
                os.posix_fadvise(source.fileno(), start, CHUNK_BYTES, os.POSIX_FADV_WILLNEED)
            yield call


def _in_order(
    workers: int, calls: Iterable[tuple[Callable[..., Any], tuple[Any, ...]]], total: int,
    progress: ProgressCallback,
) -> Iterator[Any]:  # fmt: skip
    """Run the calls on a pool, at most workers x IN_FLIGHT_PER_WORKER at a time; their
    results in order, reporting progress as they come."""
    window: deque[Future[Any]] = deque()
    done, reported = 0, time.monotonic()
    pool = _pool(workers)
    try:
        for function, arguments in calls:
            window.append(pool.submit(function, *arguments))
            while len(window) >= workers * IN_FLIGHT_PER_WORKER:
                yield window.popleft().result()
                done += 1
                if time.monotonic() - reported >= PROGRESS_EVERY_S:
                    progress(done, total)
                    reported = time.monotonic()
        while window:
            yield window.popleft().result()
            done += 1
    except BrokenProcessPool:
        _pool.cache_clear()  # a worker died: the next backup starts fresh ones
        raise
    finally:
        for pending in window:
            pending.cancel()
    progress(done, total)


def back_up(
    source: Path | None, size_bytes: int, repository: Repository, workers: int,
    progress: ProgressCallback, parent_id: str | None = None,
) -> BackupResult:  # fmt: skip
    """Every chunk of `source` in the repository; the manifest (not yet written). A source
    of None (a backend that keeps no bytes) backs up as zeros."""
    total = chunk_count(size_bytes)
    if source is None:
        chunks: list[str | None] = [None] * total
        stored = 0
        progress(total, total)
    else:
        with_data = sorted(_chunks_with_data(source, size_bytes))
        calls = _prefetched(
            source, with_data, ((_store_chunk, (repository, str(source), i)) for i in with_data)
        )
        results = dict(zip(with_data, _in_order(workers, calls, len(with_data), progress),
                           strict=True))  # fmt: skip
        chunks = [results[i][0] if i in results else None for i in range(total)]
        stored = sum(added for _, added in results.values())
    manifest = {
        "version": MANIFEST_VERSION, "chunk_bytes": CHUNK_BYTES, "size_bytes": size_bytes,
        "parent_id": parent_id, "chunks": chunks,
    }  # fmt: skip
    return BackupResult(manifest, stored, total)


def restore(
    manifest: dict[str, Any], repository: Repository, target: Path | None, workers: int,
    progress: ProgressCallback,
) -> None:  # fmt: skip
    """Write the backup's bytes over `target`, which becomes sparse first so chunks of
    zeros need no writing. Raises CorruptChunk when a chunk does not hash as recorded."""
    if manifest.get("chunk_bytes") != CHUNK_BYTES:
        raise CorruptChunk(f"the manifest's chunk size {manifest.get('chunk_bytes')} is unknown")
    version = manifest.get("version")
    if version not in _HASHES:
        raise CorruptChunk(f"the manifest's version {version!r} is unknown")
    chunks: list[str | None] = manifest["chunks"]
    if target is None:
        progress(len(chunks), len(chunks))
        return
    size = max(target.stat().st_size, int(manifest["size_bytes"]))
    with target.open("r+b") as handle:
        handle.truncate(0)
        handle.truncate(size)
    calls = (
        (_restore_chunk, (repository, str(target), index, digest, version))
        for index, digest in enumerate(chunks)
        if digest is not None
    )
    for _ in _in_order(workers, calls, sum(1 for d in chunks if d), progress):
        pass
