"""The comparison benchmark's data sets (benchmarks/text_corpus.py, benchmarks/vector_sets.py) on
tiny data: the corpus rules on a synthetic source tree, exact truth against brute force, the
ann-benchmarks HDF5 reader, and the embedded set with its cache."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import text_corpus, vector_sets
from benchmarks.text_corpus import Corpus, drop_reason
from benchmarks.vector_sets import exact_top_k_l2, filtered_truth, recall_at, top_k

KEEP_STD = "Standard library paragraph that explains how the frobnicator handles its input."
DUP = "This paragraph appears in two modules and must be kept only once in the corpus."
KEEP_A = "Return the number of items in the queue, which is only an approximate figure."
KEEP_B = "The quick brown fox jumps over the lazy dog while the cat sleeps in the sun."
IN_TESTS = "This paragraph sits in a tests directory and must never be read at all."
IN_BROKEN = "This paragraph sits in a file that does not parse and is never kept."

DROPPED = {
    "doctest": "Use it like this, and the answer comes back as you expect:\n>>> frob(1, 2)\n3",
    "field_list": "Compute the frobnication of both values for the caller.\n"
    ":param x: the first value to combine with the other one",
    "rule_line": "Parameters\n----------\nx : int\n    The first value that the function combines.",
    "table_row": "| name | meaning of the column in the output table |\n"
    "| size | how many bytes the file occupies on the disk |",
    "directive": ".. note::\n   This function is slow on large inputs and should be avoided.",
    "literal_block": "    result = frobnicate(first_value, second_value)\n"
    "    print(result, file=sys.stderr, flush=True)",
    "section_header": "Args:\n    x: the first value that the function will combine with y.",
    "param_entry": "x : int, optional\n    The first value that the function will combine with y.",
    "length": "Too short to keep.",
    "not_prose": "Calls foo_bar(x) and baz_qux(y) via self._impl.run(a=1, b=2) then "
    "os.path.join(p, q) with n=3 m=4 k=5.",
}


@pytest.mark.parametrize(("reason", "paragraph"), sorted(DROPPED.items()))
def test_each_rule_drops_its_paragraph(reason: str, paragraph: str) -> None:
    assert drop_reason(paragraph) == reason


@pytest.mark.parametrize(
    "paragraph",
    [
        KEEP_A,
        # Prose with inline code and a role at the start of a line is still prose.
        "Semaphores manage a counter representing the number of release() calls minus\n"
        "the number of acquire() calls, plus an initial value.",
        ":class:`Foo` objects are created by the factory and cached for later reuse.",
        " ".join(["word"] * 200),
    ],
)
def test_prose_is_kept(paragraph: str) -> None:
    assert drop_reason(paragraph) is None


def test_too_long_is_dropped() -> None:
    assert drop_reason(" ".join(["word"] * 201)) == "length"
    assert drop_reason(" ".join(["word"] * 7)) == "length"


def _module(path: Path, *paragraphs: str, body: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = "\n\n".join(paragraphs)
    path.write_text(f'"""{doc}\n"""\n{body}', encoding="utf-8")


def _tree(root: Path) -> tuple[Path, Path, Path]:
    """(stdlib, site-packages, a file that importing pkg_a would create)."""
    stdlib, site = root / "stdlib", root / "site"
    sentinel = root / "IMPORTED"
    _module(stdlib / "stdmod.py", KEEP_STD, DUP)
    _module(stdlib / "test" / "test_stdmod.py", IN_TESTS)
    body = f"open({str(sentinel)!r}, 'w').close()\nraise RuntimeError('pkg_a was imported')\n"
    _module(site / "pkg_a" / "__init__.py", DUP, KEEP_A, *DROPPED.values(), body=body)
    (site / "pkg_b").mkdir()
    (site / "pkg_b" / "mod.py").write_text(
        'def f():\n    """The quick brown fox  jumps over\n    the lazy dog while the cat sleeps'
        ' in the sun.\n\n    Too short.\n    """\n',
        encoding="utf-8",
    )
    _module(site / "pkg_b" / "tests" / "test_mod.py", IN_TESTS)
    _module(site / "broken.py", IN_BROKEN, body="def (:\n")
    _dist(site, "fakepkg", "1.2")
    return stdlib, site, sentinel


def _dist(site: Path, name: str, version: str) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )


def _build(stdlib: Path, site: Path, cache: Path, **kw: Any) -> Corpus:
    return text_corpus.build(
        stdlib=stdlib, site_packages=[site], cache_dir=cache, progress=False, **kw
    )


def test_corpus_rules_sources_and_manifest(tmp_path: Path) -> None:
    stdlib, site, sentinel = _tree(tmp_path)
    corpus = _build(stdlib, site, tmp_path / "cache", seed=7)
    expected = sorted([KEEP_STD, DUP, KEEP_A, KEEP_B])
    order = list(range(len(expected)))
    random.Random(7).shuffle(order)
    assert corpus.texts == [expected[i] for i in order]  # sorted, then the seeded shuffle
    source = dict(zip(corpus.texts, corpus.sources, strict=True))
    # A copy keeps its first occurrence's source: stdlib is read first.
    assert source == {KEEP_STD: "stdlib", DUP: "stdlib", KEEP_A: "pkg_a", KEEP_B: "pkg_b"}
    m = corpus.manifest
    assert m["files_listed"] == 4  # stdmod, pkg_a, pkg_b.mod, broken; never a tests directory
    assert m["files_parsed"] == 3
    assert m["distributions"] == ["fakepkg==1.2"]
    assert m["counts_by_source"] == {"pkg_a": 1, "pkg_b": 1, "stdlib": 2}
    assert m["duplicates"] == 1
    dropped = dict.fromkeys(DROPPED, 1)
    dropped["length"] += 1  # pkg_b's "Too short."
    assert m["dropped"] == dropped
    assert m["corpus_sha256"] == text_corpus.texts_sha256(expected)
    assert m["texts_sha256"] == text_corpus.texts_sha256(corpus.texts)
    # Read with ast only: pkg_a's import would have written the sentinel (and raised).
    assert not sentinel.exists()
    assert "pkg_a" not in sys.modules


def test_corpus_is_deterministic_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdlib, site, _ = _tree(tmp_path)
    texts = [
        f"Paragraph number {i} describes the {i}th widget of the frobnicator." for i in range(40)
    ]
    _module(site / "many.py", *texts)
    first = _build(stdlib, site, tmp_path / "a", seed=3)
    again = _build(stdlib, site, tmp_path / "b", seed=3)  # a fresh scan into another cache
    assert not first.manifest["cache_hit"]
    assert not again.manifest["cache_hit"]
    assert again.texts == first.texts
    assert again.manifest["texts_sha256"] == first.manifest["texts_sha256"]
    other = _build(stdlib, site, tmp_path / "a", seed=4)
    assert sorted(other.texts) == sorted(first.texts)
    assert other.texts != first.texts
    assert other.manifest["texts_sha256"] != first.manifest["texts_sha256"]
    assert _build(stdlib, site, tmp_path / "a", seed=3, limit=5).texts == first.texts[:5]

    def no_scan(*a: object, **kw: object) -> None:
        raise AssertionError("scanned although cached")

    monkeypatch.setattr(text_corpus, "scan", no_scan)
    cached = _build(stdlib, site, tmp_path / "a", seed=3)
    assert cached.manifest["cache_hit"]
    assert cached.texts == first.texts
    assert cached.sources == first.sources
    _dist(site, "otherpkg", "0.1")  # another environment: another fingerprint, a new scan
    with pytest.raises(AssertionError, match="scanned although cached"):
        _build(stdlib, site, tmp_path / "a", seed=3)


def test_max_files_scans_a_spread_subset(tmp_path: Path) -> None:
    stdlib, site, _ = _tree(tmp_path)
    corpus = _build(stdlib, site, tmp_path / "cache", max_files=2)
    assert corpus.manifest["files_listed"] == 4
    assert corpus.manifest["files_scanned"] == 2
    # Evenly spaced over [stdmod, broken, pkg_a, pkg_b.mod]: stdmod and pkg_a.
    assert set(corpus.sources) == {"stdlib", "pkg_a"}


# -- exact truth ----------------------------------------------------------------------------------
def _brute(metric: str, base: np.ndarray, q: np.ndarray, rows: np.ndarray, k: int) -> list[int]:
    b, qq = base.astype(np.float64), q.astype(np.float64)
    scored = []
    for i in rows:
        if metric == "cosine":
            s = b[i] @ qq / (np.linalg.norm(b[i]) * np.linalg.norm(qq))
        elif metric == "ip":
            s = b[i] @ qq
        else:
            s = -np.linalg.norm(b[i] - qq)
        scored.append((-s, int(i)))
    return [i for _, i in sorted(scored)[:k]]


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_exact_truth_matches_brute_force(metric: Any) -> None:
    rng = np.random.default_rng(11)
    base = (rng.standard_normal((250, 16)) * 100).astype(np.float32)  # SIFT-like magnitudes
    queries = (rng.standard_normal((6, 16)) * 100).astype(np.float32)
    everything = np.arange(250)
    got = top_k(metric, base, queries, 100)
    one, ten = filtered_truth(metric, base, queries, 100)
    for qi, q in enumerate(queries):
        assert got[qi].tolist() == _brute(metric, base, q, everything, 100)
        # Filtered: only the filter's rows, all of them (3 and 30 of 250), then -1 padding.
        assert (
            one[qi].tolist()
            == _brute(metric, base, q, everything[everything % 100 == 0], 100) + [-1] * 97
        )
        tens = _brute(metric, base, q, everything[everything % 100 < 10], 100)
        assert len(tens) == 30
        assert ten[qi].tolist() == tens + [-1] * 70
        assert set(tens) <= {i for i in range(250) if i % 100 < 10}


def test_l2_is_exact_far_from_the_origin() -> None:
    # Here float32 scores alone misorder ~280 of the 400 positions; the float64 re-rank must not.
    rng = np.random.default_rng(12)
    base = (3000 + rng.standard_normal((250, 16)) * 10).astype(np.float32)
    queries = (3000 + rng.standard_normal((4, 16)) * 10).astype(np.float32)
    got = top_k("l2", base, queries, 100)
    for qi, q in enumerate(queries):
        assert got[qi].tolist() == _brute("l2", base, q, np.arange(250), 100)


def test_l2_subset_returns_original_row_ids() -> None:
    base = np.array([[0.0], [10.0], [1.0], [2.0]], dtype=np.float32)
    (ids,) = exact_top_k_l2(base, np.array([[0.1]], dtype=np.float32), 2, subset=np.array([1, 3]))
    assert ids.tolist() == [3, 1]


def test_recall_at_ignores_padding() -> None:
    truth = np.array([[4, 7, -1, -1], [1, 2, 3, 5]], dtype=np.int64)
    assert recall_at([[7, 4, 9, 8], [1, 2, 3, 5]], truth, 4) == 1.0
    assert recall_at([[7, -1, -1, -1], [1, 9, 9, 9]], truth, 4) == pytest.approx(
        (1 / 2 + 1 / 4) / 2
    )
    # Depth k cuts both lists: at k=1 only the first true neighbour counts.
    assert recall_at([[7], [1]], truth, 1) == pytest.approx(0.5)


# -- ann-benchmarks HDF5 ---------------------------------------------------------------------------
def _write_hdf5(path: Path, distance: str, train: np.ndarray, test: np.ndarray, cols: int) -> None:
    h5py = pytest.importorskip("h5py")
    metric = {"angular": "cosine", "euclidean": "l2"}.get(distance, "l2")
    neighbors = top_k(metric, train, test, cols)  # type: ignore[arg-type]
    with h5py.File(path, "w") as f:
        f.attrs["distance"] = distance
        f.create_dataset("train", data=train)
        f.create_dataset("test", data=test)
        f.create_dataset("neighbors", data=neighbors.astype(np.int32))
        f.create_dataset("distances", data=np.zeros(neighbors.shape, dtype=np.float32))


def test_hdf5_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("h5py")
    rng = np.random.default_rng(5)
    train = (rng.standard_normal((300, 8)) * 3).astype(np.float32)
    test = rng.standard_normal((4, 8)).astype(np.float32)
    _write_hdf5(tmp_path / "toy-8-angular.hdf5", "angular", train, test, 100)
    vs = vector_sets.from_hdf5(tmp_path / "toy-8-angular.hdf5", cache_dir=tmp_path / "c")
    assert (vs.name, vs.metric) == ("toy-8-angular", "cosine")
    np.testing.assert_allclose(np.linalg.norm(vs.train, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(vs.truth, top_k("cosine", train, test, 100))
    one, ten = filtered_truth("cosine", train, test)
    np.testing.assert_array_equal(vs.truth_1pct, one)
    np.testing.assert_array_equal(vs.truth_10pct, ten)
    assert set(vs.truth_1pct[vs.truth_1pct >= 0].tolist()) <= {0, 100, 200}
    assert vs.buckets.tolist() == [i % 100 for i in range(300)]
    assert vs.source["truth_check_recall_at_10"] == 1.0

    def no_truth(*a: object, **kw: object) -> None:
        raise AssertionError("filtered truth recomputed although cached")

    monkeypatch.setattr(vector_sets, "filtered_truth", no_truth)
    again = vector_sets.from_hdf5(tmp_path / "toy-8-angular.hdf5", cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(again.truth_10pct, ten)


def test_hdf5_euclidean_keeps_raw_rows_and_pads_short_truth(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    rng = np.random.default_rng(6)
    train = (rng.standard_normal((150, 8)) * 50).astype(np.float32)
    test = (rng.standard_normal((3, 8)) * 50).astype(np.float32)
    _write_hdf5(tmp_path / "toy-8-euclidean.hdf5", "euclidean", train, test, 10)
    vs = vector_sets.from_hdf5(tmp_path / "toy-8-euclidean.hdf5", cache_dir=tmp_path / "c")
    assert vs.metric == "l2"
    np.testing.assert_array_equal(vs.train, train)
    assert vs.truth.shape == (3, 100)
    np.testing.assert_array_equal(vs.truth[:, :10], top_k("l2", train, test, 10))
    assert (vs.truth[:, 10:] == -1).all()
    np.testing.assert_array_equal(vs.truth_10pct, filtered_truth("l2", train, test)[1])


def test_hdf5_unknown_distance_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    data = np.ones((5, 2), dtype=np.float32)
    _write_hdf5(tmp_path / "x.hdf5", "hamming", data, data[:1], 3)
    with pytest.raises(ValueError, match="hamming"):
        vector_sets.from_hdf5(tmp_path / "x.hdf5", cache_dir=tmp_path / "c")


def test_hdf5_without_h5py_names_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` raise ImportError
    with pytest.raises(ImportError, match="pip install h5py"):
        vector_sets.from_hdf5(tmp_path / "absent.hdf5")


# -- the embedded corpus ---------------------------------------------------------------------------
NOUNS = ["queue", "socket", "parser", "thread", "buffer", "cursor", "widget", "lock"]
VERBS = ["opens", "closes", "flushes", "resets", "locks", "reads", "writes"]


@pytest.fixture
def small_corpus(tmp_path: Path) -> Corpus:
    site = tmp_path / "site"
    texts = [
        f"The {noun} {verb} its state when the caller asks for it, and reports any error found."
        for noun in NOUNS
        for verb in VERBS
    ]
    _module(site / "many.py", *texts)
    (tmp_path / "stdlib").mkdir()
    return _build(tmp_path / "stdlib", site, tmp_path / "corpus-cache")


def test_embedded_corpus(
    small_corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vecstore.inference.host import InferenceConfig, ModelHost
    from vecstore.inference.registry import ModelRegistry

    corpus, cache = small_corpus, tmp_path / "vectors"
    assert len(corpus.texts) == 56
    embedded: list[int] = []
    real_embed = vector_sets._embed

    def counting(*a: Any, **kw: Any) -> Any:
        embedded.append(len(a[1]))
        return real_embed(*a, **kw)

    monkeypatch.setattr(vector_sets, "_embed", counting)
    monkeypatch.setattr(vector_sets, "CHECKPOINT_ROWS", 12)
    kw: dict[str, Any] = {"corpus": corpus, "cache_dir": cache, "batch_size": 8, "progress": False}
    vs = vector_sets.embedded_corpus(30, 10, **kw)
    assert embedded == [12, 12, 6, 10]  # checkpoints of 12 rows, then the queries
    assert sorted(p.name.split("-")[-1] for p in cache.glob("emb-*-train-n*.npz")) == ["n30.npz"]
    assert (vs.train.shape, vs.queries.shape) == ((30, 384), (10, 384))
    assert vs.train.dtype == vs.queries.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vs.train, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vs.queries, axis=1), 1.0, atol=1e-5)
    # Rows are the texts of the documented layout, in order (whatever the batching order was).
    host = ModelHost(ModelRegistry.load(), InferenceConfig(micro_batching=False))
    try:
        check = host.embed([corpus.texts[0], corpus.texts[29], corpus.texts[-1]], None).vectors
    finally:
        host.close()
    np.testing.assert_allclose(vs.train[[0, 29]], check[:2], atol=1e-5)
    np.testing.assert_allclose(vs.queries[0], check[2], atol=1e-5)
    # Held out: no query is a stored vector.
    assert float((vs.queries @ vs.train.T).max()) < 0.9999
    assert vs.buckets.tolist() == list(range(30))
    assert vs.truth[:, :30].tolist() == [
        _brute("cosine", vs.train, q, np.arange(30), 30) for q in vs.queries
    ]
    assert (vs.truth[:, 30:] == -1).all()
    assert (vs.truth_1pct[:, 0] == 0).all()
    assert (vs.truth_1pct[:, 1:] == -1).all()
    assert set(vs.truth_10pct[:, :10].ravel().tolist()) == set(range(10))
    assert (vs.truth_10pct[:, 10:] == -1).all()
    assert vs.source["model"] == "all-MiniLM-L6-v2"

    def fail(*a: object, **kw: object) -> None:
        raise AssertionError("embedded although cached")

    monkeypatch.setattr(vector_sets, "_embed", fail)
    again = vector_sets.embedded_corpus(30, 10, **kw)
    np.testing.assert_array_equal(again.train, vs.train)
    np.testing.assert_array_equal(again.truth_10pct, vs.truth_10pct)
    smaller = vector_sets.embedded_corpus(20, 5, **kw)  # cut from the larger files
    np.testing.assert_array_equal(smaller.train, vs.train[:20])
    np.testing.assert_array_equal(smaller.queries, vs.queries[:5])

    embedded.clear()
    monkeypatch.setattr(vector_sets, "_embed", counting)
    larger = vector_sets.embedded_corpus(34, 10, **kw)  # extends the cached 30 rows
    assert embedded == [4]
    np.testing.assert_array_equal(larger.train[:30], vs.train)
    with pytest.raises(ValueError, match="the corpus has 56"):
        vector_sets.embedded_corpus(50, 10, **kw)
