"""PostgreSQL 16 + pgvector 0.6, from the binaries inside the ``pgserver`` wheel, over psycopg 3.

``pgserver``'s own Python API is not used: it listens on a Unix socket only, and as root it
creates a user and loosens permissions on every directory above the wheel. Here ``initdb`` and
``postgres`` from its ``pginstall/bin`` run directly, with the data directory under the
workdir, ``listen_addresses=127.0.0.1`` on a free port, no Unix socket, and a random password
(scram) for the ``postgres`` role.

PostgreSQL refuses to run as root. As root, the binaries run as an unprivileged user: the one
named by ``VECSTORE_BENCH_PG_USER``, else an existing ``postgres`` system user, else a system
user ``vecstore-pg`` created once with ``useradd --system`` (no home, no login shell).

Schema: ``items(id text primary key, bucket int, embedding vector(dim))``, a btree on
``bucket`` (what anyone filtering on it would add) and ``USING hnsw (embedding
vector_cosine_ops) WITH (m, ef_construction)``, built by ``finish_indexing`` after the load
(pgvector's advice: building on loaded data is much faster than inserting into the index). The
knob is ``SET hnsw.ef_search``.

- Ingest is a binary ``COPY`` (vectors in pgvector's binary form, no text formatting). Each
  thread gets its own connection (thread-local), so 2 ingest or search threads run in parallel.
- pgvector 0.6 filters *after* the index scan: ``WHERE bucket < n ORDER BY embedding <=> q
  LIMIT k`` takes ``hnsw.ef_search`` candidates from the graph, then drops the others, so a
  selective filter can return fewer than k rows (iterative scans came in 0.8). Or the planner
  picks the btree and an exact sort. ``plan()`` shows which.
- ``memory_pids`` is the postmaster and all its children (backends, checkpointer, ...); their
  RSS sums count ``shared_buffers`` once per process that touched it: prefer PSS.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.peers.base import (
    COLLECTION,
    DEFAULT_KNOB,
    DEFAULT_SWEEP,
    HOST,
    FloatArray,
    Peer,
    PeerUnavailable,
    ServerProcess,
    check_batch,
    free_port,
    package_version,
    process_tree,
    require,
)

_PG_USER_ENV = "VECSTORE_BENCH_PG_USER"
_CREATED_USER = "vecstore-pg"
# Server settings: enough maintenance memory that a 100k-vector HNSW graph is built in memory
# (pgvector warns and slows down badly once it spills), and one parallel build worker (2 CPUs).
_SERVER_SETTINGS = {
    "listen_addresses": HOST,
    "unix_socket_directories": "",
    "shared_buffers": "512MB",
    "maintenance_work_mem": "2GB",
    "max_parallel_maintenance_workers": "1",
    "logging_collector": "off",
}
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)


def _pg_bin_dir() -> Path:
    spec = importlib.util.find_spec("pgserver")  # located, not imported: its import has effects
    if spec is None or not spec.submodule_search_locations:
        raise PeerUnavailable("pgserver is not installed (pip install pgserver)")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise PeerUnavailable(f"no postgres binary in {bin_dir}")
    return bin_dir


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get(_PG_USER_ENV)
    candidates = [name] if name else ["postgres", _CREATED_USER]
    for cand in candidates:
        with contextlib.suppress(KeyError):
            pw = pwd.getpwnam(cand)
            return pw.pw_uid, pw.pw_gid
    if name:
        raise PeerUnavailable(f"{_PG_USER_ENV}={name}: no such user")
    cmd = ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent"]
    cmd += ["--shell", "/usr/sbin/nologin", _CREATED_USER]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise PeerUnavailable(f"postgres cannot run as root and useradd failed: {exc}") from exc
    pw = pwd.getpwnam(_CREATED_USER)
    return pw.pw_uid, pw.pw_gid


def _traversable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


class _PgServer:
    """One PostgreSQL cluster: initdb once, then the ``postgres`` process (re)started on it."""

    def __init__(self, workdir: Path, startup_timeout_s: float) -> None:
        self.bin_dir = _pg_bin_dir()
        self.owner = _run_as()
        self.startup_timeout_s = startup_timeout_s
        self.log_path = workdir / "postgres.log"
        # The server's user must reach its data directory: under the workdir when every
        # directory above it lets others pass, else a private temporary directory of our own.
        self._own_tmp: Path | None = None
        if self.owner is None or _traversable_by_others(workdir):
            base = workdir
        else:
            self._own_tmp = Path(tempfile.mkdtemp(prefix="vecstore-pg-"))
            self._own_tmp.chmod(0o711)
            base = self._own_tmp
        self.pgdata = base / "pgdata"
        self.password = secrets.token_urlsafe(24)
        self.port = 0
        self.proc: ServerProcess | None = None

    def _chown(self, path: Path) -> None:
        if self.owner is not None:
            os.chown(path, *self.owner)

    def initdb(self) -> None:
        self.pgdata.mkdir(mode=0o700)
        self._chown(self.pgdata)
        pwfile = self.pgdata.parent / "pg-password"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        cmd = [str(self.bin_dir / "initdb"), "-D", str(self.pgdata), "-U", "postgres"]
        cmd += ["--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8", "--no-locale"]
        uid, gid = self.owner if self.owner is not None else (None, None)
        try:
            done = subprocess.run(
                cmd,
                cwd=self.pgdata,
                user=uid,
                group=gid,
                extra_groups=[] if uid is not None else None,
                capture_output=True,
                timeout=self.startup_timeout_s,
                check=False,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            out = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
            raise PeerUnavailable(f"initdb failed ({done.returncode}): {out}")

    def start(self, connect: Any) -> None:
        self.port = self.port or free_port()
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.pgdata), "-p", str(self.port)]
        for key, value in _SERVER_SETTINGS.items():
            argv += ["-c", f"{key}={value}"]
        uid, gid = self.owner if self.owner is not None else (None, None)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
        proc = ServerProcess(
            argv,
            self.log_path,
            env=env,
            cwd=self.pgdata,
            user=uid,
            group=gid,
            # SIGINT is PostgreSQL's fast shutdown; SIGQUIT its immediate one; then SIGKILL.
            stop_signals=((signal.SIGINT, 30.0), (signal.SIGQUIT, 5.0)),
        )

        def ready() -> bool:
            with connect(connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True

        proc.start_ready(ready, timeout_s=self.startup_timeout_s, what="postgres")
        self.proc = proc

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_tmp is not None:
            shutil.rmtree(self._own_tmp, ignore_errors=True)
            self._own_tmp = None


def _dump_vector(self: Any, obj: Any) -> bytes:
    arr = np.asarray(obj, dtype=">f4").ravel()
    return struct.pack(">HH", arr.size, 0) + arr.tobytes()


def _load_vector(self: Any, data: Any) -> FloatArray:
    buf = bytes(data)
    (dim,) = struct.unpack_from(">H", buf)
    out: FloatArray = np.frombuffer(buf, dtype=">f4", count=dim, offset=4).astype(np.float32)
    return out


def _vector_adapters(vector_oid: int) -> tuple[type, type]:
    """A binary dumper for numpy rows and a binary loader for ``vector`` (pgvector's wire form:
    int16 dim, int16 unused, dim big-endian float32), so nothing is formatted as text. Made
    with ``type()``: psycopg is imported lazily, so its classes are untyped to mypy here."""
    adapt: Any = importlib.import_module("psycopg.adapt")
    binary = importlib.import_module("psycopg.pq").Format.BINARY
    dumper = type(
        "VectorDumper", (adapt.Dumper,), {"format": binary, "oid": vector_oid, "dump": _dump_vector}
    )
    loader = type("VectorLoader", (adapt.Loader,), {"format": binary, "load": _load_vector})
    return dumper, loader


class PgvectorPeer:
    name = "pgvector"
    kind = "server"
    knob_name = "hnsw.ef_search"

    def __init__(
        self,
        knobs: Sequence[int] = DEFAULT_SWEEP,
        *,
        startup_timeout_s: float = 60.0,
        _server: _PgServer | None = None,
    ) -> None:
        self.knobs: Sequence[int] = tuple(knobs)
        self.index_desc = "HNSW vector_cosine_ops"
        self._startup_timeout_s = startup_timeout_s
        self._server = _server
        self._owns_server = _server is None
        self._psycopg: Any = None
        self._adapters: tuple[type, type] | None = None
        self._vector_oid = 0
        self._local = threading.local()
        self._conns: list[Any] = []
        self._conns_lock = threading.Lock()
        self._ef = DEFAULT_KNOB
        self._dim = 0
        self._m = 0
        self._ef_construction = 0

    # -- connections -----------------------------------------------------------------------------

    def _connect_raw(self, **kwargs: Any) -> Any:
        assert self._server is not None
        return self._psycopg.connect(
            host=HOST,
            port=self._server.port,
            user="postgres",
            password=self._server.password,
            dbname="postgres",
            autocommit=True,
            **kwargs,
        )

    def _conn(self) -> Any:
        """This thread's connection, made on first use, with the vector adapters and the knob."""
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._connect_raw()
            if self._adapters is not None:
                dumper, loader = self._adapters
                conn.adapters.register_dumper(np.ndarray, dumper)
                conn.adapters.register_loader(self._vector_oid, loader)
            self._local.conn = conn
            self._local.ef = None
            with self._conns_lock:
                self._conns.append(conn)
        if self._local.ef != self._ef:
            conn.execute(f"SET hnsw.ef_search = {int(self._ef)}")
            self._local.ef = self._ef
        return conn

    def _close_conns(self) -> None:
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
        self._local = threading.local()

    def _load_vector_type(self) -> None:
        with self._connect_raw() as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            row = conn.execute("SELECT oid FROM pg_type WHERE typname = 'vector'").fetchone()
        self._vector_oid = int(row[0])
        self._adapters = _vector_adapters(self._vector_oid)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, workdir: Path) -> None:
        self._psycopg = require("psycopg", "psycopg[binary] (the `peers` extra)")
        self._server = _PgServer(workdir, self._startup_timeout_s)
        self._owns_server = True
        try:
            self._server.initdb()
            self._server.start(self._connect_raw)
            self._load_vector_type()
        except BaseException:
            self._server.cleanup()
            raise

    def stop(self) -> None:
        self._close_conns()
        if self._owns_server and self._server is not None:
            self._server.cleanup()

    def restart(self) -> None:
        if self._server is None:
            raise PeerUnavailable("restart() before start()")
        self._close_conns()
        self._server.stop()
        self._server.start(self._connect_raw)
        self.search(np.ones(self._dim, dtype=np.float32), 1)

    def versions(self) -> dict[str, str]:
        out = {"pgserver": package_version("pgserver"), "psycopg": package_version("psycopg")}
        with contextlib.suppress(Exception):
            conn = self._conn()
            out["postgres"] = str(conn.execute("SHOW server_version").fetchone()[0])
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            out["pgvector"] = str(row.fetchone()[0])
        return out

    def memory_pids(self) -> list[int]:
        if self._server is None or self._server.proc is None or self._server.proc.pid is None:
            return []
        return process_tree(self._server.proc.pid)

    def client_for_thread(self) -> Peer:
        peer = PgvectorPeer(self.knobs, _server=self._server)
        peer._psycopg = self._psycopg
        peer._adapters = self._adapters
        peer._vector_oid = self._vector_oid
        peer._ef = self._ef
        peer._dim = self._dim
        peer.index_desc = self.index_desc
        return peer

    # -- data --------------------------------------------------------------------------------------

    def create(self, dim: int, m: int, ef_construction: int) -> None:
        self._dim, self._m, self._ef_construction = dim, m, ef_construction
        conn = self._conn()
        conn.execute(
            f"CREATE TABLE {COLLECTION} (id text PRIMARY KEY, bucket int NOT NULL, "
            f"embedding vector({int(dim)}) NOT NULL)"
        )
        conn.execute(f"CREATE INDEX {COLLECTION}_bucket ON {COLLECTION} (bucket)")
        self.index_desc = f"HNSW vector_cosine_ops m={m} ef_construction={ef_construction}"

    def ingest(self, ids: Sequence[str], vectors: FloatArray, buckets: Sequence[int]) -> None:
        check_batch(ids, vectors, buckets)
        rows = np.ascontiguousarray(vectors, dtype=">f4")
        dim = rows.shape[1]
        vec_head = struct.pack(">iHH", 4 + 4 * dim, dim, 0)
        parts = [_COPY_HEADER]
        for ext_id, bucket, row in zip(ids, buckets, rows, strict=True):
            idb = ext_id.encode()
            parts.append(struct.pack(">hi", 3, len(idb)))
            parts.append(idb)
            parts.append(struct.pack(">ii", 4, int(bucket)))
            parts.append(vec_head)
            parts.append(row.tobytes())
        parts.append(_COPY_TRAILER)
        sql = f"COPY {COLLECTION} (id, bucket, embedding) FROM STDIN (FORMAT BINARY)"
        with self._conn().cursor() as cur, cur.copy(sql) as copy:
            copy.write(b"".join(parts))

    def finish_indexing(self) -> None:
        conn = self._conn()
        conn.execute(
            f"CREATE INDEX {COLLECTION}_hnsw ON {COLLECTION} USING hnsw "
            f"(embedding vector_cosine_ops) WITH (m = {int(self._m)}, "
            f"ef_construction = {int(self._ef_construction)})"
        )
        conn.execute(f"ANALYZE {COLLECTION}")

    def set_knob(self, value: int) -> None:
        self._ef = int(value)

    def _search_sql(self, bucket_lt: int | None) -> str:
        where = "" if bucket_lt is None else "WHERE bucket < %s "
        return f"SELECT id FROM {COLLECTION} {where}ORDER BY embedding <=> %b LIMIT %s"

    def _search_args(self, query: FloatArray, k: int, bucket_lt: int | None) -> tuple[Any, ...]:
        q = np.asarray(query, dtype=np.float32)
        return (q, k) if bucket_lt is None else (int(bucket_lt), q, k)

    def search(self, query: FloatArray, k: int, bucket_lt: int | None = None) -> list[str]:
        sql = self._search_sql(bucket_lt)
        rows = self._conn().execute(sql, self._search_args(query, k, bucket_lt)).fetchall()
        return [str(r[0]) for r in rows]

    def plan(self, query: FloatArray, k: int, bucket_lt: int | None = None) -> str:
        """The planner's choice for this query shape (index scan, or btree + exact sort)."""
        sql = "EXPLAIN (COSTS OFF) " + self._search_sql(bucket_lt)
        rows = self._conn().execute(sql, self._search_args(query, k, bucket_lt)).fetchall()
        text = " / ".join(str(r[0]).strip() for r in rows)
        return re.sub(r"'\[[^]]*\]'::vector", "$q", text)

    def fetch(self, ids: Sequence[str]) -> FloatArray:
        sql = f"SELECT id, embedding FROM {COLLECTION} WHERE id = ANY(%s)"
        with self._conn().cursor(binary=True) as cur:
            rows = cur.execute(sql, (list(ids),)).fetchall()
        by_id = {str(r[0]): r[1] for r in rows}
        return np.asarray([by_id[i] for i in ids], dtype=np.float32)
