"""The volume agent: does the backend work each volume's and snapshot's status asks for.

Level-based, as DESIGN.md's reconcile loops: a pass reads every row in a
working status (`creating`, `extending`, `deleting`, `reverting`; snapshots
`creating`, `deleting`), runs the backend call, which is idempotent, and
records the outcome. A pass runs when the service wakes the agent after a
write and every RESYNC_S anyway, so work cut off by a crash or a kill is done
after the restart.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from pocketstack.core import errors
from pocketstack.core.runtime import Runtime
from pocketstack.host import blockfiles, qemu
from pocketstack.host.commands import HostCommandError
from pocketstack.image import service as image_service
from pocketstack.volume import backup_engine, backups, groups
from pocketstack.volume import service as volume_service
from pocketstack.volume.drivers import Backend, BackendError
from pocketstack.volume.drivers import fake as fake_backend
from pocketstack.volume.drivers import file as file_backend
from pocketstack.volume.drivers.repository import DirectoryRepository, Repository

LOG = logging.getLogger(__name__)
RESYNC_S = 10.0
REPLICATE_EVERY_S = 2.0  # how far a replica may lag, while there are replicated volumes


def _image(runtime: Runtime, image_id: str) -> tuple[Path, str | None]:
    """The image's bytes on this host and its disk format."""
    try:
        view, path = image_service.active_file(runtime, image_id)
    except (errors.NotFound, errors.Conflict) as exc:
        raise BackendError(exc.message) from exc
    return path, view.row.disk_format


def _upload(runtime: Runtime, backend: Backend, volume_id: str, image_id: str) -> None:
    """The volume's bytes into its image (converted with qemu-img for qcow2), as the image's
    owner; an image that cannot be filled is deleted, not left queued."""
    ctx = runtime.service_context(None)
    try:
        view = image_service.get_image(ctx, image_id)
    except errors.NotFound as exc:
        raise BackendError(f"image {image_id} to upload to is gone") from exc
    source = backend.volume_file(volume_id)
    owner_ctx = runtime.service_context(view.row.owner)
    try:
        scratch = source.parent if source else None
        with tempfile.TemporaryDirectory(prefix="upload-", dir=scratch) as tmp:
            data: Iterable[bytes] = ()
            if source is not None and view.row.disk_format == "qcow2":
                converted = Path(tmp) / "image.qcow2"
                qemu.convert(source, converted, force_share=True)
                data = qemu.read_chunks(converted)
            elif source is not None:
                data = blockfiles.read_chunks(source)
            image_service.store_data(owner_ctx, image_id, data)
    except (errors.PocketstackError, HostCommandError, OSError) as exc:
        with contextlib.suppress(errors.PocketstackError):
            image_service.delete_image(ctx, image_id)
        raise BackendError(f"uploading volume {volume_id} to image {image_id}: {exc}") from exc


def run(runtime: Runtime, backend: Backend, job: volume_service.Job) -> None:
    """The backend call that does `job`."""
    volume_id = job.volume_id or ""
    if job.kind == "create":
        if job.image_id:
            path, disk_format = _image(runtime, job.image_id)
            backend.create_from_image(volume_id, path, disk_format, job.size)
        elif job.snapshot_id:
            backend.create_from_snapshot(volume_id, job.snapshot_id, job.size)
        elif job.source_volid:
            backend.create_from_volume(volume_id, job.source_volid, job.size)
        else:
            backend.create(volume_id, job.size)
    elif job.kind == "extend":
        backend.extend(volume_id, job.size)
    elif job.kind == "delete":
        backend.delete(volume_id)
    elif job.kind == "revert":
        if job.snapshot_id is None:
            raise BackendError("no snapshot of this volume is being restored")
        backend.revert(volume_id, job.snapshot_id)
    elif job.kind == "upload":
        _upload(runtime, backend, volume_id, job.image_id or "")
    elif job.kind == "snapshot":
        backend.snapshot(job.snapshot_id or "", volume_id)
    elif job.kind == "delete_snapshot":
        backend.delete_snapshot(job.snapshot_id or "")


def _temporary_snapshot(backup_id: str) -> str:
    return f"backup-{backup_id}"


class BackupWorker:
    """Backups and restores, on their own thread: one can take minutes, and volumes keep
    being made meanwhile. Chunks are read, hashed and compressed by `workers` processes."""

    def __init__(
        self, runtime: Runtime, backend: Backend, repository: Repository, workers: int
    ) -> None:
        self.runtime = runtime
        self.backend = backend
        self.repository = repository
        self.workers = workers

    def _progress(self, job: backups.BackupJob) -> backup_engine.ProgressCallback:
        def report(done: int, total: int) -> None:
            LOG.info("backup %s: %s %d of %d chunks (%d%%)", job.backup_id, job.kind, done,
                     total, 100 * done // max(total, 1))  # fmt: skip
            backups.record_progress(self.runtime, job.backup_id, done)

        return report

    def _back_up(self, job: backups.BackupJob) -> int:
        snapshot_id = job.snapshot_id
        if job.temporary_snapshot:
            snapshot_id = _temporary_snapshot(job.backup_id)
            self.backend.snapshot(snapshot_id, job.volume_id)
        try:
            source = (self.backend.snapshot_file(snapshot_id) if snapshot_id
                      else self.backend.volume_file(job.volume_id))  # fmt: skip
            result = backup_engine.back_up(
                source, job.size * blockfiles.GIB, self.repository, self.workers,
                self._progress(job), job.parent_id,
            )  # fmt: skip
            self.repository.put_manifest(job.backup_id, result.manifest)
        finally:
            if job.temporary_snapshot and snapshot_id:
                self.backend.delete_snapshot(snapshot_id)
        LOG.info("backup %s stored %d bytes for %d chunks", job.backup_id,
                 result.stored_bytes, result.chunks)  # fmt: skip
        return result.chunks

    def _restore(self, job: backups.BackupJob) -> None:
        manifest = self.repository.get_manifest(job.backup_id)
        if manifest is None:
            raise BackendError(f"backup {job.backup_id} has no manifest in the repository")
        target_id = job.restore_volume_id or ""
        if target_id not in self.backend.volumes():
            self.backend.create(target_id, job.size)
        backup_engine.restore(
            manifest, self.repository, self.backend.volume_file(target_id), self.workers,
            self._progress(job),
        )  # fmt: skip

    def reconcile(self) -> None:
        for job in backups.pending_jobs(self.runtime):
            failure, chunks = None, 0
            try:
                if job.kind == "backup":
                    chunks = self._back_up(job)
                elif job.kind == "restore":
                    self._restore(job)
                else:
                    self.repository.delete_manifest(job.backup_id)
                    self.repository.collect_garbage()
            except (BackendError, OSError, backup_engine.CorruptChunk, BrokenProcessPool) as exc:
                failure = str(exc)
                LOG.warning("backup job %s of %s failed: %s", job.kind, job.backup_id, exc)
            backups.finish_job(self.runtime, job, failure, chunks)


class VolumeAgent:
    def __init__(self, runtime: Runtime, backend: Backend, backup_worker: BackupWorker) -> None:
        self.runtime = runtime
        self.backend = backend
        self.backup_worker = backup_worker
        self._site: str | None = None  # the backend's active site, as last recorded
        self.wake = threading.Event()
        self._backups_wake = threading.Event()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name="volume-agent", daemon=True),
            threading.Thread(target=self._run_backups, name="volume-backups", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def wake_all(self) -> None:
        self.wake.set()
        self._backups_wake.set()

    def stop(self) -> None:
        self._stop.set()
        self.wake_all()
        for thread in self._threads:
            thread.join(timeout=30)

    def follow_site(self) -> None:
        """Record a failover or failback (made on disk by the CLI) once, when it is seen."""
        site = self.backend.active_site()
        if site != self._site:
            volume_service.follow_active_site(self.runtime, site)
            self._site = site

    def replicate(self) -> bool:
        """Mirror every replicated volume to the secondary site (changed chunks only);
        whether there was any."""
        replicated = volume_service.replicated_volumes(self.runtime)
        for volume_id in replicated:
            try:
                self.backend.replicate(volume_id)
            except OSError as exc:
                LOG.warning("replicating volume %s failed: %s", volume_id, exc)
        return bool(replicated)

    def reconcile(self) -> None:
        for job in volume_service.pending_jobs(self.runtime):
            failure = None
            try:
                run(self.runtime, self.backend, job)
            except (BackendError, OSError) as exc:
                failure = str(exc)
                LOG.warning("volume job %s of %s failed: %s", job.kind, job.volume_id, exc)
            volume_service.finish_job(self.runtime, job, failure)
        groups.settle(self.runtime)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.wake.clear()
            replicating = False
            try:
                self.follow_site()
                self.reconcile()
                replicating = self.replicate()
            except Exception:
                LOG.exception("volume agent pass failed; trying again")
            self.wake.wait(REPLICATE_EVERY_S if replicating else RESYNC_S)

    def _run_backups(self) -> None:
        while not self._stop.is_set():
            self._backups_wake.clear()
            try:
                self.backup_worker.reconcile()
            except Exception:
                LOG.exception("volume backup pass failed; trying again")
            self._backups_wake.wait(RESYNC_S)


def choose_backend(runtime: Runtime) -> Backend:
    if runtime.settings.volume_driver == "fake":
        return fake_backend.FakeBackend()
    return file_backend_of(Path(runtime.settings.state_dir))


def file_backend_of(state_dir: Path) -> file_backend.FileBackend:
    """The file backend of a state dir: its primary and secondary (replica) sites."""
    folder = state_dir / "volume"
    return file_backend.FileBackend(folder / "file", folder / "file-replica")


def install(runtime: Runtime) -> None:
    """The backend of this process, which attachments ask for connection details even
    when no agent runs (API-only tests)."""
    backend = choose_backend(runtime)
    runtime.state[volume_service.BACKEND_KEY] = backend


def start(runtime: Runtime) -> Callable[[], None]:
    """Run this process's volume agent; returns what stops it."""
    backend = runtime.state[volume_service.BACKEND_KEY]
    repository = DirectoryRepository(Path(runtime.settings.state_dir) / "volume" / "backups")
    worker = BackupWorker(runtime, backend, repository, backup_engine.default_workers())
    agent = VolumeAgent(runtime, backend, worker)
    runtime.state[volume_service.WAKE_KEY] = agent.wake_all
    agent.start()

    def stop() -> None:
        agent.stop()
        runtime.state.pop(volume_service.WAKE_KEY, None)

    return stop
