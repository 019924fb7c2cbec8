"""A Hypothesis state machine driving the StorageEngine directly against a numpy/dict oracle.

Rules create and drop collections, upsert (new and existing ids, metadata present or absent),
delete by id and by filter, run the background work by hand (indexing, compaction, checkpoints),
close and reopen, "crash" and reopen (no shutdown checkpoint) and corrupt or delete index files
before reopening. After every step every collection must agree with the oracle: count, fetched
vectors byte for byte, metadata, scroll order, exact search (ties allowed) and non-exact search
(the right number of live results with exact scores).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from vecstore.domain import UNSET, Hit, IndexParams, RecordWrite, Unset
from vecstore.errors import CollectionNotFound, Conflict
from vecstore.storage import id_hashes, text_index, vector_table
from vecstore.storage.collection import MIN_TRAINING_VECTORS
from vecstore.storage.engine import EngineConfig, StorageEngine
from vecstore.storage.filters import parse_filter
from vecstore.storage.vector_index import VectorIndex

NAMES = ("alpha", "beta", "gamma")
POOL = tuple(f"id{i:02d}" for i in range(20))
BULK = 1030  # above the sq8 training minimum, and enough dead rows to compact the row table
TOL = 1e-5
COMPACTION_THRESHOLD = 0.2

_decode = msgspec.json.Decoder().decode

Meta = dict[str, Any]


@dataclass
class Stored:
    vector: np.ndarray  # float32, as written
    metadata: Meta
    content: str | None


@dataclass
class Coll:
    dim: int
    metric: str
    params: IndexParams
    records: dict[str, Stored] = field(default_factory=dict)


# -- strategies ---------------------------------------------------------------------------------
def _element() -> st.SearchStrategy[float]:
    # Half-integers make exact score ties likely; tiny magnitudes are flushed to 0 so float32
    # normalisation never underflows differently from the float64 oracle.
    floats = st.floats(-4, 4, width=32, allow_nan=False, allow_subnormal=False).map(
        lambda x: x if abs(x) > 1e-3 else 0.0
    )
    return st.one_of(st.integers(-3, 3).map(lambda i: i / 2), floats)


def vectors(dim: int) -> st.SearchStrategy[np.ndarray]:
    return st.lists(_element(), min_size=dim, max_size=dim).map(
        lambda xs: np.asarray(xs, dtype=np.float32)
    )


g_values: st.SearchStrategy[Any] = st.one_of(
    st.integers(0, 5), st.sampled_from([True, False, "2", None, 2.0, 3.5, [2]])
)
metadata_st: st.SearchStrategy[Meta | None] = st.one_of(
    st.none(),  # absent: keep what is stored
    st.just({}),
    st.fixed_dictionaries({"g": g_values}),
    st.fixed_dictionaries({"g": st.integers(0, 5), "tag": st.text("ab", max_size=3)}),
)
content_st = st.one_of(st.just(UNSET), st.none(), st.text("xyz", max_size=4))


@st.composite
def collection_specs(draw: st.DrawFn) -> tuple[int, str, IndexParams]:
    """(dim, metric, index params): small graphs and a low ef_search exercise the widening."""
    params = IndexParams(
        type=draw(st.sampled_from(["flat", "hnsw", "hnsw_sq8"])),
        m=draw(st.sampled_from([4, 8])),
        ef_construction=16,
        ef_search=draw(st.sampled_from([4, 16])),
        rescore_factor=2,
    )
    return draw(st.integers(2, 8)), draw(st.sampled_from(["cosine", "ip", "l2"])), params


FILTER_KINDS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "bulk")


@st.composite
def filters(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(FILTER_KINDS))
    if kind == "bulk":
        return {"bulk": True}
    if kind == "$in":
        return {"g": {"$in": draw(st.lists(st.integers(0, 5), max_size=3))}}
    value = draw(st.integers(0, 5))
    return {"g": value} if kind == "$eq" and draw(st.booleans()) else {"g": {kind: value}}


# -- the oracle -----------------------------------------------------------------------------------
def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _eq(present: bool, v: Any, want: Any) -> bool:
    if not present:
        return False
    if isinstance(want, bool) or isinstance(v, bool):
        return isinstance(v, bool) and isinstance(want, bool) and v is want
    if _is_number(want):
        return _is_number(v) and v == want
    return bool(v == want)


def oracle_match(raw: dict[str, Any], meta: Meta) -> bool:
    """The filter semantics of vecstore.storage.filters, for the filters this file generates."""
    ((key, spec),) = raw.items()
    present, v = key in meta, meta.get(key)
    if not isinstance(spec, dict):
        return _eq(present, v, spec)
    ((op, want),) = spec.items()
    if op == "$eq":
        return _eq(present, v, want)
    if op == "$ne":
        return not _eq(present, v, want)
    if op == "$in":
        return any(_eq(present, v, w) for w in want)
    if not (present and _is_number(v)):
        return False
    return bool({"$gt": v > want, "$gte": v >= want, "$lt": v < want, "$lte": v <= want}[op])


def oracle_scores(metric: str, coll: Coll, ids: list[str], query: np.ndarray) -> dict[str, float]:
    if not ids:
        return {}
    vecs = np.stack([coll.records[i].vector for i in ids]).astype(np.float64)
    q = query.astype(np.float64)
    if metric == "cosine":
        vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-30)
        q = q / max(float(np.linalg.norm(q)), 1e-30)
    scores = -np.linalg.norm(vecs - q, axis=1) if metric == "l2" else vecs @ q
    return dict(zip(ids, scores.tolist(), strict=True))


def close(a: float, b: float) -> bool:
    return abs(a - b) <= TOL * (1.0 + abs(b))


def check_rows_are_exact(rows: list[Hit], coll: Coll, scores: dict[str, float]) -> None:
    ids = [r.external_id for r in rows]
    assert len(set(ids)) == len(ids), f"duplicate ids in {ids}"
    for r in rows:
        assert r.external_id in scores, f"{r.external_id} is not a live/allowed record"
        assert close(r.score, scores[r.external_id]), (r.external_id, r.score, scores)
        assert r.metadata == coll.records[r.external_id].metadata
    for a, b in pairwise(rows):
        assert a.score >= b.score, "results are not sorted by score"


def check_top_k(rows: list[Hit], coll: Coll, scores: dict[str, float], k: int) -> None:
    """Exact top-k: same score multiset as brute force; strictly better ids must all be there."""
    expected_n = min(k, len(scores))
    assert len(rows) == expected_n
    check_rows_are_exact(rows, coll, scores)
    ordered = sorted(scores.values(), reverse=True)[:expected_n]
    got = sorted((scores[r.external_id] for r in rows), reverse=True)
    assert all(close(a, b) for a, b in zip(got, ordered, strict=True)), (got, ordered)
    if expected_n:
        kth = ordered[-1]
        must = {i for i, s in scores.items() if s > kth + TOL * (1.0 + abs(kth))}
        assert must <= {r.external_id for r in rows}


# -- the machine ----------------------------------------------------------------------------------
class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="vecstore-sm-"))
        self.config = EngineConfig(
            database_url=f"sqlite:///{self.tmp / 'catalog.db'}",
            index_dir=self.tmp / "indexes",
            sqlite_synchronous="NORMAL",
            indexer_batch_size=64,
            compaction_threshold=COMPACTION_THRESHOLD,
            # Small, so filtered non-exact searches also take the index path with a selector.
            exact_filter_max_matches=3,
        )
        self.model: dict[str, Coll] = {}
        # Id fingerprints for tables of any size, and used for every multi-id lookup.
        self.patch = pytest.MonkeyPatch()
        self.patch.setattr(id_hashes, "MIN_ROWS", 1)
        self.patch.setattr(vector_table, "HASHED_LOOKUP_MIN", 1)
        self.engine = self._open()

    def _open(self) -> StorageEngine:
        engine = StorageEngine(self.config)
        engine.open(start_indexer=False)
        return engine

    def teardown(self) -> None:
        self.patch.undo()
        self.engine.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _pick(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(self.model)), label="collection")

    def _has_collections(self) -> bool:
        return bool(self.model)

    def _index_file(self, name: str) -> Path:
        cid = self.engine.get_collection(name).id
        return self.config.index_dir / f"collection-{cid}.faiss"

    # -- catalog ----------------------------------------------------------------------------
    def _create(self, name: str, dim: int, metric: str, params: IndexParams) -> None:
        if name in self.model:
            with pytest.raises(Conflict):
                self.engine.create_collection(
                    name=name,
                    dim=dim,
                    metric=metric,
                    description=None,
                    params=params,
                    embedding_model=None,
                )
            return
        info = self.engine.create_collection(
            name=name, dim=dim, metric=metric, description=None, params=params, embedding_model=None
        )
        assert (info.name, info.dim, info.metric, info.vector_count) == (name, dim, metric, 0)
        assert info.index.type == params.type
        self.model[name] = Coll(dim, metric, params)

    @initialize(name=st.sampled_from(NAMES), spec=collection_specs())
    def first_collection(self, name: str, spec: tuple[int, str, IndexParams]) -> None:
        self._create(name, *spec)

    @rule(name=st.sampled_from(NAMES), spec=collection_specs())
    def create_collection(self, name: str, spec: tuple[int, str, IndexParams]) -> None:
        self._create(name, *spec)

    @precondition(_has_collections)
    @rule(data=st.data())
    def drop_collection(self, data: st.DataObject) -> None:
        name = self._pick(data)
        path = self._index_file(name)
        self.engine.drop_collection(name)
        del self.model[name]
        assert not path.exists()
        with pytest.raises(CollectionNotFound):
            self.engine.get_collection(name)
        with pytest.raises(CollectionNotFound):
            self.engine.drop_collection(name)

    # -- writes ------------------------------------------------------------------------------
    @precondition(_has_collections)
    @rule(data=st.data())
    def upsert(self, data: st.DataObject) -> None:
        name = self._pick(data)
        coll = self.model[name]
        writes: list[RecordWrite] = []
        for _ in range(data.draw(st.integers(1, 6), label="batch size")):
            ext = data.draw(st.sampled_from(POOL))
            vector = data.draw(vectors(coll.dim))
            meta = data.draw(metadata_st)
            content = data.draw(content_st)
            writes.append(RecordWrite(ext, vector, UNSET if meta is None else meta, content))
        result = self.engine.upsert(name, writes)
        expected: list[str] = []
        for w in writes:
            old = coll.records.get(w.external_id)
            expected.append("updated" if old is not None else "inserted")
            coll.records[w.external_id] = Stored(
                vector=w.vector.copy(),
                metadata=(
                    (old.metadata if old else {})
                    if isinstance(w.metadata, Unset)
                    else dict(w.metadata)
                ),
                content=(old.content if old else None)
                if isinstance(w.content, Unset)
                else w.content,
            )
        assert result.statuses == expected
        assert result.inserted == expected.count("inserted")
        assert result.updated == expected.count("updated")

    @precondition(_has_collections)
    @rule(
        data=st.data(),
        seed=st.integers(0, 2**32 - 1),
        then=st.sampled_from(["nothing", "maintain", "churn"]),
    )
    def bulk_upsert(self, data: st.DataObject, seed: int, then: str) -> None:
        """Enough rows to train sq8; "churn" replaces them all after indexing them, which makes
        the next maintain compact both the index (tombstones) and the row table (dead rows)."""
        name = self._pick(data)
        self._bulk(name, seed)
        if then == "nothing":
            return
        runtime = self.engine.runtime(name)
        self.engine.maintain(runtime)
        if runtime.params.type == "hnsw_sq8":
            event("bulk: sq8 quantiser trained")
            assert not runtime.index.needs_training
        if then == "churn":
            rebuilds = self.engine.index_rebuilds
            self._bulk(name, seed + 1)
            self.engine.maintain(runtime)
            assert self.engine.index_rebuilds == rebuilds + 1, "tombstones were not compacted"
            assert runtime.table.dead_count == 0, "the row table was not compacted"
            event("bulk: index and row table compacted")

    def _bulk(self, name: str, seed: int) -> None:
        coll = self.model[name]
        rng = np.random.default_rng(seed)
        vecs = rng.standard_normal((BULK, coll.dim)).astype(np.float32)
        writes = [
            RecordWrite(f"b{i:04d}", vecs[i], {"g": i % 6, "bulk": True}) for i in range(BULK)
        ]
        result = self.engine.upsert(name, writes)
        assert result.inserted == sum(1 for w in writes if w.external_id not in coll.records)
        for w in writes:
            old = coll.records.get(w.external_id)
            assert isinstance(w.metadata, dict)
            coll.records[w.external_id] = Stored(
                w.vector.copy(), dict(w.metadata), old.content if old else None
            )

    @precondition(_has_collections)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        name = self._pick(data)
        coll = self.model[name]
        ids = data.draw(
            st.lists(st.sampled_from((*POOL, "b0000", "b0001", "missing")), min_size=1, max_size=5)
        )
        deleted, not_found = self.engine.delete(name, ids)
        unique = list(dict.fromkeys(ids))
        assert deleted == [i for i in unique if i in coll.records]
        assert not_found == [i for i in unique if i not in coll.records]
        for i in deleted:
            del coll.records[i]

    @precondition(_has_collections)
    @rule(data=st.data(), raw=filters())
    def delete_by_filter(self, data: st.DataObject, raw: dict[str, Any]) -> None:
        name = self._pick(data)
        coll = self.model[name]
        node = parse_filter(raw)
        assert node is not None
        doomed = [i for i, s in coll.records.items() if oracle_match(raw, s.metadata)]
        assert self.engine.delete_by_filter(name, node) == len(doomed)
        for i in doomed:
            del coll.records[i]

    # -- background work and restarts ---------------------------------------------------------
    @precondition(_has_collections)
    @rule(data=st.data(), force_checkpoint=st.booleans())
    def maintain(self, data: st.DataObject, force_checkpoint: bool) -> None:
        name = self._pick(data)
        runtime = self.engine.runtime(name)
        self.engine.maintain(runtime, force_checkpoint=force_checkpoint)
        index = runtime.index
        assert index.deleted_fraction <= COMPACTION_THRESHOLD
        if index.needs_training:
            assert runtime.fresh_count() < MIN_TRAINING_VECTORS
        else:
            assert runtime.fresh_count() == 0, "maintain left fresh vectors unindexed"
        path = self._index_file(name)
        if force_checkpoint and self.model[name].records:
            assert path.exists()
        if force_checkpoint and path.exists():
            # A forced checkpoint writes what is in memory, so a restart has nothing to redo.
            coll = self.model[name]
            saved, _ = VectorIndex.load(
                path,
                collection_id=runtime.id,
                dim=coll.dim,
                metric=coll.metric,
                params=coll.params,
            )
            assert saved.ids.tolist() == index.ids.tolist()

    @rule()
    def close_and_reopen(self) -> None:
        self.engine.close()
        self.engine = self._open()

    @rule()
    def crash_and_reopen(self) -> None:
        """No shutdown checkpoint: the next open must replay what the index files lack."""
        self.engine.db.dispose()
        self.engine = self._open()

    @precondition(_has_collections)
    @rule(
        data=st.data(),
        mode=st.sampled_from(["delete", "flip", "truncate", "garbage"]),
        graceful=st.booleans(),
    )
    def damage_index_and_reopen(self, data: st.DataObject, mode: str, graceful: bool) -> None:
        name = self._pick(data)
        path = self._index_file(name)
        if graceful:
            self.engine.close()
        else:
            self.engine.db.dispose()
        existed = path.exists()
        if existed:
            blob = bytearray(path.read_bytes())
            if mode == "delete":
                path.unlink()
            elif mode == "garbage":
                path.write_bytes(b"definitely not an index" * 3)
            elif blob and mode == "flip":
                pos = data.draw(st.integers(0, len(blob) - 1), label="byte")
                blob[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
                path.write_bytes(bytes(blob))
            elif blob:  # truncate (an already empty file stays empty)
                path.write_bytes(bytes(blob[: data.draw(st.integers(0, len(blob) - 1))]))
        self.engine = self._open()
        assert self.engine.collection_names() == sorted(self.model)
        if existed and mode != "flip":
            # Rebuilt from the records: nothing indexed yet, everything served exactly.
            assert self.engine.stats(name).index_vectors == 0

    # -- reads with drawn arguments ------------------------------------------------------------
    @precondition(_has_collections)
    @rule(data=st.data(), raw=filters(), exact=st.booleans())
    def filtered_search(self, data: st.DataObject, raw: dict[str, Any], exact: bool) -> None:
        name = self._pick(data)
        coll = self.model[name]
        node = parse_filter(raw)
        assert node is not None
        query = data.draw(vectors(coll.dim), label="query")
        k = data.draw(st.integers(1, 12), label="k")
        allowed = [i for i, s in coll.records.items() if oracle_match(raw, s.metadata)]
        assert self.engine.count(name, node) == len(allowed)
        scores = oracle_scores(coll.metric, coll, allowed, query)
        rows = self.engine.search(name, query, k, node=node, exact=exact)
        if exact:
            check_top_k(rows, coll, scores, k)
        else:
            assert len(rows) == min(k, len(allowed))
            check_rows_are_exact(rows, coll, scores)

    @precondition(_has_collections)
    @rule(data=st.data())
    def search(self, data: st.DataObject) -> None:
        name = self._pick(data)
        coll = self.model[name]
        query = data.draw(vectors(coll.dim), label="query")
        k = data.draw(st.integers(1, len(coll.records) + 3), label="k")
        self._check_search(name, coll, query, k)

    def _check_search(self, name: str, coll: Coll, query: np.ndarray, k: int) -> None:
        scores = oracle_scores(coll.metric, coll, list(coll.records), query)
        check_top_k(self.engine.search(name, query, k, exact=True), coll, scores, k)
        rows = self.engine.search(name, query, k)
        assert len(rows) == min(k, len(scores))
        check_rows_are_exact(rows, coll, scores)

    # -- invariants ---------------------------------------------------------------------------
    @invariant()
    def collections_agree(self) -> None:
        assert self.engine.collection_names() == sorted(self.model)
        assert [c.name for c in self.engine.list_collections()] == sorted(self.model)

    @invariant()
    def records_agree(self) -> None:
        for name, coll in self.model.items():
            n = len(coll.records)
            assert self.engine.count(name, None) == n
            assert self.engine.get_collection(name).vector_count == n
            fetched = self.engine.fetch(name, [*coll.records, "never-written"], True)
            assert set(fetched) == set(coll.records)
            for ext, stored in coll.records.items():
                record = fetched[ext]
                assert record.vector is not None
                assert record.vector.dtype == np.float32
                assert record.vector.tobytes() == stored.vector.tobytes()
                assert record.metadata == stored.metadata
                assert record.content == stored.content
            seen: list[str] = []
            after: str | None = None
            limit = max(7, n // 4)
            while True:
                page, after = self.engine.scroll(
                    name, after=after, limit=limit, node=None, include_vectors=False
                )
                assert len(page) == limit or after is None
                seen.extend(r.external_id for r in page)
                if after is None:
                    break
            assert seen == sorted(coll.records)

    @invariant()
    def keyword_index_agrees(self) -> None:
        """The BM25 index holds the live records' content (it is written in the same
        transaction): every record whose content has a word is found by that word, and only
        live records with content are ever found."""
        for name, coll in self.model.items():
            runtime = self.engine.runtime(name)
            with self.engine.db.connect() as conn:  # no stale rows skew BM25's statistics
                indexed = conn.exec_driver_sql(
                    f"SELECT count(*) FROM {text_index.table_name(runtime.id)}"
                ).scalar()
            assert indexed == sum(1 for r in coll.records.values() if r.content)
            words = {w for r in coll.records.values() if r.content for w in r.content.split()}
            for word in sorted(words)[:4]:
                found = self.engine.keyword_search(runtime, word, len(coll.records) + 5)
                rows = runtime.table.rows_for_ids(np.asarray([i for i, _ in found]))
                assert (rows >= 0).all()  # never a deleted or replaced record
                externals = {runtime.table.external_ids[r] for r in rows.tolist()}
                expected = {
                    ext
                    for ext, r in coll.records.items()
                    if r.content and word in r.content.split()
                }
                assert expected <= externals, (word, expected, externals)
                assert all(coll.records[e].content for e in externals)
                assert all(score > 0 for _, score in found)

    @invariant()
    def searches_agree(self) -> None:
        for name, coll in self.model.items():
            rng = np.random.default_rng(len(coll.records))
            queries = [rng.standard_normal(coll.dim).astype(np.float32)]
            if coll.records:
                queries.append(next(iter(coll.records.values())).vector)
            for query in queries:
                for k in (1, 5, len(coll.records) + 1):
                    self._check_search(name, coll, query, k)
            # Rerank scores exactly whatever it is given, and reports what is missing; the
            # pool and a stride of the bulk ids, live or not, through the id fingerprints.
            asked = [*POOL, *(f"b{i:04d}" for i in range(0, BULK, 37)), "nope"]
            rows, missing = self.engine.runtime(name).rerank(queries[0], asked)
            assert missing == [i for i in asked if i not in coll.records]
            some = [i for i in asked if i in coll.records]
            assert sorted(r.external_id for r in rows) == sorted(some)
            check_rows_are_exact(rows, coll, oracle_scores(coll.metric, coll, some, queries[0]))


EngineMachine.TestCase.settings = settings(
    max_examples=20,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestEngineStateMachine = EngineMachine.TestCase
