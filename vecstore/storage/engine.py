"""The storage engine: the catalog database (the truth) plus one live runtime per collection.

Writes go through one writer lock (SQLite has one writer anyway): a transaction writes the rows
and appends to ``changes``, commits, and only then is the in-memory state updated — so an
acknowledged write is durable and immediately searchable. A background thread moves fresh
vectors into FAISS, writes checkpoints and compacts indexes with many tombstones.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import sqlalchemy as sa

from vecstore import deadlines
from vecstore.domain import (
    UNSET,
    CollectionInfo,
    CollectionStats,
    FloatArray,
    Hit,
    IndexParams,
    Record,
    RecordWrite,
    Unset,
)
from vecstore.errors import BadRequest, CollectionNotFound, Conflict, NotReady
from vecstore.storage import huge_pages, snapshots, text_index
from vecstore.storage import schema as t
from vecstore.storage.collection import CollectionRuntime
from vecstore.storage.database import create_engine, migrate
from vecstore.storage.filters import Node, compile_sqlite
from vecstore.storage.heap import release_free_memory
from vecstore.storage.inserts import insert_rows, placeholder
from vecstore.storage.vector_index import CheckpointError, VectorIndex

log = logging.getLogger("vecstore.storage")

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode
_IN_CHUNK = 500
_SQLITE_AUTOCHECKPOINT_PAGES = 1000  # SQLite's default
_WAL_CHECKPOINT_ROWS = 1000
_WAL_BOUND_FRAMES = 16384  # 64 MiB of 4 KiB pages


def _with_vectors() -> Any:
    return t.records.join(
        t.record_vectors,
        sa.and_(
            t.record_vectors.c.collection_id == t.records.c.collection_id,
            t.record_vectors.c.internal_id == t.records.c.internal_id,
        ),
    )


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    database_url: str
    index_dir: Path
    sqlite_synchronous: str = "FULL"
    sqlite_cache_mb: int = 8
    indexer_interval_s: float = 0.2
    indexer_batch_size: int = 512
    checkpoint_every_changes: int = 20000
    checkpoint_idle_s: float = 5.0
    compaction_threshold: float = 0.2
    exact_filter_max_matches: int = 20000
    indexer_defer_s: float = 1.0
    indexer_fresh_max: int = 50000
    index_huge_pages: bool = True


@dataclass(frozen=True, slots=True)
class WriteResult:
    statuses: list[str]
    inserted: int
    updated: int


class StorageEngine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.db = create_engine(
            config.database_url,
            sqlite_synchronous=config.sqlite_synchronous,
            sqlite_cache_mb=config.sqlite_cache_mb,
        )
        self._write_lock = threading.Lock()
        # Upserts checkpoint the WAL outside the writer lock (see "durable upserts").
        self._wal_lock = threading.Lock()
        self._rows_since_wal_checkpoint = 0
        self._wal_checkpoint_in_commit = False
        self._runtimes: dict[str, CollectionRuntime] = {}
        self._broken: dict[str, str] = {}
        self._stop = threading.Event()
        self._indexer: threading.Thread | None = None
        self.ready = False
        self.index_rebuilds = 0

    # -- lifecycle ------------------------------------------------------------------------------
    def open(self, *, start_indexer: bool = True) -> None:
        db_path = self.sqlite_path
        if db_path is not None:
            # A restore that a crash cut off mid-swap is finished before anything is read.
            snapshots.recover(db_path.parent, self.config.index_dir)
        self.config.index_dir.mkdir(parents=True, exist_ok=True)
        migrate(self.db)
        with self.db.connect() as conn:
            rows = conn.execute(sa.select(t.collections).order_by(t.collections.c.id)).all()
        for row in rows:
            try:
                self._runtimes[row.name] = self._load_runtime(row)
            except Exception as exc:  # one bad collection never stops the server
                log.exception("collection %s failed to load", row.name)
                self._broken[row.name] = f"{type(exc).__name__}: {exc}"
        # Loading read every vector into the row tables, then freed those the checkpoints hold.
        release_free_memory()
        self.ready = True
        if start_indexer:
            self._indexer = threading.Thread(
                target=self._indexer_loop, name="vecstore-indexer", daemon=True
            )
            self._indexer.start()

    def close(self) -> None:
        self._stop.set()
        if self._indexer is not None:
            self._indexer.join(timeout=60)
        for runtime in list(self._runtimes.values()):
            try:
                # The mutex: an indexer round still running past the join must not write the
                # same file at the same time.
                with runtime.indexer_mutex:
                    self._checkpoint(runtime)
            except Exception:
                log.exception("checkpoint of %s failed at shutdown", runtime.name)
        self.db.dispose()

    @functools.cached_property
    def sqlite_path(self) -> Path | None:
        """The catalog's file when it is an SQLite file, else None."""
        url = self.db.url
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return Path(str(url.database))

    # -- durable upserts ------------------------------------------------------------------------
    # With synchronous=FULL SQLite fsyncs the WAL inside every commit, so the writer lock was
    # held through each fsync (a quarter of a bulk ingest's time: docs/benchmarks.md). Upserts
    # instead commit with synchronous=NORMAL (the frames are written, not synced) and fsync the
    # WAL after leaving the lock, before the answer is sent: the next writer's transaction
    # overlaps this one's fsync, and one fsync covers every commit written before it. An
    # acknowledged upsert is as durable as under FULL: its frames are in the WAL on disk, or a
    # checkpoint (which syncs the WAL first and the database after) has moved them into the
    # database file. A reader may see such a write a few milliseconds before it is durable.
    #
    # Checkpoints move the same way. SQLite's automatic checkpoint runs inside the commit that
    # takes the WAL past 1,000 pages (copying them into the database file and fsyncing it), so
    # every other bulk commit held the lock through one: ~20 % of the engine's time on a bulk
    # ingest. Upsert commits skip it; after leaving the lock, once about
    # _WAL_CHECKPOINT_ROWS rows were written since the last one, the upsert runs a PASSIVE
    # checkpoint, which never blocks writers. Under continuous writes such checkpoints may never
    # catch up with the WAL's end, and the WAL is reused from its start only when one has; so
    # once a checkpoint reports more than _WAL_BOUND_FRAMES frames, upserts let SQLite
    # checkpoint inside their commit again until the WAL is back under the bound.
    def _defers_sync(self) -> bool:
        return self.sqlite_path is not None and self.config.sqlite_synchronous.upper() == "FULL"

    @contextlib.contextmanager
    def _upsert_transaction(self) -> Iterator[sa.Connection]:
        if self.sqlite_path is None:
            with self.db.begin() as conn:
                yield conn
            return
        defer_sync = self._defers_sync()
        defer_checkpoint = not self._wal_checkpoint_in_commit
        with self.db.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            # Outside a transaction: pysqlite begins one only before the first write.
            if defer_sync:
                raw.execute("PRAGMA synchronous=NORMAL")
            if defer_checkpoint:
                raw.execute("PRAGMA wal_autocheckpoint=0")
            try:
                with conn.begin():
                    yield conn
            finally:
                try:
                    if defer_sync:
                        raw.execute("PRAGMA synchronous=FULL")
                    if defer_checkpoint:
                        raw.execute(f"PRAGMA wal_autocheckpoint={_SQLITE_AUTOCHECKPOINT_PAGES}")
                except Exception:
                    conn.invalidate()  # never hand a connection set otherwise back to the pool
                    raise

    def _sync_wal(self) -> None:
        """fsync the WAL (caller has committed and released the writer lock)."""
        db_path = self.sqlite_path
        if db_path is None or not self._defers_sync():
            return
        try:
            fd = os.open(f"{db_path}-wal", os.O_RDONLY)
        except FileNotFoundError:
            return  # checkpointed into the database file (synced then) and removed
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _checkpoint_wal(self, rows_written: int) -> None:
        """A PASSIVE WAL checkpoint once enough rows were written (caller has committed,
        synced and released the writer lock). A failure is logged, not raised: the write is
        committed and durable, and SQLite checkpoints in later commits meanwhile."""
        if self.sqlite_path is None:
            return
        with self._wal_lock:
            self._rows_since_wal_checkpoint += rows_written
            if self._rows_since_wal_checkpoint < _WAL_CHECKPOINT_ROWS:
                return
            self._rows_since_wal_checkpoint = 0
        try:
            with self.db.connect() as conn:
                raw = conn.connection.driver_connection
                assert raw is not None
                _busy, frames, _copied = raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except Exception:
            log.warning("WAL checkpoint failed; SQLite checkpoints in commits", exc_info=True)
            self._wal_checkpoint_in_commit = True
            return
        self._wal_checkpoint_in_commit = frames > _WAL_BOUND_FRAMES

    # -- snapshots and restore --------------------------------------------------------------------
    def snapshot_into(self, target: Path) -> dict[int, tuple[str, int]]:
        """Copy a consistent state into ``target``: the collections' checkpoints, then the
        database. Returns, per collection id, its checkpoint's relative path and ``seq``.

        Writes go on meanwhile. The indexer mutexes are held throughout, so no checkpoint is
        replaced and no change log pruned between copying the checkpoints and copying the
        database: the copied log then holds every change after each checkpoint, which is what
        start-up replays. A collection without unsaved changes is copied as it is; others are
        checkpointed first (the same short index read lock as a routine checkpoint)."""
        db_path = self.snapshot_path()
        runtimes = sorted(self._runtimes.values(), key=lambda r: r.id)
        checkpoints: dict[int, tuple[str, int]] = {}
        with contextlib.ExitStack() as held:
            for runtime in runtimes:
                held.enter_context(runtime.indexer_mutex)
            for runtime in runtimes:
                if self._runtimes.get(runtime.name) is not runtime:
                    continue  # dropped meanwhile
                if runtime.changes_since_checkpoint or not self._index_path(runtime.id).exists():
                    self._checkpoint(runtime)
                source = self._index_path(runtime.id)
                if source.exists():
                    relative = f"{snapshots.INDEX_DIR}/{source.name}"
                    snapshots.copy_durably(source, target / relative)
                    checkpoints[runtime.id] = (relative, runtime.checkpoint_seq)
            snapshots.sqlite_backup(db_path, target / snapshots.DB_FILE)
        return checkpoints

    def snapshot_path(self) -> Path:
        db_path = self.sqlite_path
        if db_path is None:
            raise BadRequest(
                "snapshots need the embedded SQLite catalog; back a PostgreSQL catalog up with"
                " its own tools (pg_dump) and the index directory alongside",
                type_="snapshots_unsupported",
            )
        if db_path.parent.resolve() != self.config.index_dir.parent.resolve():
            raise BadRequest(
                "snapshots need the database file and the index directory in one data directory",
                type_="snapshots_unsupported",
            )
        return db_path

    def restore_from(self, staging: Path) -> Path:
        """Swap a staged, verified snapshot in and load it; returns where the replaced files
        went. Requests answer 503 meanwhile; a writer waits and then writes to the restored
        data. If the swap fails before it began, the old data is reopened as it was."""
        db_path = self.snapshot_path()
        self.ready = False
        self._stop.set()
        if self._indexer is not None:
            self._indexer.join(timeout=60)
        with self._write_lock:
            try:
                # No checkpoints: the files are set aside as they are, and a checkpoint behind
                # its database is rebuilt should anyone reopen them.
                self.db.dispose()
                return snapshots.swap_in(db_path.parent, staging, self.config.index_dir)
            finally:
                self._runtimes.clear()
                self._broken.clear()
                self._stop = threading.Event()
                self._indexer = None
                self.open()

    def _index_path(self, collection_id: int) -> Path:
        # Files are named by the never-reused numeric id, never by the user-supplied name.
        return self.config.index_dir / f"collection-{collection_id}.faiss"

    def _load_runtime(self, row: Any) -> CollectionRuntime:
        runtime = self._new_runtime(row)
        table = runtime.table
        with self.db.connect() as conn:
            result = conn.execution_options(yield_per=4096).execute(
                sa.select(
                    t.records.c.internal_id,
                    t.records.c.external_id,
                    t.record_vectors.c.vector,
                    t.records.c.metadata,
                )
                .select_from(_with_vectors())
                .where(t.records.c.collection_id == row.id)
                .order_by(t.records.c.internal_id)
            )
            for part in result.partitions():
                ids = np.fromiter((r[0] for r in part), dtype=np.int64, count=len(part))
                vectors = np.frombuffer(b"".join(r[2] for r in part), dtype="<f4").reshape(
                    len(part), row.dim
                )
                table.append(
                    ids,
                    runtime.to_index_space(vectors),
                    [r[1] for r in part],
                    [r[3].encode() for r in part],
                )
            last_seq = conn.execute(sa.select(sa.func.max(t.changes.c.seq))).scalar() or 0
            runtime.applied_seq = int(
                conn.execute(
                    sa.select(sa.func.max(t.changes.c.seq)).where(
                        t.changes.c.collection_id == row.id
                    )
                ).scalar()
                or 0
            )
            try:
                index, checkpoint_seq = VectorIndex.load(
                    self._index_path(row.id),
                    collection_id=row.id,
                    dim=row.dim,
                    metric=row.distance_metric,
                    params=runtime.params,
                )
                self._verify_checkpoint(conn, runtime, index, checkpoint_seq, last_seq, row)
                runtime.index = index
                runtime.checkpoint_seq = checkpoint_seq
                runtime.sync_index_with_table()
                runtime.release_indexed_vectors()
                # What the file lacks (fresh rows, tombstones) makes the next checkpoint due.
                runtime.changes_since_checkpoint = runtime.fresh_count() + index.tombstones
                log.info(
                    "collection %s: checkpoint loaded (%d indexed, %d fresh to replay)",
                    row.name,
                    index.ntotal,
                    runtime.fresh_count(),
                )
            except CheckpointError as exc:
                # Never trust this file again (the next checkpoint replaces it); serve exact
                # search over the fresh segment while the indexer rebuilds.
                self._index_path(row.id).unlink(missing_ok=True)
                if table.alive_count:
                    log.warning("collection %s: rebuilding index (%s)", row.name, exc)
                    self.index_rebuilds += 1
                # At least 1: a missing or damaged file is replaced even for an empty collection.
                runtime.changes_since_checkpoint = max(1, table.alive_count)
        return runtime

    def _verify_checkpoint(
        self,
        conn: sa.Connection,
        runtime: CollectionRuntime,
        index: VectorIndex,
        checkpoint_seq: int,
        last_seq: int,
        row: Any,
    ) -> None:
        if checkpoint_seq > last_seq:
            raise CheckpointError("checkpoint is newer than the database (restored backup?)")
        if index.ntotal and index.watermark >= row.next_internal_id:
            raise CheckpointError("checkpoint holds ids the database never allocated")
        live = runtime.table.ids[runtime.table.alive]
        old = live[live <= index.watermark]
        if len(old) and len(index.positions_of(old)) != len(old):
            raise CheckpointError("live records are missing from the checkpoint")
        # Replay the log after the checkpoint: every insert must be above its watermark.
        bad = conn.execute(
            sa.select(sa.func.count())
            .select_from(t.changes)
            .where(
                t.changes.c.collection_id == row.id,
                t.changes.c.seq > checkpoint_seq,
                t.changes.c.op == "upsert",
                t.changes.c.internal_id <= index.watermark,
            )
        ).scalar()
        if bad:
            raise CheckpointError("change log after the checkpoint contradicts it")

    def _new_runtime(self, row: Any) -> CollectionRuntime:
        params = IndexParams(**_json_decode(row.index_params))
        return CollectionRuntime(
            id=row.id,
            name=row.name,
            dim=row.dim,
            metric=row.distance_metric,
            params=params,
            embedding_model=row.embedding_model,
            exact_filter_max_matches=self.config.exact_filter_max_matches,
        )

    def runtime(self, name: str) -> CollectionRuntime:
        runtime = self._runtimes.get(name)
        if runtime is None:
            if name in self._broken:
                raise NotReady(f"collection '{name}' failed to load: it is unavailable")
            raise CollectionNotFound(name)
        return runtime

    def collection_names(self) -> list[str]:
        return sorted([*self._runtimes, *self._broken])

    # -- catalog ----------------------------------------------------------------------------------
    def create_collection(
        self,
        *,
        name: str,
        dim: int,
        metric: str,
        description: str | None,
        params: IndexParams,
        embedding_model: str | None,
    ) -> CollectionInfo:
        now = utc_now()
        with self._write_lock:
            if name in self._runtimes or name in self._broken:
                raise Conflict(f"collection '{name}' already exists", type_="collection_exists")
            with self.db.begin() as conn:
                cid = conn.execute(
                    t.collections.insert().values(
                        name=name,
                        dim=dim,
                        distance_metric=metric,
                        description=description,
                        index_params=_json_encode(
                            params.as_dict() | {"type": params.type}
                        ).decode(),
                        embedding_model=embedding_model,
                        next_internal_id=0,
                        created_at=now,
                        updated_at=now,
                    )
                ).inserted_primary_key
                assert cid is not None
                cid = cid[0]
                text_index.create(conn, int(cid))
                row = conn.execute(sa.select(t.collections).where(t.collections.c.id == cid)).one()
            self._index_path(int(cid)).unlink(missing_ok=True)
            self._runtimes[name] = self._new_runtime(row)
        return self._info(row, 0)

    def _info(self, row: Any, count: int) -> CollectionInfo:
        return CollectionInfo(
            id=row.id,
            name=row.name,
            dim=row.dim,
            metric=row.distance_metric,
            description=row.description,
            index=IndexParams(**_json_decode(row.index_params)),
            embedding_model=row.embedding_model,
            vector_count=count,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def _count_of(self, name: str) -> int:
        runtime = self._runtimes.get(name)
        return runtime.vector_count if runtime else 0

    def list_collections(self) -> list[CollectionInfo]:
        with self.db.connect() as conn:
            rows = conn.execute(sa.select(t.collections).order_by(t.collections.c.name)).all()
        return [self._info(r, self._count_of(r.name)) for r in rows]

    def get_collection(self, name: str) -> CollectionInfo:
        with self.db.connect() as conn:
            row = conn.execute(
                sa.select(t.collections).where(t.collections.c.name == name)
            ).one_or_none()
        if row is None:
            raise CollectionNotFound(name)
        return self._info(row, self._count_of(name))

    def update_collection(
        self, name: str, *, description: str | Unset | None = UNSET, ef_search: int | None = None
    ) -> CollectionInfo:
        with self._write_lock:
            runtime = self.runtime(name)
            values: dict[str, Any] = {"updated_at": utc_now()}
            if not isinstance(description, Unset):
                values["description"] = description
            params = runtime.params
            if ef_search is not None and params.type != "flat":
                params = IndexParams(**(params.as_dict() | {"ef_search": ef_search}))
                values["index_params"] = _json_encode(params.as_dict()).decode()
            with self.db.begin() as conn:
                conn.execute(
                    t.collections.update().where(t.collections.c.id == runtime.id).values(**values)
                )
            runtime.params = params
            with runtime.index_lock.write():
                runtime.index.params = params
                if runtime.index.is_hnsw:
                    runtime.index.index.hnsw.efSearch = params.ef_search
        return self.get_collection(name)

    def drop_collection(self, name: str) -> None:
        with self._write_lock:
            runtime = self._runtimes.get(name)
            with self.db.begin() as conn:
                row = conn.execute(
                    sa.select(t.collections.c.id).where(t.collections.c.name == name)
                ).one_or_none()
                if row is None:
                    raise CollectionNotFound(name)
                cid = row.id
                conn.execute(t.records.delete().where(t.records.c.collection_id == cid))
                conn.execute(
                    t.record_vectors.delete().where(t.record_vectors.c.collection_id == cid)
                )
                conn.execute(t.changes.delete().where(t.changes.c.collection_id == cid))
                text_index.drop(conn, cid)
                conn.execute(t.collections.delete().where(t.collections.c.id == cid))
            self._runtimes.pop(name, None)
            self._broken.pop(name, None)
        # Outside the write lock: an in-flight indexer step holds indexer_mutex and may need the
        # write lock to finish its checkpoint (lock order: indexer_mutex, then _write_lock).
        if runtime is not None:
            with runtime.indexer_mutex:  # wait for an in-flight indexer step on it
                self._index_path(cid).unlink(missing_ok=True)
        else:
            self._index_path(cid).unlink(missing_ok=True)

    # -- writes -----------------------------------------------------------------------------------
    def upsert(
        self, name: str, writes: Sequence[RecordWrite], *, collection_id: int | None = None
    ) -> WriteResult:
        """``collection_id``: the collection the caller validated the vectors against; if the
        name now belongs to another (dropped and re-created meanwhile), nothing is written."""
        with self._write_lock:
            # A request that timed out waiting for the writer is not applied.
            deadlines.check("waiting for the writer")
            runtime = self.runtime(name)
            if collection_id is not None and runtime.id != collection_id:
                raise Conflict(
                    f"collection '{name}' was deleted and re-created during this request;"
                    " nothing was written, retry it",
                    type_="collection_changed",
                )
            if any(len(w.vector) != runtime.dim for w in writes):
                raise Conflict(
                    f"collection '{name}' changed dimension during this request; retry it",
                    type_="collection_changed",
                )
            with self._upsert_transaction() as conn:
                existing = self._existing(conn, runtime.id, [w.external_id for w in writes])
                statuses: list[str] = []
                # Fold the writes in order: a later write of the same id sees the earlier one.
                final: dict[str, tuple[FloatArray, str, str | None, int]] = {}
                killed: list[int] = []
                for w in writes:
                    prior = final.get(w.external_id)
                    stored = existing.get(w.external_id)
                    if prior is not None:
                        base_meta, base_content, version = prior[1], prior[2], prior[3] + 1
                    elif stored is not None:
                        base_meta, base_content, version = stored[1], stored[2], stored[3] + 1
                    else:
                        base_meta, base_content, version = "{}", None, 1
                    statuses.append("inserted" if prior is None and stored is None else "updated")
                    if isinstance(w.metadata, Unset):
                        meta = base_meta
                    elif w.metadata_json is not None:
                        meta = w.metadata_json
                    else:
                        meta = _json_encode(w.metadata).decode()
                    content = base_content if isinstance(w.content, Unset) else w.content
                    final[w.external_id] = (w.vector, meta, content, version)
                for ext in final:
                    if ext in existing:
                        killed.append(existing[ext][0])
                next_id = conn.execute(
                    sa.select(t.collections.c.next_internal_id).where(
                        t.collections.c.id == runtime.id
                    )
                ).scalar_one()
                new_ids = np.arange(next_id, next_id + len(final), dtype=np.int64)
                exts = list(final)
                vectors = np.stack([final[e][0] for e in exts]).astype(np.float32, copy=False)
                self._delete_row_data(conn, runtime.id, killed)
                id_list = new_ids.tolist()
                insert_rows(
                    conn,
                    t.records,
                    (
                        "collection_id",
                        "internal_id",
                        "external_id",
                        "metadata",
                        "content",
                        "version",
                    ),
                    [
                        (runtime.id, iid, ext, final[ext][1], final[ext][2], final[ext][3])
                        for iid, ext in zip(id_list, exts, strict=True)
                    ],
                )
                text_index.add(
                    conn,
                    runtime.id,
                    ((iid, final[ext][2]) for iid, ext in zip(id_list, exts, strict=True)),
                )
                blob = vectors.astype("<f4", copy=False).tobytes()
                width = runtime.dim * 4
                insert_rows(
                    conn,
                    t.record_vectors,
                    ("collection_id", "internal_id", "vector"),
                    [
                        (runtime.id, iid, blob[i * width : (i + 1) * width])
                        for i, iid in enumerate(id_list)
                    ],
                )
                seq = self._log(conn, runtime.id, killed, new_ids.tolist())
                conn.execute(
                    t.collections.update()
                    .where(t.collections.c.id == runtime.id)
                    .values(next_internal_id=next_id + len(final), updated_at=utc_now())
                )
            self._apply(
                runtime,
                killed_ids=np.asarray(killed, dtype=np.int64),
                new_ids=new_ids,
                new_vectors=vectors,
                external_ids=exts,
                metadata_json=[final[e][1].encode() for e in exts],
                seq=seq,
                now=time.monotonic(),
            )
        self._sync_wal()
        self._checkpoint_wal(len(final))
        inserted = statuses.count("inserted")
        return WriteResult(statuses, inserted, len(statuses) - inserted)

    def _existing(
        self, conn: sa.Connection, cid: int, external_ids: list[str]
    ) -> dict[str, tuple[int, str, str | None, int]]:
        out: dict[str, tuple[int, str, str | None, int]] = {}
        unique = list(dict.fromkeys(external_ids))
        mark = placeholder(conn)
        for chunk in _chunks(unique):
            if mark is None:
                rows: Any = conn.execute(
                    sa.select(
                        t.records.c.external_id,
                        t.records.c.internal_id,
                        t.records.c.metadata,
                        t.records.c.content,
                        t.records.c.version,
                    ).where(t.records.c.collection_id == cid, t.records.c.external_id.in_(chunk))
                )
            else:
                # Straight to the driver: compiling Core's expanding IN for every bulk write
                # cost more than the lookup (py-spy of a bulk_upsert).
                marks = ", ".join([mark] * len(chunk))
                sql = (
                    "SELECT external_id, internal_id, metadata, content, version FROM records"  # noqa: S608
                    f" WHERE collection_id = {mark} AND external_id IN ({marks})"
                )
                rows = conn.exec_driver_sql(sql, (cid, *chunk))
            for ext, iid, meta, content, version in rows:
                out[ext] = (int(iid), meta, content, int(version))
        return out

    def _log(self, conn: sa.Connection, cid: int, killed: list[int], added: list[int]) -> int:
        entries = [(cid, i, "delete") for i in killed]
        entries += [(cid, i, "upsert") for i in added]
        insert_rows(conn, t.changes, ("collection_id", "internal_id", "op"), entries)
        return int(
            conn.execute(
                sa.select(sa.func.max(t.changes.c.seq)).where(t.changes.c.collection_id == cid)
            ).scalar()
            or 0
        )

    def delete(self, name: str, external_ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """Delete records by external id; returns (deleted, not_found) in input order."""
        with self._write_lock:
            # A request that timed out waiting for the writer is not applied.
            deadlines.check("waiting for the writer")
            runtime = self.runtime(name)
            with self.db.begin() as conn:
                existing = self._existing(conn, runtime.id, list(external_ids))
                killed = [existing[e][0] for e in dict.fromkeys(external_ids) if e in existing]
                seq = self._delete_rows(conn, runtime, killed) if killed else 0
            self._apply_deletes(runtime, killed, seq)
        deleted = [e for e in dict.fromkeys(external_ids) if e in existing]
        not_found = [e for e in dict.fromkeys(external_ids) if e not in existing]
        return deleted, not_found

    def delete_by_filter(self, name: str, node: Node) -> int:
        with self._write_lock:
            # A request that timed out waiting for the writer is not applied.
            deadlines.check("waiting for the writer")
            runtime = self.runtime(name)
            with self.db.begin() as conn:
                # Resolve the predicate to ids first: the log records ids, never predicates.
                # The in-memory mirror equals the committed state under the writer lock.
                killed = runtime.matching_ids(node).tolist()
                seq = self._delete_rows(conn, runtime, killed) if killed else 0
            self._apply_deletes(runtime, killed, seq)
        return len(killed)

    def _delete_rows(
        self, conn: sa.Connection, runtime: CollectionRuntime, killed: list[int]
    ) -> int:
        """Delete rows and log it inside ``conn``'s transaction; returns the new ``seq``."""
        self._delete_row_data(conn, runtime.id, killed)
        seq = self._log(conn, runtime.id, killed, [])
        conn.execute(
            t.collections.update()
            .where(t.collections.c.id == runtime.id)
            .values(updated_at=utc_now())
        )
        return seq

    @staticmethod
    def _delete_row_data(conn: sa.Connection, cid: int, internal_ids: list[int]) -> None:
        text_index.remove(conn, cid, internal_ids)
        for chunk in _chunks(internal_ids):
            for table in (t.records, t.record_vectors):
                conn.execute(
                    table.delete().where(
                        table.c.collection_id == cid, table.c.internal_id.in_(chunk)
                    )
                )

    def _apply(self, runtime: CollectionRuntime, **changes: Any) -> None:
        """Mirror a committed write in memory (caller holds the write lock).

        The transaction is already durable: if the in-memory update fails midway, the mirror
        is rebuilt from the database rather than left disagreeing with it.
        """
        try:
            runtime.apply_write(**changes)
        except Exception:
            log.exception(
                "collection %s: in-memory update failed after commit; reloading it", runtime.name
            )
            self._reload(runtime)

    def _reload(self, runtime: CollectionRuntime) -> None:
        with self.db.connect() as conn:
            row = conn.execute(
                sa.select(t.collections).where(t.collections.c.id == runtime.id)
            ).one_or_none()
        if row is None:
            return
        try:
            self._runtimes[row.name] = self._load_runtime(row)
        except Exception as exc:
            self._runtimes.pop(row.name, None)
            self._broken[row.name] = f"{type(exc).__name__}: {exc}"
            raise

    def _apply_deletes(self, runtime: CollectionRuntime, killed: list[int], seq: int) -> None:
        if not killed:
            return
        self._apply(
            runtime,
            killed_ids=np.asarray(killed, dtype=np.int64),
            new_ids=np.zeros(0, dtype=np.int64),
            new_vectors=np.zeros((0, runtime.dim), dtype=np.float32),
            external_ids=[],
            metadata_json=[],
            seq=seq,
            now=time.monotonic(),
        )

    # -- record reads -----------------------------------------------------------------------------
    def count(self, name: str, node: Node | None) -> int:
        return self.runtime(name).count(node)

    def _record_columns(self, include_vectors: bool) -> list[Any]:
        cols = [
            t.records.c.internal_id,
            t.records.c.external_id,
            t.records.c.metadata,
            t.records.c.content,
        ]
        if include_vectors:
            cols.append(t.record_vectors.c.vector)
        return cols

    @staticmethod
    def _to_record(r: Any, include_vectors: bool) -> Record:
        return Record(
            external_id=r.external_id,
            metadata=_json_decode(r.metadata),
            content=r.content,
            vector=np.frombuffer(r.vector, dtype="<f4") if include_vectors else None,
        )

    def fetch(
        self, name: str, external_ids: Sequence[str], include_vectors: bool
    ) -> dict[str, Record]:
        rows = self._fetch_rows(
            self.runtime(name).id, t.records.c.external_id, external_ids, include_vectors
        )
        return {r.external_id: self._to_record(r, include_vectors) for r in rows}

    def fetch_by_internal(
        self, runtime: CollectionRuntime, internal_ids: Sequence[int], include_vectors: bool
    ) -> dict[int, Record]:
        rows = self._fetch_rows(runtime.id, t.records.c.internal_id, internal_ids, include_vectors)
        return {int(r.internal_id): self._to_record(r, include_vectors) for r in rows}

    def _fetch_rows(
        self, cid: int, key: Any, values: Sequence[Any], include_vectors: bool
    ) -> list[Any]:
        out: list[Any] = []
        with self.db.connect() as conn:
            for chunk in _chunks(list(dict.fromkeys(values))):
                out.extend(
                    conn.execute(
                        sa.select(*self._record_columns(include_vectors))
                        .select_from(_with_vectors() if include_vectors else t.records)
                        .where(t.records.c.collection_id == cid, key.in_(chunk))
                    )
                )
        return out

    def scroll(
        self,
        name: str,
        *,
        after: str | None,
        limit: int,
        node: Node | None,
        include_vectors: bool,
    ) -> tuple[list[Record], str | None]:
        """Records by external id, strictly after ``after``; a full page unless at the end."""
        runtime = self.runtime(name)
        cols = "r.internal_id, r.external_id, r.metadata, r.content"
        source = "records AS r"
        if include_vectors:
            cols += ", v.vector"
            source += (
                " JOIN record_vectors AS v"
                " ON v.collection_id = r.collection_id AND v.internal_id = r.internal_id"
            )
        where = "r.collection_id = :cid"
        params: dict[str, Any] = {"cid": runtime.id, "limit": limit + 1}
        if after is not None:
            where += " AND r.external_id > :after"
            params["after"] = after
        if node is not None:
            fsql, fparams = compile_sqlite(node, "r.metadata")
            where += f" AND ({fsql})"
            params.update(fparams)
        with self.db.connect() as conn:
            rows = conn.execute(
                sa.text(
                    f"SELECT {cols} FROM {source} WHERE {where}"  # noqa: S608
                    " ORDER BY r.external_id LIMIT :limit"
                ),
                params,
            ).all()
        records = [self._to_record(r, include_vectors) for r in rows[:limit]]
        next_after = records[-1].external_id if len(rows) > limit else None
        return records, next_after

    # -- keyword search (BM25) --------------------------------------------------------------------
    def keyword_search(
        self, runtime: CollectionRuntime, text: str, n: int, node: Node | None = None
    ) -> list[tuple[int, float]]:
        """The best ``n`` live records by BM25 over their content, restricted to a filter's
        matches: (internal id, score) pairs, best first. Widens its FTS read until ``n`` pass
        the filter or the matches run out, so a filter never under-fills the keyword leg."""
        expression = self._keyword_expression(text)
        if expression is None:
            return []
        limit = max(n, 1) * (1 if node is None else 4)
        with self.db.connect() as conn:
            while True:
                found = text_index.search(conn, runtime.id, expression, limit)
                ids = np.fromiter((i for i, _ in found), dtype=np.int64, count=len(found))
                keep = runtime.passing(ids, node)
                kept = [pair for pair, ok in zip(found, keep.tolist(), strict=True) if ok]
                if len(kept) >= n or len(found) < limit:
                    return kept[:n]
                limit *= 4

    def keyword_scores(
        self, runtime: CollectionRuntime, text: str, internal_ids: Sequence[int]
    ) -> dict[int, float]:
        """BM25 scores of the given records (missing: no query word in their content)."""
        expression = self._keyword_expression(text)
        if expression is None or not internal_ids:
            return {}
        with self.db.connect() as conn:
            return text_index.scores(conn, runtime.id, expression, internal_ids)

    def _keyword_expression(self, text: str) -> str | None:
        if self.db.dialect.name != "sqlite":
            raise BadRequest(
                "keyword (BM25) search needs SQLite's FTS5, and this server's catalog database"
                f" is {self.db.dialect.name}; use vector search",
                type_="keyword_search_unavailable",
            )
        return text_index.match_expression(text)

    # -- search -----------------------------------------------------------------------------------
    def search(
        self,
        name: str,
        query: FloatArray,
        n: int,
        *,
        node: Node | None = None,
        exact: bool = False,
        ef_search: int | None = None,
    ) -> list[Hit]:
        runtime = self.runtime(name)
        return runtime.search(query, n, ef_search=ef_search, exact=exact, node=node)

    # -- background work --------------------------------------------------------------------------
    def _indexer_loop(self) -> None:
        while not self._stop.wait(self.config.indexer_interval_s):
            for runtime in list(self._runtimes.values()):
                if self._stop.is_set():
                    return
                try:
                    self.maintain(runtime, defer=True)
                except Exception:
                    log.exception("background maintenance of %s failed", runtime.name)

    def maintain(
        self, runtime: CollectionRuntime, *, force_checkpoint: bool = False, defer: bool = False
    ) -> None:
        """One round of background work on a collection (also called directly by tests).

        ``defer``: while writes are streaming in, leave up to ``indexer_fresh_max`` vectors in
        the exactly scanned fresh segment, so HNSW insertion does not compete with ingest for
        the CPU; they are indexed once writes pause for ``indexer_defer_s``.
        """
        with runtime.indexer_mutex:
            if self._runtimes.get(runtime.name) is not runtime:
                return  # dropped meanwhile
            if runtime.huge_pages_due:
                # A loaded index, on the indexer's first round rather than in ``open``: the
                # collapse copies the index (~0.5 s per 150 MB) while searches go on, on small
                # pages meanwhile, and start-up does not wait for it.
                runtime.huge_pages_due = False
                self._use_huge_pages(runtime)
            keep_fresh = 0
            if (
                defer
                and time.monotonic() - runtime.last_change_monotonic < self.config.indexer_defer_s
            ):
                keep_fresh = self.config.indexer_fresh_max
            indexed = False
            while runtime.index_step(self.config.indexer_batch_size, keep_fresh):
                indexed = True
                if self._stop.is_set():
                    break
            if indexed and keep_fresh == 0:
                # A burst of writes has been indexed: return the heap its request bodies and
                # index batches left behind (it would otherwise stay in the RSS), and put the
                # grown index on huge pages.
                release_free_memory()
                self._use_huge_pages(runtime)
            index = runtime.index
            if index.tombstones and index.deleted_fraction > self.config.compaction_threshold:
                log.info(
                    "collection %s: compacting index (%.0f%% tombstones)",
                    runtime.name,
                    100 * index.deleted_fraction,
                )
                runtime.rebuild_index(self.config.indexer_batch_size)
                self.index_rebuilds += 1
                runtime.changes_since_checkpoint += 1
                while runtime.index_step(self.config.indexer_batch_size):
                    pass
                self._use_huge_pages(runtime)
            runtime.maybe_compact_table()
            # Not while writes stream in: the build would compete with them. Its temporaries
            # (~4x the snapshot) go back to the OS rather than stay in the RSS.
            if keep_fresh == 0 and runtime.hash_external_ids():
                release_free_memory()
            idle = time.monotonic() - runtime.last_change_monotonic > self.config.checkpoint_idle_s
            if runtime.changes_since_checkpoint and (
                force_checkpoint
                or idle
                or runtime.changes_since_checkpoint >= self.config.checkpoint_every_changes
            ):
                self._checkpoint(runtime)

    def _use_huge_pages(self, runtime: CollectionRuntime) -> None:
        """Huge pages under the index's arrays (``huge_pages``); the indexer calls it, under
        the runtime's ``indexer_mutex``. Only an ``add`` or a rebuild moves those arrays, and
        only the indexer does either, so the addresses stay valid without the index lock:
        the collapse (~0.5 s per 150 MB) holds no lock that a writer, and the searches queued
        behind a waiting writer, would wait for."""
        if not self.config.index_huge_pages:
            return
        with runtime.index_lock.read():
            regions = runtime.index.memory_regions()
        huge_pages.advise(regions)

    def _checkpoint(self, runtime: CollectionRuntime) -> None:
        if self._runtimes.get(runtime.name) is not runtime:
            return
        with runtime.index_lock.read():
            seq = runtime.applied_seq
            pending = runtime.changes_since_checkpoint
            runtime.index.save(
                self._index_path(runtime.id), collection_id=runtime.id, applied_seq=seq
            )
        runtime.checkpoint_seq = seq
        # Writes that landed during the save still count toward the next checkpoint.
        runtime.changes_since_checkpoint = max(0, runtime.changes_since_checkpoint - pending)
        with self._write_lock, self.db.begin() as conn:
            # The log before the checkpoint is no longer needed for replay; keep the newest entry
            # so the sequence can still be compared against the checkpoint.
            conn.execute(
                t.changes.delete().where(
                    t.changes.c.collection_id == runtime.id, t.changes.c.seq < seq
                )
            )
        # The save's buffers and the log's deletion were the last large allocations of a burst
        # of writes (they come after the indexer caught up and trimmed): give them back too.
        release_free_memory()

    # -- stats ------------------------------------------------------------------------------------
    def stats(self, name: str) -> CollectionStats:
        runtime = self.runtime(name)
        # Under the index lock: mid-batch, faiss counts vectors it has not linked in yet.
        with runtime.index_lock.read():
            index = runtime.index
            return CollectionStats(
                name=runtime.name,
                dim=runtime.dim,
                metric=runtime.metric,
                vector_count=runtime.vector_count,
                index_type=runtime.params.type,
                index_vectors=index.ntotal,
                deleted_fraction=round(index.deleted_fraction, 6),
            )

    def iter_records(self, name: str, batch: int = 1000) -> Iterator[list[Record]]:
        after: str | None = None
        while True:
            records, after = self.scroll(
                name, after=after, limit=batch, node=None, include_vectors=True
            )
            if records:
                yield records
            if after is None:
                return
