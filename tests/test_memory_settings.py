"""Memory knobs: the SQLite page cache per connection, and handing freed heap back to the OS
(the indexer's use of it is tested in test_indexer.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from vecstore.settings import Settings
from vecstore.storage import heap
from vecstore.storage.database import create_engine


@pytest.mark.parametrize(("mb", "kib"), [(8, 8192), (1, 1024), (64, 65536)])
def test_every_pooled_sqlite_connection_gets_the_configured_page_cache(
    tmp_path: Path, mb: int, kib: int
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}", sqlite_cache_mb=mb)
    try:
        with engine.connect() as first, engine.connect() as second:
            for conn in (first, second):
                assert conn.execute(sa.text("PRAGMA cache_size")).scalar() == -kib
    finally:
        engine.dispose()


def test_the_cache_setting_defaults_small_and_rejects_nonsense() -> None:
    assert Settings.from_env({}).sqlite_cache_mb == 8
    assert Settings.from_env({"VECSTORE_SQLITE_CACHE_MB": "32"}).sqlite_cache_mb == 32
    for bad in ("0", "-5", "5000", "lots"):
        with pytest.raises(ValueError, match="sqlite_cache_mb"):
            Settings.from_env({"VECSTORE_SQLITE_CACHE_MB": bad})


def test_releasing_free_memory_is_safe_to_call_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    heap.release_free_memory()  # glibc: asks malloc_trim; elsewhere: nothing
    heap._malloc_trim.cache_clear()
    monkeypatch.setattr(heap.sys, "platform", "darwin")
    try:
        assert heap.release_free_memory() is False
    finally:
        heap._malloc_trim.cache_clear()
