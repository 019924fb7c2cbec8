"""A wheel install (what the Docker image does) must carry and find the Alembic migrations."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_migrations_and_an_installed_copy_migrates(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = wheels.glob("vecstore-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "vecstore/migrations/env.py" in names
    assert "vecstore/migrations/versions/0001_initial.py" in names
    assert "vecstore/migrations/versions/0002_keyword_index.py" in names
    assert "vecstore/inference/models.toml" in names  # the built-in model registry
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    script = (
        "import sqlalchemy as sa, vecstore.storage.database as d;"
        "assert str(d.__file__).startswith({!r}), d.__file__;"
        "e = d.create_engine('sqlite:///' + {!r}); d.migrate(e);"
        "print(sorted(sa.inspect(e).get_table_names()));"
        "from vecstore.inference.registry import ModelRegistry, resolve_files;"
        "spec = ModelRegistry.load().get('all-MiniLM-L6-v2');"
        "print(spec.dimension, resolve_files(spec).onnx.name)"
    ).format(str(target), str(tmp_path / "db.sqlite"))
    out = subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert "record_vectors" in out.stdout
    assert "collections" in out.stdout
    assert "records_fts_" not in out.stdout  # keyword tables come with collections
    assert "384 model.onnx" in out.stdout  # the installed copy finds the registry and model
