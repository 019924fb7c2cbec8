"""Snapshots on disk: a directory per snapshot holding a SQLite backup, index checkpoints and a
manifest with every file's size and sha256; and the staged, journalled swap that restores one.

Layout of ``<snapshot_dir>/<id>/``::

    manifest.json          format, id, time, version, schema revision, collections, files
    vecstore.db            SQLite online backup (one step: a consistent read, writers go on)
    indexes/collection-N.faiss   the collections' checkpoints, as the engine writes them

A snapshot is built in ``.partial-<id>/`` and renamed into place once its manifest is durable,
so a listed snapshot is always complete. Restore copies a snapshot into a staging directory
inside the data directory, verifies the copies (checksums, SQLite ``integrity_check``), and only
then swaps: a journal names the staged and the set-aside directories before the first rename,
so a crash mid-swap is rolled forward at the next start. The data it replaces is kept in
``pre-restore-<time>/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("vecstore.snapshots")

FORMAT = 1
MANIFEST = "manifest.json"
DB_FILE = "vecstore.db"
INDEX_DIR = "indexes"
JOURNAL = "restore-journal.json"
_ID = re.compile(r"^snap-\d{8}T\d{6}Z-[0-9a-f]{8}$")
# The only files a snapshot holds. A manifest is data read from disk: a path in it that is not
# one of these (``../``, absolute, anything else) would make a restore copy outside staging.
_FILE = re.compile(r"^(vecstore\.db|indexes/collection-[1-9][0-9]{0,18}\.faiss)$")
_CHUNK = 1 << 20


class SnapshotError(Exception):
    """A snapshot that is missing, incomplete or does not match its manifest."""


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    path: str  # relative, with "/"
    bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class SnapshotCollection:
    id: int
    name: str
    dim: int
    vector_count: int
    checkpoint: str | None  # relative path of its index file, None: rebuilt from rows
    checkpoint_seq: int | None


@dataclass(frozen=True, slots=True)
class Manifest:
    format: int
    id: str
    created_at: str
    vecstore_version: str
    schema_revision: str | None
    collections: list[SnapshotCollection]
    files: list[SnapshotFile]

    @property
    def size_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        data: dict[str, Any] = json.loads(raw)
        if data.get("format") != FORMAT:
            raise SnapshotError(f"unknown snapshot format {data.get('format')!r}")
        for f in data["files"]:
            if not isinstance(f.get("path"), str) or not _FILE.fullmatch(f["path"]):
                raise SnapshotError(f"manifest names a file a snapshot cannot hold: {f['path']!r}")
        for c in data["collections"]:
            checkpoint = c.get("checkpoint")
            if checkpoint is not None and not _FILE.fullmatch(str(checkpoint)):
                raise SnapshotError(f"manifest names a checkpoint outside indexes/: {checkpoint!r}")
        return cls(
            format=FORMAT,
            id=str(data["id"]),
            created_at=str(data["created_at"]),
            vecstore_version=str(data["vecstore_version"]),
            schema_revision=data.get("schema_revision"),
            collections=[SnapshotCollection(**c) for c in data["collections"]],
            files=[SnapshotFile(**f) for f in data["files"]],
        )


def valid_id(snapshot_id: str) -> bool:
    """Ids are checked before they touch a path: only the server's own id shape passes."""
    return bool(_ID.fullmatch(snapshot_id))


def new_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"snap-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


# -- files -----------------------------------------------------------------------------------------
def sha256_of(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def fsync_file(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_durably(src: Path, dst: Path) -> None:
    """Copy ``src`` (opened once: a checkpoint renamed over meanwhile is still read whole)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fin, dst.open("wb") as fout:
        shutil.copyfileobj(fin, fout, _CHUNK)
        fout.flush()
        os.fsync(fout.fileno())


def sqlite_backup(source: Path, target: Path) -> None:
    """SQLite's online backup in one step: one read transaction over a consistent state; in
    WAL mode writers are not blocked meanwhile."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
        # The copy is a self-contained file: no WAL beside it.
        dst.execute("PRAGMA journal_mode=DELETE")
    fsync_file(target)


def check_sqlite(path: Path) -> str | None:
    """``integrity_check`` must pass; returns the Alembic revision the database is at."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            result = conn.execute("PRAGMA integrity_check").fetchall()
            if result != [("ok",)]:
                raise SnapshotError(f"the snapshot's database fails integrity_check: {result[:3]}")
            try:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            except sqlite3.DatabaseError:
                return None
    except sqlite3.DatabaseError as exc:
        raise SnapshotError(f"the snapshot's database cannot be read: {exc}") from exc
    return str(row[0]) if row else None


def collections_in(
    db_file: Path, checkpoints: dict[int, tuple[str, int]]
) -> list[SnapshotCollection]:
    """What the copied database holds (not what the engine held a moment before), joined with
    the checkpoints copied beside it (collection id -> relative path, ``seq``)."""
    with closing(sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT c.id, c.name, c.dim, (SELECT count(*) FROM records r"
            " WHERE r.collection_id = c.id) FROM collections c ORDER BY c.id"
        ).fetchall()
    out = []
    for cid, name, dim, count in rows:
        relative, seq = checkpoints.get(cid, (None, None))
        out.append(SnapshotCollection(int(cid), str(name), int(dim), int(count), relative, seq))
    return out


def describe_files(root: Path, relative: Iterable[str]) -> list[SnapshotFile]:
    out = []
    for rel in sorted(relative):
        size, digest = sha256_of(root / rel)
        out.append(SnapshotFile(rel, size, digest))
    return out


def verify_files(root: Path, manifest: Manifest) -> None:
    """Every file the manifest lists is there with its size and sha256; nothing else is."""
    for f in manifest.files:
        path = root / f.path
        if not path.is_file():
            raise SnapshotError(f"snapshot {manifest.id}: file {f.path} is missing")
        size, digest = sha256_of(path)
        if size != f.bytes or digest != f.sha256:
            raise SnapshotError(
                f"snapshot {manifest.id}: file {f.path} does not match its checksum"
            )


# -- the snapshot directory ------------------------------------------------------------------------
class SnapshotStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, snapshot_id: str) -> Path:
        if not valid_id(snapshot_id):
            raise SnapshotError(f"'{snapshot_id}' is not a snapshot id")
        return self.root / snapshot_id

    def begin(self, snapshot_id: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        self.remove_partial()
        partial = self.root / f".partial-{snapshot_id}"
        partial.mkdir()
        return partial

    def commit(self, partial: Path, manifest: Manifest) -> Path:
        (partial / MANIFEST).write_bytes(manifest.to_json())
        fsync_file(partial / MANIFEST)
        for sub in (partial / INDEX_DIR, partial):
            if sub.is_dir():
                fsync_dir(sub)
        final = self.path_of(manifest.id)
        os.rename(partial, final)
        fsync_dir(self.root)
        return final

    def remove_partial(self) -> None:
        """Leftovers of a snapshot that a crash interrupted are never listed; remove them."""
        if self.root.is_dir():
            for leftover in self.root.glob(".partial-*"):
                shutil.rmtree(leftover, ignore_errors=True)

    def manifest(self, snapshot_id: str) -> Manifest:
        path = self.path_of(snapshot_id) / MANIFEST
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise SnapshotError(f"no snapshot '{snapshot_id}'") from None
        try:
            manifest = Manifest.from_json(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise SnapshotError(f"snapshot {snapshot_id}: unreadable manifest ({exc})") from exc
        if manifest.id != snapshot_id:
            raise SnapshotError(f"snapshot {snapshot_id}: its manifest names {manifest.id}")
        return manifest

    def list(self) -> list[Manifest]:
        if not self.root.is_dir():
            return []
        found = []
        for entry in sorted(self.root.iterdir()):
            if entry.is_dir() and valid_id(entry.name):
                try:
                    found.append(self.manifest(entry.name))
                except SnapshotError as exc:
                    log.warning("%s", exc)
        return found

    def exists(self, snapshot_id: str) -> bool:
        return valid_id(snapshot_id) and (self.root / snapshot_id / MANIFEST).is_file()

    def delete(self, snapshot_id: str) -> None:
        shutil.rmtree(self.path_of(snapshot_id))


# -- restore ---------------------------------------------------------------------------------------
def stage(snapshot: Path, manifest: Manifest, data_dir: Path) -> Path:
    """Copy a verified snapshot into ``data_dir/.restore-staging``, and verify the copies
    (what will be swapped in is what was checked). Nothing in the running data is touched."""
    verify_files(snapshot, manifest)
    staging = data_dir / ".restore-staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / INDEX_DIR).mkdir()
    try:
        for f in manifest.files:
            copy_durably(snapshot / f.path, staging / f.path)
        verify_files(staging, manifest)
        check_sqlite(staging / DB_FILE)
        fsync_dir(staging / INDEX_DIR)
        fsync_dir(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def swap_in(data_dir: Path, staging: Path, index_dir: Path) -> Path:
    """Replace the database and index files by the staged ones; returns where the previous ones
    went. Call with every database connection closed."""
    if not (staging / DB_FILE).is_file():
        raise SnapshotError(f"nothing is staged in {staging}; nothing was restored")
    aside = data_dir / f"pre-restore-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
    journal = data_dir / JOURNAL
    journal.write_text(json.dumps({"staging": staging.name, "aside": aside.name}))
    fsync_file(journal)
    fsync_dir(data_dir)
    _roll_forward(data_dir, staging, aside, index_dir)
    return aside


def recover(data_dir: Path, index_dir: Path) -> bool:
    """At start: finish a restore that a crash interrupted (the staged copy was verified before
    the journal was written, so rolling forward is always possible). True if one was finished."""
    journal = data_dir / JOURNAL
    if not journal.is_file():
        shutil.rmtree(data_dir / ".restore-staging", ignore_errors=True)  # never swapped in
        return False
    names = json.loads(journal.read_text())
    log.warning("finishing a restore that was interrupted (journal %s)", journal)
    _roll_forward(data_dir, data_dir / names["staging"], data_dir / names["aside"], index_dir)
    return True


def _roll_forward(data_dir: Path, staging: Path, aside: Path, index_dir: Path) -> None:
    """Each step is a rename and checks whether it already happened: safe to run again."""
    aside.mkdir(exist_ok=True)
    # What is still in staging has not been swapped in: the live counterpart is the old one.
    if (staging / INDEX_DIR).exists():
        if index_dir.exists():
            os.replace(index_dir, aside / INDEX_DIR)
        os.replace(staging / INDEX_DIR, index_dir)
        fsync_dir(data_dir)
    if (staging / DB_FILE).exists():
        for name in (DB_FILE, f"{DB_FILE}-wal", f"{DB_FILE}-shm", f"{DB_FILE}-journal"):
            if (data_dir / name).exists():
                os.replace(data_dir / name, aside / name)
        os.replace(staging / DB_FILE, data_dir / DB_FILE)
        fsync_dir(data_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    (data_dir / JOURNAL).unlink(missing_ok=True)
    fsync_dir(data_dir)
