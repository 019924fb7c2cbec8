"""Engine creation, SQLite pragmas and running the Alembic migrations."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config


def migrations_dir() -> Path:
    """The Alembic scripts: the repository's migrations/ in a checkout, else the installed copy."""
    checkout = Path(__file__).resolve().parents[2] / "migrations"
    if (checkout / "env.py").exists():
        return checkout
    installed = Path(str(importlib.resources.files("vecstore.migrations")))
    return installed


_SYNC_MODES = {"OFF", "NORMAL", "FULL", "EXTRA"}


def create_engine(
    url: str, *, sqlite_synchronous: str = "FULL", sqlite_cache_mb: int = 8
) -> sa.Engine:
    if url.startswith("sqlite"):
        mode = sqlite_synchronous.upper()
        if mode not in _SYNC_MODES:
            raise ValueError(f"sqlite_synchronous must be one of {sorted(_SYNC_MODES)}")
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=8,
            max_overflow=8,
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={mode}")
            cur.execute("PRAGMA busy_timeout=30000")
            # Negative: KiB. Up to 16 pooled connections each hold this much at most.
            cur.execute(f"PRAGMA cache_size=-{int(sqlite_cache_mb) * 1024}")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
