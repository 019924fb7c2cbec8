"""Online snapshots and restore: one at a time, checksummed, verified before anything is swapped.

The steps and their guarantees are in ``vecstore.storage.snapshots``; this layer validates ids,
checks free space, keeps snapshot and restore from overlapping, turns storage failures into the
error family, and pauses the key-usage writer while the database files are replaced.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from vecstore import __version__
from vecstore.errors import Conflict, InsufficientStorage, NotFound
from vecstore.services.keys import KeyService
from vecstore.storage import snapshots as disk
from vecstore.storage.engine import StorageEngine

log = logging.getLogger("vecstore.snapshots")
# Free space kept beyond a snapshot's estimated size, so that a snapshot never fills the disk
# the database itself writes to.
_HEADROOM_BYTES = 64 * 1024 * 1024


class SnapshotNotFound(NotFound):
    type = "snapshot_not_found"


class SnapshotCorrupt(Conflict):
    type = "snapshot_corrupt"


@dataclass(frozen=True, slots=True)
class RestoreResult:
    manifest: disk.Manifest
    previous_data: Path


class SnapshotService:
    def __init__(self, engine: StorageEngine, keys: KeyService, root: Path) -> None:
        self.engine = engine
        self.keys = keys
        self.store = disk.SnapshotStore(root)
        self._busy = threading.Lock()

    def _claim(self, doing: str) -> None:
        if not self._busy.acquire(blocking=False):
            raise Conflict(
                f"cannot {doing} now: another snapshot or restore is running; retry when it ends",
                type_="snapshot_in_progress",
            )

    def _manifest(self, snapshot_id: str) -> disk.Manifest:
        if not self.store.exists(snapshot_id):
            raise SnapshotNotFound(f"no snapshot '{snapshot_id}'")
        try:
            return self.store.manifest(snapshot_id)
        except disk.SnapshotError as exc:
            raise SnapshotCorrupt(str(exc)) from exc

    def list(self) -> list[disk.Manifest]:
        return self.store.list()

    def get(self, snapshot_id: str) -> disk.Manifest:
        return self._manifest(snapshot_id)

    def verify(self, snapshot_id: str) -> disk.Manifest:
        manifest = self._manifest(snapshot_id)
        try:
            disk.verify_files(self.store.path_of(snapshot_id), manifest)
            disk.check_sqlite(self.store.path_of(snapshot_id) / disk.DB_FILE)
        except disk.SnapshotError as exc:
            raise SnapshotCorrupt(str(exc)) from exc
        return manifest

    def delete(self, snapshot_id: str) -> None:
        self._manifest(snapshot_id)
        self._claim("delete a snapshot")
        try:
            self.store.delete(snapshot_id)
        finally:
            self._busy.release()

    # -- snapshot ---------------------------------------------------------------------------------
    def create(self) -> disk.Manifest:
        self._claim("take a snapshot")
        try:
            return self._create()
        finally:
            self._busy.release()

    def _create(self) -> disk.Manifest:
        db_path = self.engine.snapshot_path()
        index_bytes = sum(
            f.stat().st_size for f in self.engine.config.index_dir.glob("*.faiss") if f.is_file()
        )
        self._check_space(self.store.root, db_path.stat().st_size + index_bytes, "snapshot")
        snapshot_id = disk.new_id()
        partial = self.store.begin(snapshot_id)
        try:
            checkpoints = self.engine.snapshot_into(partial)
            revision = disk.check_sqlite(partial / disk.DB_FILE)
            collections = disk.collections_in(partial / disk.DB_FILE, checkpoints)
            files = disk.describe_files(
                partial, [disk.DB_FILE, *(c.checkpoint for c in collections if c.checkpoint)]
            )
            manifest = disk.Manifest(
                format=disk.FORMAT,
                id=snapshot_id,
                created_at=datetime.now(UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
                vecstore_version=__version__,
                schema_revision=revision,
                collections=collections,
                files=files,
            )
            self.store.commit(partial, manifest)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        log.info(
            "snapshot %s taken: %d collections, %d bytes",
            snapshot_id,
            len(manifest.collections),
            manifest.size_bytes,
        )
        return manifest

    @staticmethod
    def _check_space(where: Path, needed: int, doing: str) -> None:
        where.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(where).free
        if free < needed + _HEADROOM_BYTES:
            raise InsufficientStorage(
                f"a {doing} needs about {needed} bytes plus {_HEADROOM_BYTES} spare, and"
                f" {where} has {free} free; delete old snapshots or free space"
            )

    # -- restore ----------------------------------------------------------------------------------
    def restore(self, snapshot_id: str) -> RestoreResult:
        manifest = self._manifest(snapshot_id)
        self._claim("restore")
        try:
            db_path = self.engine.snapshot_path()
            data_dir = db_path.parent
            self._check_space(data_dir, manifest.size_bytes, "restore")
            try:
                # Verified twice: the snapshot, then the staged copies. Until here nothing of
                # the running data was touched, so a failure leaves it as it was.
                staging = disk.stage(self.store.path_of(snapshot_id), manifest, data_dir)
            except disk.SnapshotError as exc:
                raise SnapshotCorrupt(f"{exc}; nothing was restored") from exc
            with self.keys.replacing_database():
                previous = self.engine.restore_from(staging)
        finally:
            self._busy.release()
        log.warning("restored snapshot %s; the replaced data is in %s", snapshot_id, previous)
        return RestoreResult(manifest, previous)
