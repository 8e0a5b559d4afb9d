"""Reading a volume into a backup repository and writing it back, in parallel.

A volume is cut into fixed chunks of CHUNK_BYTES; worker processes each map
their chunks of the file, skip a chunk if it is all zeros, hash it (BLAKE3)
and, unless the repository holds that hash already, compress it (zstd) and
store it; a chunk that would not shrink is stored as it is, framed as zstd raw
blocks, so every chunk reads back the same way. So an incremental backup,
whose unchanged chunks hash as its parent's did, stores only what changed.
Restore runs the other way and checks every chunk's hash before it writes it.
Processes, not threads: hashing and compressing are CPU work, and each worker
has its own interpreter. The processes stay for the next backup.

A worker takes a run of consecutive chunks and maps it, so the kernel's own
read-ahead follows it; mapping instead of reading (pread) saves copying every
byte into a buffer, the largest cost of a plain read. Asking for each chunk
ahead (fadvise or madvise WILLNEED) fills the cache one small page at a time
and cost three times the CPU. Each run is then dropped from the cache: a backup
reads every byte once, and caching a whole volume would push the host's useful
pages out and make the kernel find ever new pages for the rest of it (pages it
has just freed are the cheapest it can find; in a VM whose freed memory goes
back to the hypervisor, new ones cost a fault on the host too).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import mmap
import multiprocessing
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
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
_ZEROS = bytearray(CHUNK_BYTES)  # compares with any buffer by memcmp
# Version 1 manifests name chunks by SHA-256, version 2 by BLAKE3 (five times faster on
# one CPU here: 9 GB/s against 1.8); both are read back, version 2 is written.
MANIFEST_VERSION = 2
_HASHES: dict[int, Callable[[bytes | bytearray | memoryview], str]] = {
    1: lambda data: hashlib.sha256(data).hexdigest(),
    2: lambda data: blake3.blake3(data).hexdigest(),
}
PROGRESS_EVERY_S = 1.0
# A chunk is compressed when slices of it shrink below this share; zstd gets random data
# no smaller, and compressed data hardly smaller.
SAMPLES, SAMPLE_BYTES, COMPRESSED_AT_MOST = 8, 16 << 10, 0.9
_ZSTD_MAGIC = (0xFD2FB528).to_bytes(4, "little")
_SINGLE_SEGMENT_4_BYTE_SIZE = bytes([0b1010_0000])  # frame header descriptor, no checksum
_RAW_BLOCK_BYTES = 128 << 10  # zstd's largest block
RUN_CHUNKS = 64  # 256 MiB mapped and read in order by one worker
MADV_POPULATE_READ = 22  # Linux 5.14; the mmap module names it from Python 3.13
READ_AHEAD = 4  # chunks a worker's reader thread maps ahead of the one being hashed
# madvise through ctypes, which lets go of the GIL: the mmap module's holds it while the
# kernel reads, which stalls the worker's hashing and writing threads.
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
IN_FLIGHT_PER_WORKER = 2  # runs queued per worker: bounded memory, workers never idle

# (chunks done, chunks in all): called at most every PROGRESS_EVERY_S, and at the end.
ProgressCallback = Callable[[int, int], None]


# A stored chunk: its hash (None: zeros, not stored) and the bytes it added to the repository.
StoredChunk = tuple[str | None, int]


class CorruptChunk(Exception):
    """A chunk read back from the repository does not hash to its name."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    manifest: dict[str, Any]
    stored_bytes: int  # what this backup added to the repository (compressed)
    chunks: int


def default_workers() -> int:
    """One worker per CPU but one: each worker's reading and page-cache writing is kernel
    work of its own (on 2 vCPUs, two workers back up no faster than one; see "Block
    storage" in docs/benchmarks.md)."""
    return max(1, (os.cpu_count() or 1) - 1)


def chunk_count(size_bytes: int) -> int:
    return (size_bytes + CHUNK_BYTES - 1) // CHUNK_BYTES


class _WorkerState(threading.local):
    """What each thread of a worker keeps from chunk to chunk: a compressor (zstd's may
    not be shared between threads) and, used from the worker's main thread, a thread
    that writes chunks into the repository while the next ones are hashed."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self.writer = ThreadPoolExecutor(max_workers=1)
        self.reader = ThreadPoolExecutor(max_workers=1)


_WORKER = _WorkerState()


def _store_run(repository: Repository, path: str, indexes: Sequence[int]) -> list[StoredChunk]:
    """In a worker: each chunk's hash (None: zeros) and the bytes it added. The run is
    mapped, not read: each chunk's pages are mapped from the page cache at once
    (MADV_POPULATE_READ), hashed, and handed to the worker's writer thread, which
    writes them from there while the next ones are hashed; no byte is copied into a
    buffer first, and the kernel's read-ahead follows the run. Once the run is stored
    it is unmapped and dropped from the page cache (see above)."""
    with open(path, "rb") as source:
        start = indexes[0] * CHUNK_BYTES
        length = min(len(indexes) * CHUNK_BYTES, os.fstat(source.fileno()).st_size - start)
        try:
            with mmap.mmap(source.fileno(), length, flags=mmap.MAP_PRIVATE,
                           prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=start) as run:  # fmt: skip
                run.madvise(mmap.MADV_SEQUENTIAL)
                run.madvise(mmap.MADV_HUGEPAGE)  # read ahead in 2 MiB folios, not 4 KiB pages
                try:
                    return _store_mapped(repository, run)
                except BaseException as error:
                    _clear_frames(error)
                    raise
        finally:
            os.posix_fadvise(source.fileno(), start, length, os.POSIX_FADV_DONTNEED)


def _clear_frames(error: BaseException | None) -> None:
    """The locals of the frames an error and the errors behind it passed through, dropped:
    among them are views of the mapping (a chunk being written, its raw blocks), and a
    mapping with views may not close, which would hide the error behind a BufferError."""
    while error is not None:
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__


def _store_mapped(repository: Repository, run: mmap.mmap) -> list[StoredChunk]:
    """Each chunk of the mapped run stored, the writes queued to the writer thread."""
    stored: list[StoredChunk] = []
    writes: list[Future[int]] = []
    positions: list[int] = []
    anchor = ctypes.c_char.from_buffer(run)
    address = ctypes.addressof(anchor)
    del anchor
    offsets = range(0, len(run), CHUNK_BYTES)

    def populate(offset: int) -> Future[None]:
        return _WORKER.reader.submit(_populate, address, offset, len(run))

    populated = deque(populate(offset) for offset in offsets[:READ_AHEAD])
    try:
        for number, offset in enumerate(offsets):
            size = min(CHUNK_BYTES, len(run) - offset)
            populated.popleft().result()
            if number + READ_AHEAD < len(offsets):
                populated.append(populate(offsets[number + READ_AHEAD]))
            with memoryview(run)[offset : offset + size] as chunk:
                digest, compress = _chunk_to_store(repository, chunk)
            stored.append((digest, 0))
            if digest is not None and compress is not None:
                writes.append(_WORKER.writer.submit(_write_chunk, repository, run, offset, size,
                                                    digest, compress))  # fmt: skip
                positions.append(len(stored) - 1)
    finally:
        wait(writes)  # even when a chunk failed: neither writes nor reads may outlive the mapping
        wait(populated)
    for position, write in zip(positions, writes, strict=True):
        stored[position] = (stored[position][0], write.result())
    return stored


def _populate(address: int, offset: int, length: int) -> None:
    """In the reader thread: the chunk at `offset` of the mapping at `address` read in and
    mapped (the mapping is private and writable only so ctypes can take its address)."""
    size = min(CHUNK_BYTES, length - offset)
    if _LIBC.madvise(address + offset, size, MADV_POPULATE_READ) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def _chunk_to_store(repository: Repository, chunk: memoryview) -> tuple[str | None, bool | None]:
    """The chunk's hash (None: zeros) and how to store it: None (nothing to store), True
    (compressed) or False (raw blocks)."""
    zeros = _ZEROS if len(chunk) == CHUNK_BYTES else _ZEROS[: len(chunk)]
    if zeros == chunk:  # bytearray first: it compares at memcmp's speed, a memoryview bytewise
        return None, None
    digest = _HASHES[MANIFEST_VERSION](chunk)
    if repository.has_chunk(digest):
        return digest, None
    return digest, _compresses(chunk)


def _write_chunk(
    repository: Repository, run: mmap.mmap, offset: int, size: int, digest: str, compress: bool
) -> int:
    """In the writer thread: the chunk into the repository, compressed or as raw blocks;
    the bytes it took."""
    with memoryview(run)[offset : offset + size] as chunk:
        pieces = [_WORKER.compressor.compress(chunk)] if compress else _raw_frame(chunk)
        try:
            return repository.put_chunk(digest, pieces)
        finally:
            del pieces  # its slices of the chunk go before the chunk's view is released


def _compresses(data: bytes | bytearray | memoryview) -> bool:
    """Whether zstd would shrink the chunk, judged from SAMPLES slices spread over it: on
    random data a full attempt costs as much as hashing, and its 4 MiB result is a fresh
    allocation and one more copy."""
    view = memoryview(data)
    step = max(SAMPLE_BYTES, len(view) // SAMPLES)
    slices = [view[start : start + SAMPLE_BYTES] for start in range(0, len(view), step)]
    compressed = sum(len(_WORKER.compressor.compress(piece)) for piece in slices)
    return compressed < COMPRESSED_AT_MOST * sum(len(piece) for piece in slices)


def _raw_frame(data: memoryview) -> list[bytes | memoryview]:
    """The chunk as one zstd frame of raw (stored) blocks: a frame header that gives the
    content size, then each block of at most 128 KiB behind its 3-byte header (RFC 8878,
    3.1.1). Any zstd decoder reads it back, and the data goes from the read buffer
    straight to the file."""
    pieces: list[bytes | memoryview] = [
        _ZSTD_MAGIC + _SINGLE_SEGMENT_4_BYTE_SIZE + len(data).to_bytes(4, "little")
    ]
    for start in range(0, len(data), _RAW_BLOCK_BYTES):
        block = data[start : start + _RAW_BLOCK_BYTES]
        last = start + len(block) == len(data)
        pieces += [(len(block) << 3 | last).to_bytes(3, "little"), block]
    return pieces


def _restore_run(
    repository: Repository, path: str, chunks: Sequence[tuple[int, str]], version: int
) -> list[None]:
    """In a worker: each chunk, checked against its hash, written at its place."""
    with open(path, "r+b") as target:
        for index, digest in chunks:
            data = zstandard.ZstdDecompressor().decompress(repository.get_chunk(digest))
            if _HASHES[version](data) != digest:
                raise CorruptChunk(f"chunk {index} ({digest}) is damaged in the backup repository")
            os.pwrite(target.fileno(), data, index * CHUNK_BYTES)
    return [None] * len(chunks)


def _runs(indexes: Sequence[int]) -> Iterator[list[int]]:
    """The sorted indexes cut into runs of consecutive ones, RUN_CHUNKS at most each."""
    run: list[int] = []
    for index in indexes:
        if run and (index != run[-1] + 1 or len(run) == RUN_CHUNKS):
            yield run
            run = []
        run.append(index)
    if run:
        yield run


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
    runs threads (a fork copies their locks). All are started here: the pool starts one
    only when a call finds none idle, so a backup after a small one would start its
    second worker halfway, and pay for it. Calls submitted at once each find none idle."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    wait([pool.submit(os.getpid) for _ in range(workers)])
    return pool


def _in_order(
    workers: int, calls: Iterable[tuple[Callable[..., list[Any]], tuple[Any, ...]]],
    total: int, progress: ProgressCallback,
) -> Iterator[Any]:  # fmt: skip
    """Run the calls (each over a run of chunks) on a pool, at most workers x
    IN_FLIGHT_PER_WORKER at a time; the chunks' results in order, reporting progress in
    chunks as they come."""
    window: deque[Future[Any]] = deque()
    done, reported = 0, time.monotonic()
    pool = _pool(workers)
    try:
        for function, arguments in calls:
            window.append(pool.submit(function, *arguments))
            while len(window) >= workers * IN_FLIGHT_PER_WORKER:
                results = window.popleft().result()
                yield from results
                done += len(results)
                if time.monotonic() - reported >= PROGRESS_EVERY_S:
                    progress(done, total)
                    reported = time.monotonic()
        while window:
            results = window.popleft().result()
            yield from results
            done += len(results)
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
        calls = ((_store_run, (repository, str(source), run)) for run in _runs(with_data))
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
    stored = {index: digest for index, digest in enumerate(chunks) if digest is not None}
    calls = (
        (_restore_run, (repository, str(target), [(i, stored[i]) for i in run], version))
        for run in _runs(sorted(stored))
    )
    for _ in _in_order(workers, calls, len(stored), progress):
        pass
