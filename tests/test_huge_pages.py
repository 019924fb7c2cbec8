"""Transparent huge pages under the index arrays (``vecstore.storage.huge_pages``, the
``index_huge_pages`` setting): the range arithmetic everywhere, the kernel's answer where Linux
has THP."""

from __future__ import annotations

import base64
import ctypes
import mmap
import platform
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient

from tests.conftest import ADMIN_KEY, flush_indexes, make_settings, wait_ready
from vecstore.app import create_app
from vecstore.domain import IndexParams
from vecstore.settings import Settings
from vecstore.storage import huge_pages
from vecstore.storage.engine import StorageEngine
from vecstore.storage.vector_index import VectorIndex

MIB = 1024 * 1024
HAS_THP = sys.platform.startswith("linux") and Path("/sys/kernel/mm/transparent_hugepage").is_dir()


def _kernel_at_least(major: int, minor: int) -> bool:
    parts = platform.release().split(".")
    try:
        return (int(parts[0]), int(parts[1].split("-")[0])) >= (major, minor)
    except (IndexError, ValueError):
        return False


def _huge_bytes_in(start: int, stop: int) -> int:
    """Bytes of the mappings overlapping ``[start, stop)`` that huge pages back, as the kernel
    reports them (``/proc/self/smaps``; 0 where unknown)."""
    total = 0
    try:
        with open("/proc/self/smaps", encoding="ascii", errors="replace") as smaps:
            inside = False
            for line in smaps:
                head = line.split(" ", 1)[0]
                if "-" in head and not head.endswith(":"):
                    lo, hi = (int(part, 16) for part in head.split("-"))
                    inside = lo < stop and hi > start
                elif inside and line.startswith("AnonHugePages:"):
                    total += int(line.split()[1]) * 1024
    except OSError:
        return 0
    return total


@pytest.fixture
def advised(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The bytes of each ``huge_pages.advise`` call the engine makes (the real one still runs)."""
    calls: list[int] = []
    real = huge_pages.advise

    def recording(regions: Any, **options: Any) -> int:
        calls.append(real(regions, **options))
        return calls[-1]

    monkeypatch.setattr(huge_pages, "advise", recording)
    return calls


def test_only_the_aligned_inside_of_a_range_is_advised() -> None:
    two = huge_pages.HUGE_PAGE
    assert huge_pages.aligned_inside(0, 2 * two) == (0, 2 * two)
    assert huge_pages.aligned_inside(1, 3 * two) == (two, 2 * two)  # both ends rounded inward
    assert huge_pages.aligned_inside(two - 1, two + 1) == (two, two)
    assert huge_pages.aligned_inside(1, two) is None  # no whole huge page inside
    assert huge_pages.aligned_inside(5 * two, 0) is None


def test_ranges_under_a_huge_page_are_left_alone() -> None:
    assert huge_pages.advise([(4096, 4096), (3 * MIB + 1, MIB)]) == 0


def test_an_index_names_its_large_arrays() -> None:
    for kind, arrays in (("flat", 1), ("hnsw", 2), ("hnsw_sq8", 2)):
        index = VectorIndex(16, "cosine", IndexParams(type=kind, m=8))
        assert index.memory_regions() == []
        index.add(np.arange(1000), np.ones((1000, 16), dtype=np.float32))
        regions = index.memory_regions()
        assert len(regions) == arrays
        assert all(address > 0 and size > 0 for address, size in regions)
        code_bytes = 1000 * 16 * (1 if kind == "hnsw_sq8" else 4)
        assert regions[0][1] == code_bytes


@pytest.mark.skipif(not HAS_THP, reason="this kernel has no transparent huge pages")
def test_an_advised_array_is_backed_by_huge_pages_at_once() -> None:
    if not _kernel_at_least(6, 1):
        pytest.skip("MADV_COLLAPSE needs Linux 6.1; older kernels leave it to khugepaged")
    # A mapping of its own (numpy advises its own large arrays already; FAISS's are plain
    # malloc), every page touched.
    size = 16 * MIB
    memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        memory.write(b"\x01" * size)
        pointer = ctypes.c_char.from_buffer(memory)
        address = ctypes.addressof(pointer)
        del pointer  # (a live export would keep the mapping from closing)
        assert _huge_bytes_in(address, address + size) == 0
        advised = huge_pages.advise([(address, size)])
        assert advised >= 14 * MIB
        assert _huge_bytes_in(address, address + size) >= 2 * MIB
        assert memory[:] == b"\x01" * size  # the contents survive the copy into huge pages
    finally:
        memory.close()


def _fill(client: TestClient, rows: int, dim: int) -> None:
    vectors = np.random.default_rng(0).normal(size=(rows, dim)).astype("<f4")
    response = client.post(
        "/v1/collections", json={"name": "big", "dim": dim, "index": {"type": "flat"}}
    )
    assert response.status_code == 201, response.text
    for lo in range(0, rows, 1000):
        items = [
            {"external_id": f"r{i}", "vector": base64.b64encode(vectors[i].tobytes()).decode()}
            for i in range(lo, min(lo + 1000, rows))
        ]
        response = client.post("/v1/collections/big/bulk_upsert", json={"items": items})
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("enabled", [True, False])
def test_the_indexer_advises_grown_indexes_unless_turned_off(
    tmp_path: Path, enabled: bool, advised: list[int]
) -> None:
    app = create_app(make_settings(tmp_path / "data", index_huge_pages=enabled))
    with TestClient(app=app) as client:
        wait_ready(client)
        client.headers["x-api-key"] = ADMIN_KEY
        _fill(client, 6000, 256)  # 6 MB of float32 codes: at least one aligned 2 MiB inside
        flush_indexes(app)
        engine = app.state.services.engine
        engine.maintain(engine.runtime("big"))  # a burst indexed: the indexer's own call
        with engine.runtime("big").index_lock.read():
            backed = sum(
                _huge_bytes_in(address, address + size)
                for address, size in engine.runtime("big").index.memory_regions()
            )
        hits = client.post(
            "/v1/collections/big/search", json={"vector": [0.5] * 256, "k": 3}
        ).json()["data"]["results"]
        assert len(hits) == 3
    if not enabled:
        assert advised == []
        return
    if HAS_THP:
        assert sum(advised) >= 2 * MIB
    if HAS_THP and _kernel_at_least(6, 1):
        assert backed >= 2 * MIB  # the kernel's own answer: the index sits on huge pages


def _unopened_after_checkpoint(tmp_path: Path, rows: int, dim: int) -> StorageEngine:
    """The engine, not yet opened, of a fresh app over a data directory where ``rows`` vectors
    were written, indexed and checkpointed: a reopen finds nothing left to index."""
    settings = make_settings(tmp_path / "data")
    app = create_app(settings)
    with TestClient(app=app) as client:
        wait_ready(client)
        client.headers["x-api-key"] = ADMIN_KEY
        _fill(client, rows, dim)
        flush_indexes(app)
    engine: StorageEngine = create_app(settings).state.services.engine
    return engine


def test_a_reopened_index_goes_on_huge_pages_in_the_indexer_not_at_open(
    tmp_path: Path, advised: list[int]
) -> None:
    engine = _unopened_after_checkpoint(tmp_path, 6000, 256)
    advised.clear()
    engine.open(start_indexer=False)
    try:
        assert advised == []  # open() leaves it to the indexer
        runtime = engine.runtime("big")
        assert runtime.huge_pages_due
        engine.maintain(runtime)  # the indexer's first round
        assert not runtime.huge_pages_due
        assert len(advised) == 1
        if HAS_THP:
            assert advised[0] >= 2 * MIB
        engine.maintain(runtime)  # nothing new: not advised again
        assert len(advised) == 1
    finally:
        engine.close()


def test_the_setting_defaults_on_and_reads_from_the_environment() -> None:
    assert Settings.from_env({}).index_huge_pages is True
    assert Settings.from_env({"VECSTORE_INDEX_HUGE_PAGES": "false"}).index_huge_pages is False


def test_advising_holds_no_index_lock_a_writer_would_wait_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collapse copies the index (~0.5 s per 150 MB). Under the index lock it would make a
    writer wait (changing ``ef_search`` takes the write side), and, since the lock prefers
    writers, every search behind that writer."""
    engine = _unopened_after_checkpoint(tmp_path, 3000, 64)
    engine.open(start_indexer=False)
    runtime = engine.runtime("big")
    writer_got_in: list[bool] = []
    writers: list[threading.Thread] = []  # joined once the lock is free, whatever happened

    def advise_while_a_writer_comes(regions: Any, **_: Any) -> int:
        assert regions  # the regions were read before the call
        done = threading.Event()

        def writer() -> None:
            with runtime.index_lock.write():
                done.set()

        thread = threading.Thread(target=writer)
        thread.start()
        writers.append(thread)
        writer_got_in.append(done.wait(timeout=5))
        return 0

    monkeypatch.setattr(huge_pages, "advise", advise_while_a_writer_comes)
    try:
        engine.maintain(runtime)
    finally:
        for thread in writers:
            thread.join(timeout=30)
        engine.close()
    assert writer_got_in == [True]
