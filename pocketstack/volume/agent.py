"""The volume agent: does the backend work each volume's and snapshot's status asks for.

Level-based, as DESIGN.md's reconcile loops: a pass reads every row in a
working status (`creating`, `extending`, `deleting`, `reverting`; snapshots
`creating`, `deleting`), runs the backend call, which is idempotent, and
records the outcome. A pass runs when the service wakes the agent after a
write and every RESYNC_S anyway, so work cut off by a crash or a kill is done
after the restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from pocketstack.core import errors
from pocketstack.core.runtime import Runtime
from pocketstack.image import service as image_service
from pocketstack.volume import service as volume_service
from pocketstack.volume.drivers import Backend, BackendError
from pocketstack.volume.drivers import fake as fake_backend
from pocketstack.volume.drivers import file as file_backend

LOG = logging.getLogger(__name__)
RESYNC_S = 10.0


def _image(runtime: Runtime, image_id: str) -> tuple[Path, str | None]:
    """The image's bytes on this host and its disk format."""
    try:
        view, path = image_service.active_file(runtime, image_id)
    except (errors.NotFound, errors.Conflict) as exc:
        raise BackendError(exc.message) from exc
    return path, view.row.disk_format


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
    elif job.kind == "snapshot":
        backend.snapshot(job.snapshot_id or "", volume_id)
    elif job.kind == "delete_snapshot":
        backend.delete_snapshot(job.snapshot_id or "")


class VolumeAgent:
    def __init__(self, runtime: Runtime, backend: Backend) -> None:
        self.runtime = runtime
        self.backend = backend
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="volume-agent", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout=30)

    def reconcile(self) -> None:
        for job in volume_service.pending_jobs(self.runtime):
            failure = None
            try:
                run(self.runtime, self.backend, job)
            except (BackendError, OSError) as exc:
                failure = str(exc)
                LOG.warning("volume job %s of %s failed: %s", job.kind, job.volume_id, exc)
            volume_service.finish_job(self.runtime, job, failure)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.wake.clear()
            try:
                self.reconcile()
            except Exception:
                LOG.exception("volume agent pass failed; trying again")
            self.wake.wait(RESYNC_S)


def choose_backend(runtime: Runtime) -> Backend:
    if runtime.settings.volume_driver == "fake":
        return fake_backend.FakeBackend()
    return file_backend.FileBackend(Path(runtime.settings.state_dir) / "volume" / "file")


def install(runtime: Runtime) -> None:
    """The backend of this process, which attachments ask for connection details even
    when no agent runs (API-only tests)."""
    backend = choose_backend(runtime)
    runtime.state[volume_service.BACKEND_KEY] = backend


def start(runtime: Runtime) -> Callable[[], None]:
    """Run this process's volume agent; returns what stops it."""
    agent = VolumeAgent(runtime, runtime.state[volume_service.BACKEND_KEY])
    runtime.state[volume_service.WAKE_KEY] = agent.wake.set
    agent.start()

    def stop() -> None:
        agent.stop()
        runtime.state.pop(volume_service.WAKE_KEY, None)

    return stop
