"""``vecstore serve`` prepares its process before FAISS loads: OpenMP's threads wait passively
(they would otherwise spin between a batched search's parallel regions, on the cores the
requests need), unless the operator chose otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Runs the real command with uvicorn.run replaced: everything up to serving happens (settings,
# the data directory's lock, create_app, which loads FAISS and its OpenMP runtime).
_SERVE_WITHOUT_LISTENING = """
import sys
import uvicorn
uvicorn.run = lambda *args, **kwargs: print("serving", file=sys.stderr)
from vecstore import cli
sys.exit(cli.main(["serve", "--data-dir", sys.argv[1], "--port", "1"]))
"""


def _openmp_settings(tmp_path: Path, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environ.update(env, OMP_DISPLAY_ENV="VERBOSE", VECSTORE_ADMIN_KEY="k" * 40)
    done = subprocess.run(
        [sys.executable, "-c", _SERVE_WITHOUT_LISTENING, str(tmp_path / "data")],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "serving" in done.stderr
    return done.stderr  # libgomp prints its settings there when it loads


def test_openmp_waits_passively_in_the_server(tmp_path: Path) -> None:
    # Unset, libgomp also says PASSIVE but spins 300,000 times first: the spin count tells.
    shown = _openmp_settings(tmp_path)
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in shown
    assert "GOMP_SPINCOUNT = '0'" in shown


def test_an_operators_openmp_wait_policy_is_kept(tmp_path: Path) -> None:
    shown = _openmp_settings(tmp_path, OMP_WAIT_POLICY="ACTIVE")
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in shown
    assert "GOMP_SPINCOUNT = '0'" not in shown
