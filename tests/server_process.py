"""Run the real ``python -m vecstore serve`` process for tests (a helper module, not a test).

The server binds 127.0.0.1 on a free port, gets a throw-away environment (inherited ``VECSTORE_*``
variables are dropped so the developer's shell cannot leak into a test), and writes stdout and
stderr to files in the test's temporary directory. ``running_server`` always stops the process:
SIGTERM first, SIGKILL as the last resort.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

from vecstore.cli import serve_argv

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 30.0
_PORT_ATTEMPTS = 3

T = TypeVar("T")


class ServerError(AssertionError):
    """The server did not start, died, or would not stop."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def new_admin_key() -> str:
    return secrets.token_urlsafe(32)


class ServerProcess:
    """One ``vecstore serve`` process on ``data_dir``; start/stop/kill it any number of times.

    ``admin_key=None`` starts the server without ``VECSTORE_ADMIN_KEY`` (it then generates or
    reads ``<data_dir>/admin.key``); each start gets a new port and fresh log files.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        admin_key: str | None,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.admin_key = admin_key
        self.extra_env = dict(env or {})
        self.log_dir = log_dir or data_dir.parent
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.stdout_path = self.log_dir / "server-0.stdout"
        self.stderr_path = self.log_dir / "server-0.stderr"

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VECSTORE_")}
        env["VECSTORE_LOG_LEVEL"] = "WARNING"
        env["PYTHONUNBUFFERED"] = "1"
        if self.admin_key is not None:
            env["VECSTORE_ADMIN_KEY"] = self.admin_key
        env.update(self.extra_env)
        return env

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the process and wait (bounded) until ``GET /ready`` answers 200."""
        assert not self.running, "the server is already running"
        for _ in range(_PORT_ATTEMPTS):
            self._spawn()
            try:
                self.wait_ready(timeout_s)
                return
            except ServerError:
                # Another process may have taken the free port between probe and bind.
                exited = self.proc is not None and self.proc.poll() is not None
                if exited and "address already in use" in self.stderr().lower():
                    continue
                self.kill()
                raise
        raise ServerError(f"could not bind a free port in {_PORT_ATTEMPTS} attempts")

    def launch(self) -> None:
        """Spawn the process without waiting for it (to kill it in the middle of start-up)."""
        assert not self.running, "the server is already running"
        self._spawn()

    def _spawn(self) -> None:
        self.starts += 1
        self.port = free_port()
        self.stdout_path = self.log_dir / f"server-{self.starts}.stdout"
        self.stderr_path = self.log_dir / f"server-{self.starts}.stderr"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        cmd = serve_argv(HOST, self.port, self.data_dir)
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                cmd, env=self._environment(), stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                assert self.proc is not None
                code = self.proc.poll()
                if code is not None:
                    raise ServerError(
                        f"server exited with code {code} before it was ready\n{self.stderr()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/ready").status_code == 200:
                        return
                time.sleep(0.05)
        raise ServerError(f"server not ready after {timeout_s:.0f} s\n{self.stderr()}")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait (bounded), then SIGKILL; returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to flush, checkpoint or close anything."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    # -- talking to it --------------------------------------------------------------------------
    def client(
        self, *, key: str | None = None, timeout_s: float = REQUEST_TIMEOUT_S
    ) -> httpx.Client:
        """An httpx client for this run; the admin key is preset unless ``key`` overrides it."""
        headers: dict[str, str] = {}
        key = key if key is not None else self.admin_key
        if key is not None:
            headers["x-api-key"] = key
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)

    def stdout(self) -> str:
        return _read(self.stdout_path)

    def stderr(self) -> str:
        return _read(self.stderr_path)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


@contextlib.contextmanager
def running_server(
    data_dir: Path, *, admin_key: str | None, **kwargs: Any
) -> Iterator[ServerProcess]:
    """A started ``ServerProcess`` that is always stopped when the block ends."""
    server = ServerProcess(data_dir, admin_key=admin_key, **kwargs)
    try:
        server.start()
        yield server
    except BaseException:
        sys.stderr.write(
            f"--- server stderr (start #{server.starts}) ---\n{server.stderr()[-4000:]}"
        )
        raise
    finally:
        server.stop()


def poll_until(
    check: Callable[[], T], *, timeout_s: float, interval_s: float = 0.1, what: str = "condition"
) -> T:
    """Call ``check()`` until it returns a truthy value (returned) or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"{what} not reached within {timeout_s:.0f} s (last: {last!r})")
