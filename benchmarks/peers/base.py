"""The contract every peer system implements, and the process plumbing the server peers share.

A comparison is only fair if every system does the same work through the same motions, so the
harness never talks to a peer's own API: it drives each one through ``Peer``. A peer that is not
installed or does not start raises ``PeerUnavailable`` from ``start()``; the harness then skips
it with that message instead of crashing, which is why every peer imports its packages inside
``start()`` (importing ``benchmarks.peers`` needs nothing but numpy).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

# One definition of the loopback host and the free-port probe for every server the suites start.
from benchmarks.server import HOST as HOST
from benchmarks.server import free_port as free_port

FloatArray = npt.NDArray[np.float32]
COLLECTION = "bench"
# vecstore's default index: HNSW, m=32, ef_construction=128, ef_search=128, cosine. Every peer
# starts at the same search-time setting so a single-knob comparison is like for like.
DEFAULT_KNOB = 128
DEFAULT_SWEEP: tuple[int, ...] = (16, 32, 64, 128, 256)
_LOG_TAIL_BYTES = 3000


class PeerUnavailable(Exception):
    """The peer's packages are missing, or it did not start: skip it, with this message."""


@runtime_checkable
class Peer(Protocol):
    """One system under test.

    Thread-safety: ``ingest`` and ``search`` may be called from several threads on the same
    object (each peer says in its module docstring whether that runs in parallel or is
    serialised); ``client_for_thread`` gives an object with its own connection, for concurrent
    search passes. ``create``, ``finish_indexing``, ``set_knob``, ``restart`` and ``stop`` are
    called from one thread while nothing else runs.
    """

    name: str  # "chroma", "pgvector", "milvus-lite", "lancedb", "faiss"
    kind: str  # "server" (own process, reached over loopback) or "embedded" (in this process)
    knob_name: str  # the search-time setting swept: "ef_search", "ef", ...
    knobs: Sequence[int]  # the sweep, ascending
    index_desc: str  # what is built, with its parameters, for the report

    def start(self, workdir: Path) -> None:
        """Bring the system up with its data under ``workdir``; bounded in time."""
        ...

    def stop(self) -> None:
        """Release everything ``start`` took (processes, connections); idempotent."""
        ...

    def create(self, dim: int, m: int, ef_construction: int) -> None:
        """Create the (cosine) collection and whatever index is declared up front."""
        ...

    def ingest(self, ids: Sequence[str], vectors: FloatArray, buckets: Sequence[int]) -> None:
        """Store one batch; returns when the system has accepted it."""
        ...

    def finish_indexing(self) -> None:
        """Block until every stored vector is searchable through the ANN index."""
        ...

    def set_knob(self, value: int) -> None: ...

    def search(self, query: FloatArray, k: int, bucket_lt: int | None = None) -> list[str]:
        """Ids of the (approximate) k nearest, best first; filter ``bucket < bucket_lt``."""
        ...

    def fetch(self, ids: Sequence[str]) -> FloatArray:
        """The stored vectors of ``ids``, in the order asked."""
        ...

    def client_for_thread(self) -> Peer:
        """An object with its own connection, safe to use from another thread."""
        ...

    def memory_pids(self) -> list[int]:
        """Processes whose RSS is the peer's footprint ([] when it lives in this process)."""
        ...

    def restart(self) -> None:
        """Stop and start again on the same data; returns once a search works."""
        ...

    def versions(self) -> dict[str, str]:
        """Package / server versions, for the report."""
        ...


def require(module: str, hint: str) -> ModuleType:
    """Import ``module`` or raise ``PeerUnavailable`` naming what to install."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, but also a wheel that fails to load (e.g. CPU flags)
        raise PeerUnavailable(f"cannot import {module} ({exc}); install {hint}") from exc


def package_version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def wait_until(
    ready: Callable[[], bool], *, timeout_s: float, what: str, alive: Callable[[], str | None]
) -> None:
    """Poll ``ready`` every 0.1 s until it is true; ``alive`` returns why the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dead = alive()
        if dead is not None:
            raise PeerUnavailable(f"{what} {dead}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.1)
    raise PeerUnavailable(f"{what} not ready after {timeout_s:.0f} s")


@dataclass
class ServerProcess:
    """A server subprocess with its log in a file, stopped by signals with bounded waits.

    ``stop_signals`` is the escalation, each with how long to wait for the exit: SIGTERM is the
    polite stop for most servers, while PostgreSQL wants SIGINT (its "fast" shutdown; SIGTERM
    waits for every client to disconnect). SIGKILL always follows the last one.
    """

    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    user: int | None = None
    group: int | None = None
    stop_signals: Sequence[tuple[signal.Signals, float]] = ((signal.SIGTERM, 30.0),)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                list(self.argv),
                env=dict(self.env) if self.env is not None else None,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self.user,
                group=self.group,
                extra_groups=[] if self.user is not None else None,
                start_new_session=True,  # a Ctrl-C in the harness's terminal must not reach it
            )

    def start_ready(self, ready: Callable[[], bool], *, timeout_s: float, what: str) -> None:
        """Start, then wait until ``ready()`` holds; a server that dies or never gets ready is
        stopped before the ``PeerUnavailable`` propagates, so no process is left behind."""
        self.start()
        try:
            wait_until(ready, timeout_s=timeout_s, what=what, alive=self.exit_reason)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def exit_reason(self) -> str | None:
        """None while running, else why it is not (with the log's tail)."""
        if self.proc is None:
            return "was never started"
        code = self.proc.poll()
        if code is None:
            return None
        return f"exited with code {code}; log tail:\n{self.log_tail()}"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait_s in self.stop_signals:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                print(f"{self.argv[0]} ignored {sig.name} for {wait_s:.0f} s", file=sys.stderr)
        proc.kill()
        proc.wait(timeout=10)

    def log_tail(self) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - _LOG_TAIL_BYTES))
                return fh.read().decode("utf-8", errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"


def process_tree(root_pid: int) -> list[int]:
    """``root_pid`` and all its descendants, from /proc (PostgreSQL forks one per backend)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: the fields after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [root_pid]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            out.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(out)


def unit_rows(vectors: FloatArray) -> FloatArray:
    """Row-normalised float32 copy (FAISS and friends do cosine as inner product of unit rows)."""
    arr = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    out: FloatArray = (arr / np.maximum(norms, np.float32(1e-12))).astype(np.float32)
    return out


def check_batch(ids: Sequence[str], vectors: FloatArray, buckets: Sequence[int]) -> None:
    if vectors.ndim != 2 or vectors.shape[0] != len(ids) or len(buckets) != len(ids):
        raise ValueError(
            f"batch mismatch: {len(ids)} ids, vectors {vectors.shape}, {len(buckets)} buckets"
        )
