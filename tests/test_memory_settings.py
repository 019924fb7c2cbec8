"""Memory knobs: the SQLite page cache per connection, the allocator's mmap threshold and arena
cap, and handing freed heap back to the OS (the indexer's use of it: test_indexer.py)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from tests.conftest import wait_ready
from vecstore.app import create_app
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


def test_the_mmap_threshold_setting_defaults_to_glibc_and_rejects_nonsense() -> None:
    assert Settings.from_env({}).heap_mmap_threshold_kib == 0
    env = {"VECSTORE_HEAP_MMAP_THRESHOLD_KIB": "128"}
    assert Settings.from_env(env).heap_mmap_threshold_kib == 128
    for bad in ("-1", "40000", "big"):
        with pytest.raises(ValueError, match="heap_mmap_threshold_kib"):
            Settings.from_env({"VECSTORE_HEAP_MMAP_THRESHOLD_KIB": bad})


@pytest.fixture
def mallopt_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The ``(param, value)`` of each ``mallopt`` call, which glibc would have accepted."""
    calls: list[tuple[int, int]] = []

    def fake_mallopt(param: int, value: int) -> int:
        calls.append((param, value))
        return 1

    monkeypatch.setattr(heap, "_mallopt", lambda: fake_mallopt)
    return calls


def test_the_mmap_threshold_goes_to_mallopt_in_bytes(
    mallopt_calls: list[tuple[int, int]],
) -> None:
    assert heap.set_mmap_threshold(128) is True
    assert heap.set_mmap_threshold(0) is False  # 0: glibc's own default, nothing is set
    assert mallopt_calls == [(-3, 128 * 1024)]  # M_MMAP_THRESHOLD


def test_glibc_takes_the_threshold_and_other_platforms_ignore_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    if sys.platform.startswith("linux") and heap._mallopt() is not None:
        assert heap.set_mmap_threshold(128) is True
        assert heap.set_arena_max(2) is True
    heap._mallopt.cache_clear()
    monkeypatch.setattr(heap.sys, "platform", "darwin")
    try:
        assert heap.set_mmap_threshold(128) is False
        assert heap.set_arena_max(2) is False
    finally:
        heap._mallopt.cache_clear()


@pytest.mark.parametrize("kib", [128, 0])
def test_the_server_sets_the_threshold_before_opening_the_engine(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, kib: int
) -> None:
    import vecstore.app as app_module

    seen: list[int] = []
    monkeypatch.setattr(app_module, "set_mmap_threshold", lambda k: bool(seen.append(k)))
    app = create_app(msgspec.structs.replace(settings, heap_mmap_threshold_kib=kib))
    with TestClient(app=app) as client:
        wait_ready(client)
        assert client.get("/health").status_code == 200
    assert seen == [kib]


def test_the_arena_cap_defaults_to_one_and_rejects_nonsense() -> None:
    assert Settings.from_env({}).heap_arena_max == 1
    assert Settings.from_env({"VECSTORE_HEAP_ARENA_MAX": "0"}).heap_arena_max == 0
    for bad in ("-1", "5000", "few"):
        with pytest.raises(ValueError, match="heap_arena_max"):
            Settings.from_env({"VECSTORE_HEAP_ARENA_MAX": bad})


def test_the_arena_cap_goes_to_mallopt(mallopt_calls: list[tuple[int, int]]) -> None:
    assert heap.set_arena_max(2) is True
    assert heap.set_arena_max(0) is False  # 0: glibc's own default, nothing is set
    assert mallopt_calls == [(-8, 2)]  # M_ARENA_MAX


@pytest.mark.parametrize("arenas", [2, 0])
def test_the_server_caps_the_arenas_before_opening_the_engine(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, arenas: int
) -> None:
    import vecstore.app as app_module

    seen: list[str] = []
    monkeypatch.setattr(app_module, "set_arena_max", lambda n: bool(seen.append(f"arenas {n}")))
    opening = app_module.StorageEngine.open

    def open_engine(engine: object) -> None:
        seen.append("open")
        opening(engine)  # type: ignore[arg-type]

    monkeypatch.setattr(app_module.StorageEngine, "open", open_engine)
    app = create_app(msgspec.structs.replace(settings, heap_arena_max=arenas))
    with TestClient(app=app) as client:
        wait_ready(client)
    assert seen == [f"arenas {arenas}", "open"]
