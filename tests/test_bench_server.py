"""The benchmark harness's server handling: a harness killed with SIGTERM (``kill``,
``timeout``) must still stop the vecstore server it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
HARNESS = """
import sys, time
from benchmarks.server import running_server
with running_server(startup_timeout_s=60) as server:
    print(server.base_url, flush=True)
    time.sleep(120)
"""


def test_sigterm_to_the_harness_stops_its_server() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HARNESS], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:"), base_url
        assert httpx.get(f"{base_url}/health", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base_url}/health", timeout=1)
            except httpx.TransportError:
                return  # nothing listens any more: the server was stopped
            time.sleep(0.2)
        raise AssertionError(f"the server at {base_url} outlived its harness")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
