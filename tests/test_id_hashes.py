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

from tests.oracles import counted
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
    dict_lookups = counted(table)
    live = [f"doc-{i}" for i in range(0, 500, 3)]
    assert table.rows_of_external(live).tolist() == list(range(0, 500, 3))
    assert dict_lookups.gets == 0  # every live id answered by the fingerprints
    absent = [f"doc-{i}" for i in range(500, 600, 3)] + ["", "doc-", "DOC-1", "doc-1 "]
    asked = live + absent
    assert table.rows_of_external(asked).tolist() == _dict_rows(table, asked)
    assert dict_lookups.gets == len(asked)  # the oracle's: the snapshot is current, so absent
    # ids need no dict either
    assert table.rows_of_external(["doc-7"]).tolist() == [7]


def test_an_outgrown_snapshot_is_not_used(small_thresholds: None) -> None:
    """Once more than an eighth of the rows are newer than the snapshot, the dict answers
    alone: the hashing would be paid for and then the dict asked anyway."""
    table = VectorTable(DIM)
    _append(table, [f"doc-{i}" for i in range(80)])
    table.id_hashes = _snapshot(table)
    _append(table, [f"doc-{i}" for i in range(80, 90)])
    dict_lookups = counted(table)
    asked = [f"doc-{i}" for i in range(90)]
    assert table.rows_of_external(asked).tolist() == list(range(90))
    assert dict_lookups.gets == 10  # 10 new of 80: still used
    _append(table, ["doc-90"])
    dict_lookups.gets = 0
    assert table.rows_of_external([*asked, "doc-90"]).tolist() == list(range(91))
    assert dict_lookups.gets == 91


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


def _forged(real: IdHashes, first: int, check: int, row: int, *, before: bool) -> IdHashes:
    """``real`` with one more entry, placed before or after the entries of equal first half."""
    hashes = np.append(real.hashes, first)
    checks = np.append(real.checks, check)
    rows = np.append(real.rows, row)
    order = np.lexsort((np.arange(len(hashes)) * (-1 if before else 1), hashes))
    return IdHashes(hashes[order], checks[order], rows[order], real.covers)


def test_a_row_whose_first_hash_matches_but_second_does_not_is_not_taken(
    small_thresholds: None,
) -> None:
    """A forged entry carrying the first half of an id the table does not hold, with doc-0's
    row and second half: the second half tells them apart, so the unknown id is absent."""
    table = VectorTable(DIM)
    _append(table, ["doc-0", "doc-1"])
    real = _snapshot(table)
    impostor = "someone-else"
    check_of_doc_0 = int(real.checks[real.rows == 0][0])
    table.id_hashes = _forged(real, hash(impostor), check_of_doc_0, 0, before=False)
    assert table.id_hashes.unique_first_halves
    assert table.rows_of_external([impostor, "doc-1", "doc-0"]).tolist() == [-1, 1, 0]


def test_two_ids_with_one_first_half_go_to_the_dict(small_thresholds: None) -> None:
    """Two entries share doc-0's first half, the other one first: the search lands on it, its
    second half differs, and because first halves are not unique the dict answers."""
    table = VectorTable(DIM)
    _append(table, ["doc-0", "doc-1"])
    real = _snapshot(table)
    table.id_hashes = _forged(real, hash("doc-0"), 12345, 1, before=True)
    assert not table.id_hashes.unique_first_halves
    dict_lookups = counted(table)
    assert table.rows_of_external(["doc-0", "doc-1"]).tolist() == [0, 1]
    assert dict_lookups.gets == 1


def test_a_current_snapshot_answers_absent_ids_without_the_dict(small_thresholds: None) -> None:
    """Nothing appended since the snapshot: an id it does not hold, or holds at a dead row,
    has no live row. Once a row is appended, those go to the dict again."""
    table = VectorTable(DIM)
    _append(table, [f"doc-{i}" for i in range(50)])
    table.id_hashes = _snapshot(table)
    _kill(table, ["doc-3"])
    dict_lookups = counted(table)
    assert table.rows_of_external(["doc-1", "doc-3", "nope"]).tolist() == [1, -1, -1]
    assert dict_lookups.gets == 0
    _append(table, ["doc-3"])  # written again, after the snapshot
    dict_lookups.gets = 0
    assert table.rows_of_external(["doc-1", "doc-3", "nope"]).tolist() == [1, 50, -1]
    assert dict_lookups.gets == 2  # doc-3 (its fingerprint leads to the dead row) and nope


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
        assert writer_got_lock.is_set(), "the build held the table lock"
        return real_of(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(IdHashes, "of", staticmethod(slow_of))
    assert runtime.hash_external_ids()
    assert runtime.table.id_hashes is not None
    assert not runtime.hash_external_ids()  # not due again


def test_a_compaction_during_the_build_discards_it(
    small_thresholds: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = _runtime()
    _append(runtime.table, [f"doc-{i}" for i in range(50)])
    real_of = IdHashes.of

    def compact() -> None:
        with runtime.table_lock.write():
            _kill(runtime.table, ["doc-0"])
            runtime.table.compact()

    def of_then_compact(*args: object) -> IdHashes:
        built = real_of(*args)  # type: ignore[arg-type]
        compaction = threading.Thread(target=compact)  # as the indexer's own would, elsewhere
        compaction.start()
        compaction.join(timeout=5)
        assert not compaction.is_alive(), "the build held the table lock"
        return built

    monkeypatch.setattr(IdHashes, "of", staticmethod(of_then_compact))
    assert not runtime.hash_external_ids()
    assert runtime.table.id_hashes is None  # its rows were the old numbering
    assert runtime.table.rows_of_external(["doc-1"]).tolist() == [0]


class TableAgainstDict(RuleBasedStateMachine):
    """Appends, kills, rewrites, compactions and snapshots in any order: the hashed lookup
    always answers as the dict does."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = pytest.MonkeyPatch()
        self.patch.setattr(id_hashes, "MIN_ROWS", 1)
        self.patch.setattr(vector_table, "HASHED_LOOKUP_MIN", 1)
        self.patch.setattr(vector_table, "_MIN_CAPACITY", 8)  # arrays reallocated as rows come
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


TableAgainstDict.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
TestTableAgainstDict = TableAgainstDict.TestCase
