"""Start the real vecstore server as a subprocess for the length of a ``with`` block."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import httpx

from vecstore.cli import serve_argv

HOST = "127.0.0.1"
_LOG_TAIL_BYTES = 4000


class ServerHandle(NamedTuple):
    base_url: str
    key: str


class ServerError(RuntimeError):
    """The server did not start, or stopped answering."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(
    *,
    startup_timeout_s: float = 60.0,
    stop_timeout_s: float = 30.0,
    extra_env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
) -> Iterator[ServerHandle]:
    """Run ``python -m vecstore serve`` on a free port with a throw-away data directory.

    Yields ``(base_url, admin_key)`` once ``GET /ready`` answers 200. On exit the server gets
    SIGTERM, then SIGKILL after ``stop_timeout_s``. If the block raises, the tail of the server's
    log is printed to stderr. The log goes to ``log_path`` if given (kept), else into the
    temporary directory (deleted with it).
    """
    key = secrets.token_urlsafe(32)
    port = free_port()
    with sigterm_unwinds(), tempfile.TemporaryDirectory(prefix="vecstore-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        log_path = log_path or Path(tmp) / "server.log"
        env = {
            **os.environ,
            "VECSTORE_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
            "VECSTORE_ADMIN_KEY": key,
        }
        cmd = serve_argv(HOST, port, data_dir)
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
            try:
                base_url = f"http://{HOST}:{port}"
                _wait_ready(proc, base_url, startup_timeout_s, log_path)
                yield ServerHandle(base_url, key)
            except BaseException:
                print(f"--- server log tail ({log_path}) ---", file=sys.stderr)
                print(_log_tail(log_path), file=sys.stderr)
                raise
            finally:
                _stop(proc, stop_timeout_s)


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM (``kill``, ``timeout``) would end the harness without unwinding, leaving its
    servers running; as SystemExit it runs every ``finally`` and so stops them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield  # someone else handles it (an outer server block, or the caller)
        return

    def unwind(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait_ready(proc: subprocess.Popen[bytes], base_url: str, timeout_s: float, log: Path) -> None:
    deadline = time.perf_counter() + timeout_s
    with httpx.Client(base_url=base_url, timeout=2.0) as client:
        while time.perf_counter() < deadline:
            code = proc.poll()
            if code is not None:
                raise ServerError(f"server exited with code {code} before it was ready")
            try:
                if client.get("/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise ServerError(f"server not ready after {timeout_s:.0f} s (log: {log})")


def _stop(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        print(f"server ignored SIGTERM for {timeout_s:.0f} s; killing it", file=sys.stderr)
        proc.kill()
        proc.wait(timeout=10)


def _log_tail(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - _LOG_TAIL_BYTES))
            return fh.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(could not read server log: {exc})"
