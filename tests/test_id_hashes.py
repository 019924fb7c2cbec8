"""Many external ids to rows through the id fingerprints (``vecstore/storage/id_hashes.py``).

The oracle is the table's dict, which every write keeps current: whatever the snapshot's age,
``rows_of_external`` must give exactly what the dict gives, for live, killed, re-written,
appended-since and unknown ids alike.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vecstore.domain import IndexParams
from vecstore.storage import id_hashes, vector_table
from vecstore.storage.collection import CollectionRuntime
from vecstore.storage.id_hashes import IdHashes
from vecstore.storage.vector_table import VectorTable

DIM = 4


@pytest.fixture
def small_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshots for tables of a few rows, and the hashed path for any number of ids."""
    monkeypatch.setattr(id_hashes, "MIN_ROWS", 1)
    monkeypatch.setattr(vector_table, "HASHED_LOOKUP_MIN", 1)


def _append(table: VectorTable, external_ids: list[str]) -> None:
    start = int(table.ids[-1]) + 1 if table.size else 1
    n = len(external_ids)
    table.append(
        np.arange(start, start + n, dtype=np.int64),
        np.zeros((n, DIM), dtype=np.float32),
        external_ids,
        [b""] * n,
    )


def _kill(table: VectorTable, external_ids: list[str]) -> None:
    rows = [table.row_by_external[e] for e in external_ids]
    table.kill_rows(np.asarray(rows, dtype=np.int64))


def _snapshot(table: VectorTable) -> IdHashes:
    _, size, external_ids, rows = table.id_hashes_source()
    return IdHashes.of(external_ids, rows, size)


def _dict_rows(table: VectorTable, external_ids: list[str]) -> list[int]:
    return [table.row_by_external.get(e, -1) for e in external_ids]


def test_a_fresh_snapshot_finds_every_live_id_and_nothing_else(small_thresholds: None) -> None:
    table = VectorTable(DIM)
    _append(table, [f"doc-{i}" for i in range(500)])
    table.id_hashes = _snapshot(table)
    asked = [f"doc-{i}" for i in range(0, 600, 3)] + ["", "doc-", "DOC-1", "doc-1 "]
    assert table.rows_of_external(asked).tolist() == _dict_rows(table, asked)
    assert table.rows_of_external(["doc-7"]).tolist() == [7]


def test_killed_rewritten_and_appended_ids_after_the_snapshot(small_thresholds: None) -> None:
    table = VectorTable(DIM)
    _append(table, [f"doc-{i}" for i in range(100)])
    table.id_hashes = _snapshot(table)
    _kill(table, ["doc-1", "doc-2", "doc-3"])  # deleted
    _append(table, ["doc-2"])  # doc-2 written again: a new row, after the snapshot's
    _append(table, ["new-1", "new-2"])  # never in the snapshot
    asked = ["doc-1", "doc-2", "doc-3", "doc-4", "new-1", "new-2", "never"]
    got = table.rows_of_external(asked).tolist()
    assert got == _dict_rows(table, asked)
    assert got == [-1, 100, -1, 4, 101, 102, -1]


def test_a_row_whose_first_hash_matches_but_second_does_not_is_not_taken(
    small_thresholds: None,
) -> None:
    """A forged snapshot in which 'doc-0's row carries the first hash of an id the table does
    not hold: the second half tells them apart, so the unknown id is reported absent."""
    table = VectorTable(DIM)
    _append(table, ["doc-0", "doc-1"])
    real = _snapshot(table)
    impostor = "someone-else"
    hashes = real.hashes.copy()
    hashes[real.rows == 0] = hash(impostor)
    order = np.argsort(hashes, kind="stable")
    table.id_hashes = IdHashes(hashes[order], real.checks[order], real.rows[order], real.covers)
    assert table.rows_of_external([impostor, "doc-1"]).tolist() == [-1, 1]
    # doc-0's own first half is no longer in the snapshot: the dict answers for it.
    assert table.rows_of_external(["doc-0"]).tolist() == [0]


def test_compaction_drops_the_snapshot(small_thresholds: None) -> None:
    table = VectorTable(DIM)
    _append(table, [f"doc-{i}" for i in range(10)])
    table.id_hashes = _snapshot(table)
    layout = table.layout
    _kill(table, ["doc-0", "doc-1"])
    table.compact()
    assert table.id_hashes is None
    assert table.layout == layout + 1
    assert table.rows_of_external(["doc-0", "doc-2", "doc-9"]).tolist() == [-1, 0, 7]


def test_an_empty_snapshot_finds_nothing_and_defers_to_the_dict(small_thresholds: None) -> None:
    table = VectorTable(DIM)
    _append(table, ["a", "b"])
    _kill(table, ["a", "b"])
    table.id_hashes = _snapshot(table)
    assert len(table.id_hashes.hashes) == 0
    _append(table, ["a"])
    assert table.rows_of_external(["a", "b"]).tolist() == [2, -1]


def test_when_a_snapshot_is_due() -> None:
    table = VectorTable(DIM)
    _append(table, [f"doc-{i}" for i in range(id_hashes.MIN_ROWS - 1)])
    assert not table.id_hashes_due()  # too few rows to pay
    _append(table, ["one-more"])
    assert table.id_hashes_due()
    table.id_hashes = _snapshot(table)
    assert not table.id_hashes_due()
    covers = table.id_hashes.covers
    _append(table, [f"late-{i}" for i in range(covers // id_hashes.STALE_FRACTION)])
    assert not table.id_hashes_due()  # grown by exactly the allowed fraction
    _append(table, ["late-last"])
    assert table.id_hashes_due()


def _runtime() -> CollectionRuntime:
    return CollectionRuntime(1, "c", DIM, "cosine", IndexParams(type="flat"))


def test_runtime_builds_the_snapshot_outside_the_table_lock(
    small_thresholds: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer can take the table lock while the fingerprints are computed."""
    runtime = _runtime()
    _append(runtime.table, [f"doc-{i}" for i in range(50)])
    writer_got_lock = threading.Event()
    real_of = IdHashes.of

    def slow_of(*args: object) -> IdHashes:
        def write() -> None:
            with runtime.table_lock.write():
                writer_got_lock.set()

        writer = threading.Thread(target=write)
        writer.start()
        writer.join(timeout=5)
        return real_of(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(IdHashes, "of", staticmethod(slow_of))
    assert runtime.hash_external_ids()
    assert writer_got_lock.is_set()
    assert runtime.table.id_hashes is not None
    assert not runtime.hash_external_ids()  # not due again


def test_a_compaction_during_the_build_discards_it(
    small_thresholds: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = _runtime()
    _append(runtime.table, [f"doc-{i}" for i in range(50)])
    real_of = IdHashes.of

    def of_then_compact(*args: object) -> IdHashes:
        built = real_of(*args)  # type: ignore[arg-type]
        with runtime.table_lock.write():
            _kill(runtime.table, ["doc-0"])
            runtime.table.compact()
        return built

    monkeypatch.setattr(IdHashes, "of", staticmethod(of_then_compact))
    assert not runtime.hash_external_ids()
    assert runtime.table.id_hashes is None  # its rows were the old numbering
    assert runtime.table.rows_of_external(["doc-1"]).tolist() == [0]


class TableAgainstDict(RuleBasedStateMachine):
    """Appends, kills, rewrites, compactions and snapshots in any order: the hashed lookup
    always answers as the dict does, and ``first_row_after`` (which skips its array search
    past the last row) as a search of the ids does."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = pytest.MonkeyPatch()
        self.patch.setattr(id_hashes, "MIN_ROWS", 1)
        self.patch.setattr(vector_table, "HASHED_LOOKUP_MIN", 1)
        self.table = VectorTable(DIM)
        self.live: set[str] = set()

    def teardown(self) -> None:
        self.patch.undo()

    @rule(ids=st.lists(st.integers(0, 60), min_size=1, max_size=20, unique=True))
    def write(self, ids: list[int]) -> None:
        names = [f"id-{i}" for i in ids]
        _kill(self.table, [n for n in names if n in self.live])  # an upsert kills, then appends
        _append(self.table, names)
        self.live.update(names)

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        names = data.draw(st.lists(st.sampled_from(sorted(self.live)), unique=True, max_size=10))
        _kill(self.table, names)
        self.live.difference_update(names)

    @rule()
    def compact(self) -> None:
        self.table.compact()

    @rule()
    def snapshot(self) -> None:
        self.table.id_hashes = _snapshot(self.table)

    @invariant()
    def lookups_agree(self) -> None:
        asked = [f"id-{i}" for i in range(70)] + ["id-3", "other"]
        got = self.table.rows_of_external(asked).tolist()
        assert got == _dict_rows(self.table, asked)
        rows = [r for r in got if r >= 0]
        assert sorted(self.table.external_ids[r] for r in set(rows)) == sorted(self.live)

    @invariant()
    def first_row_after_agrees_with_a_search_of_the_ids(self) -> None:
        ids = self.table.ids
        last = int(ids[-1]) if len(ids) else 0
        for internal_id in {-1, 0, 1, last // 2, last - 1, last, last + 1}:
            expected = int(np.searchsorted(ids, internal_id, side="right"))
            assert self.table.first_row_after(internal_id) == expected


TableAgainstDict.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
TestTableAgainstDict = TableAgainstDict.TestCase
