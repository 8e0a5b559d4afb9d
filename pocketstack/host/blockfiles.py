"""Files that back volumes: sparse, grown in place, cloned without copying holes.

Only the volume backends call these. A clone is a reflink where the file
system has them (XFS, btrfs: instant, shared blocks) and otherwise a copy of
the allocated blocks only, so a thin volume stays thin.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from pocketstack.host import commands

GIB = 1 << 30


def create_sparse(path: Path, size_gb: int) -> None:
    """A file of `size_gb` GiB that takes no space until written (kept if it exists)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        if os.fstat(handle.fileno()).st_size < size_gb * GIB:
            handle.truncate(size_gb * GIB)


def grow(path: Path, size_gb: int) -> None:
    """Grow the file to `size_gb` GiB; never shrinks it."""
    with path.open("r+b") as handle:
        if os.fstat(handle.fileno()).st_size < size_gb * GIB:
            handle.truncate(size_gb * GIB)


def clone(source: Path, target: Path, size_gb: int) -> None:
    """`target` holds `source`'s bytes, grown to `size_gb` GiB. Written under a temporary
    name first, so a crash never leaves a half-copied file under the final one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.part")
    commands.run(["cp", "--reflink=auto", "--sparse=always", str(source), str(partial)])
    grow(partial, size_gb)
    partial.replace(target)


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_name(f"{path.name}.part").unlink(missing_ok=True)


def write_image(source: Path, target: Path, disk_format: str | None, size_gb: int) -> None:
    """`target` (a volume of `size_gb` GiB) starts with the image's disk: qcow2 images are
    converted to raw by qemu-img, anything else is copied byte for byte, holes kept."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.part")
    if disk_format == "qcow2":
        commands.run(["qemu-img", "convert", "-O", "raw", str(source), str(partial)])
    else:
        commands.run(["cp", "--sparse=always", str(source), str(partial)])
    with partial.open("r+b") as handle:
        if os.fstat(handle.fileno()).st_size > size_gb * GIB:
            raise ValueError(f"the image's disk is larger than the volume's {size_gb} GiB")
        handle.truncate(size_gb * GIB)
    partial.replace(target)


MIRROR_CHUNK = 4 << 20


def read_chunks(path: Path, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The file's bytes in order, `chunk_size` at a time (holes read as zeros)."""
    with path.open("rb") as source:
        while chunk := source.read(chunk_size):
            yield chunk


def data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """(start, end) of the file's data; holes are skipped (SEEK_DATA/SEEK_HOLE)."""
    extents, offset = [], 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError:
            break  # no data after `offset`
        end = os.lseek(fd, start, os.SEEK_HOLE)
        extents.append((start, end))
        offset = end
    return extents


def mirror(source: Path, target: Path) -> int:
    """Make `target` hold `source`'s bytes, writing only the chunks that differ (holes in
    `source` are not read); the bytes written. Both files stay sparse."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch(exist_ok=True)
    written = 0
    with source.open("rb") as src, target.open("r+b") as dst:
        size = os.fstat(src.fileno()).st_size
        if os.fstat(dst.fileno()).st_size != size:
            dst.truncate(size)
        for start, end in data_extents(src.fileno(), size):
            for offset in range(start - start % MIRROR_CHUNK, end, MIRROR_CHUNK):
                wanted = os.pread(src.fileno(), MIRROR_CHUNK, offset)
                if os.pread(dst.fileno(), len(wanted), offset) != wanted:
                    os.pwrite(dst.fileno(), wanted, offset)
                    written += len(wanted)
    return written
