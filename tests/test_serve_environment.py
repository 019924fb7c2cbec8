"""``vecstore serve`` prepares its process before FAISS and numpy load: OpenMP's threads wait
passively (they would otherwise spin between a batched search's parallel regions, on the cores
the requests need), unless the operator chose otherwise, and the malloc arena cap is set before
any library starts a thread."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Runs the real command with uvicorn.run replaced: everything up to serving happens (settings,
# the data directory's lock, create_app, which loads FAISS and its OpenMP runtime).
_SERVE_WITHOUT_LISTENING = """
import sys
import uvicorn
uvicorn.run = lambda *args, **kwargs: print("serving", sorted(kwargs.items()), file=sys.stderr)
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


def test_the_arena_cap_is_set_before_numpy_starts_its_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vecstore import cli
    from vecstore.settings import Settings

    seen: list[int] = []
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # prepare_process sets a default in os.environ
    monkeypatch.setattr(cli, "set_arena_max", lambda n: bool(seen.append(n)))
    cli.prepare_process(Settings.from_env({}, data_dir=tmp_path, heap_arena_max=3))
    assert seen == [3]
    # serve_command calls prepare_process first: the command line module must not have loaded
    # numpy (whose BLAS starts threads, each keeping the arena it gets) by then.
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, vecstore.cli; print('numpy' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert loaded.stdout.strip() == "False"


def test_uvicorn_serves_without_parsing_forwarded_headers(tmp_path: Path) -> None:
    # vecstore reads no X-Forwarded-* header (logs and rate limits go by key), so uvicorn is
    # told not to parse them on every request.
    shown = _openmp_settings(tmp_path)
    assert "('proxy_headers', False)" in shown
    assert "('access_log', False)" in shown  # vecstore writes its own access log
