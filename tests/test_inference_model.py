"""The bundled default embedder, in-process: golden vectors, batch invariance, semantics,
truncation, the query cache and micro-batching under concurrency (``vecstore.inference``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vecstore import deadlines
from vecstore.domain import FloatArray
from vecstore.errors import Overloaded, RequestTimedOut
from vecstore.inference.batcher import BatchPolicy, MicroBatcher
from vecstore.inference.host import InferenceConfig, ModelHost
from vecstore.inference.onnx_embedder import Tokenized
from vecstore.inference.registry import ModelRegistry

MODEL = "all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 256
GOLDEN = Path(__file__).parent / "data" / "golden_minilm.json"

SHORT = "A man is eating food."
LONG_600 = " ".join(f"word{i % 50} and more text" for i in range(150))  # ~600 words
MIXED_LENGTHS = [
    "Hi.",
    " ".join(["the weather is pleasant and the river flows slowly"] * 20),  # ~180 words
    SHORT,
    "Rain.",
    "A considerably longer sentence about libraries, archives, and the people who use them.",
    LONG_600,  # over the token budget: truncated
]


class BatchLog:
    """Records every model run a host makes (its ``observe_batch`` callback)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, model: str, texts: int, tokens: int, seconds: float) -> None:
        assert model == MODEL
        assert tokens >= texts
        with self._lock:
            self.sizes.append(texts)

    def clear(self) -> None:
        with self._lock:
            self.sizes.clear()


def make_host(registry: ModelRegistry, log: BatchLog | None = None, **config: Any) -> ModelHost:
    return ModelHost(
        registry, InferenceConfig(default_embedding_model=MODEL, **config), observe_batch=log
    )


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry.load()


@pytest.fixture(scope="module")
def direct(registry: ModelRegistry) -> Iterator[ModelHost]:
    """No micro-batching, no cache: every call runs the model in the caller's thread."""
    host = make_host(registry, micro_batching=False, query_cache_entries=0)
    yield host
    host.close()


@pytest.fixture(scope="module")
def batched(registry: ModelRegistry) -> Iterator[ModelHost]:
    """The server's default path: micro-batching on (cache off, to see the model's output)."""
    host = make_host(registry, micro_batching=True, query_cache_entries=0)
    yield host
    host.close()


def one_by_one(host: ModelHost, texts: Sequence[str]) -> FloatArray:
    return np.stack([host.embed([t], MODEL).vectors[0] for t in texts])


# -- golden vectors ----------------------------------------------------------------------------
def golden() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return data


def test_golden_file_matches_the_registered_model(registry: ModelRegistry) -> None:
    data = golden()
    spec = registry.get(MODEL)
    # A different model file would make every golden assertion below fail for a known reason:
    # regenerate with tests/data/make_golden.py once the change is deliberate.
    assert data["model"] == spec.id
    assert data["onnx_sha256"] == spec.onnx.sha256
    assert len(data["sentences"]) == 4
    vectors = np.asarray([s["vector"] for s in data["sentences"]])
    assert vectors.shape == (4, DIM)
    assert any(ord(c) > 127 for s in data["sentences"] for c in s["text"])
    # Four different sentences, four clearly different vectors.
    sims = vectors @ vectors.T
    assert np.all(sims[~np.eye(4, dtype=bool)] < 0.9)


@pytest.mark.parametrize("index", range(4))
@pytest.mark.parametrize("host_name", ["direct", "batched"])
def test_model_reproduces_golden_vectors(
    index: int, host_name: str, request: pytest.FixtureRequest
) -> None:
    host: ModelHost = request.getfixturevalue(host_name)
    entry = golden()["sentences"][index]
    out = host.embed([entry["text"]], MODEL)
    assert out.model == MODEL
    assert out.vectors.shape == (1, DIM)
    assert out.vectors.dtype == np.float32
    assert out.token_counts == [entry["tokens"]]
    assert out.truncated == [False]
    np.testing.assert_allclose(out.vectors[0], np.asarray(entry["vector"]), atol=1e-4)
    assert np.linalg.norm(out.vectors[0].astype(np.float64)) == pytest.approx(1.0, abs=1e-5)


def test_default_model_is_used_when_none_is_named(direct: ModelHost) -> None:
    entry = golden()["sentences"][1]
    out = direct.embed([entry["text"]], None)
    assert out.model == MODEL
    np.testing.assert_allclose(out.vectors[0], np.asarray(entry["vector"]), atol=1e-4)
    # An alias names the same model.
    aliased = direct.embed([entry["text"]], "sentence-transformers/all-MiniLM-L6-v2")
    assert aliased.model == MODEL
    np.testing.assert_allclose(aliased.vectors[0], out.vectors[0], atol=1e-6)


# -- batch invariance --------------------------------------------------------------------------
@pytest.mark.parametrize("host_name", ["direct", "batched"])
def test_a_text_embeds_the_same_alone_and_inside_a_mixed_batch(
    host_name: str, request: pytest.FixtureRequest, direct: ModelHost
) -> None:
    host: ModelHost = request.getfixturevalue(host_name)
    alone = one_by_one(direct, MIXED_LENGTHS)
    together = host.embed(MIXED_LENGTHS, MODEL)
    assert together.vectors.shape == (len(MIXED_LENGTHS), DIM)
    np.testing.assert_allclose(together.vectors, alone, atol=1e-5)
    # ... and in another order, with itself twice: rows follow the input, never the sort.
    order = [5, 2, 0, 2, 4, 1, 3]
    shuffled = host.embed([MIXED_LENGTHS[i] for i in order], MODEL)
    np.testing.assert_allclose(shuffled.vectors, alone[order], atol=1e-5)
    assert shuffled.token_counts == [together.token_counts[i] for i in order]


def test_batch_larger_than_one_model_run_keeps_rows_in_order(
    registry: ModelRegistry, direct: ModelHost
) -> None:
    # max_texts=8 splits 40 texts into several model runs (and batcher parts).
    texts = [f"sentence number {i} is about topic {i % 7}" + " extra" * (i % 11) for i in range(40)]
    expected = direct.embed(texts, MODEL).vectors
    for micro_batching in (False, True):
        log = BatchLog()
        host = make_host(
            registry,
            log,
            micro_batching=micro_batching,
            query_cache_entries=0,
            policy=BatchPolicy(max_texts=8),
        )
        try:
            out = host.embed(texts, MODEL)
        finally:
            host.close()
        np.testing.assert_allclose(out.vectors, expected, atol=1e-5)
        assert sum(log.sizes) == len(texts)
        if micro_batching:
            assert max(log.sizes) <= 8
            assert len(log.sizes) >= 5


# -- semantics ---------------------------------------------------------------------------------
CLOSE_PAIRS = [
    ("A man is eating food.", "A man is eating a piece of bread."),
    ("How do I reset my password?", "I forgot my password and need to change it"),
    ("The new movie is awesome.", "The new film is great, I loved it."),
]
UNRELATED = [
    "The stock market fell sharply today.",
    "The cat sleeps on the warm windowsill.",
    "Quantum computers use qubits.",
]


def test_semantically_close_pairs_rank_above_unrelated_pairs(direct: ModelHost) -> None:
    firsts = [a for a, _ in CLOSE_PAIRS]
    seconds = [b for _, b in CLOSE_PAIRS]
    a = direct.embed(firsts, MODEL).vectors.astype(np.float64)
    b = direct.embed(seconds, MODEL).vectors.astype(np.float64)
    u = direct.embed(UNRELATED, MODEL).vectors.astype(np.float64)
    close = np.einsum("ij,ij->i", a, b)  # unit vectors: dot product is the cosine
    assert np.all(close > 0.6), close
    for i in range(len(CLOSE_PAIRS)):
        unrelated = np.concatenate([u @ a[i], u @ b[i]])
        # The paired sentences are closer to each other than either is to an unrelated one.
        assert close[i] > unrelated.max() + 0.3, (CLOSE_PAIRS[i], close[i], unrelated)
        # ... and closer than to the other pairs' sentences.
        others = [j for j in range(len(CLOSE_PAIRS)) if j != i]
        assert close[i] > max(float(a[i] @ b[j]) for j in others)
        assert close[i] > max(float(b[i] @ a[j]) for j in others)


# -- truncation --------------------------------------------------------------------------------
def test_a_long_text_is_truncated_to_the_token_budget(direct: ModelHost) -> None:
    assert len(LONG_600.split()) >= 590
    out = direct.embed([LONG_600, SHORT], MODEL)
    assert out.token_counts == [MAX_TOKENS, 8]  # [CLS] a man is eating food . [SEP]
    assert out.truncated == [True, False]
    assert out.total_tokens == MAX_TOKENS + 8
    # Only the first 256 tokens count: text beyond them changes nothing.
    longer = direct.embed([LONG_600 + " completely different ending about volcanoes"], MODEL)
    np.testing.assert_allclose(longer.vectors[0], out.vectors[0], atol=1e-6)


def test_token_counts_include_cls_and_sep(direct: ModelHost) -> None:
    out = direct.embed(["hello world", "hello", ""], MODEL)
    assert out.token_counts == [4, 3, 2]
    assert out.truncated == [False, False, False]


def test_truncation_boundary_is_exact(direct: ModelHost) -> None:
    # "hello" is one word piece: 254 of them plus [CLS] and [SEP] fill the budget exactly.
    fits = direct.embed(["hello " * 254], MODEL)
    assert fits.token_counts == [MAX_TOKENS]
    assert fits.truncated == [False]
    over = direct.embed(["hello " * 255], MODEL)
    assert over.token_counts == [MAX_TOKENS]
    assert over.truncated == [True]


# -- query cache -------------------------------------------------------------------------------
def test_a_repeated_query_runs_the_model_once(registry: ModelRegistry, direct: ModelHost) -> None:
    log = BatchLog()
    host = make_host(registry, log, micro_batching=False, query_cache_entries=16)
    try:
        first = host.embed(["where is the train station?"], MODEL, query=True)
        assert (host.cache.hits, host.cache.misses, len(log.sizes)) == (0, 1, 1)
        again = host.embed(["where is the train station?"], MODEL, query=True)
        assert (host.cache.hits, host.cache.misses, len(log.sizes)) == (1, 1, 1)
        np.testing.assert_array_equal(again.vectors, first.vectors)
        assert again.token_counts == first.token_counts
        assert again.truncated == first.truncated
        expected = direct.embed(["where is the train station?"], MODEL).vectors
        np.testing.assert_allclose(first.vectors, expected, atol=1e-6)
        # A mixed request: the cached text is served, only the new one reaches the model.
        mixed = host.embed(["a brand new query", "where is the train station?"], MODEL, query=True)
        assert host.cache.hits == 2
        assert log.sizes[-1] == 1
        assert len(log.sizes) == 2
        np.testing.assert_array_equal(mixed.vectors[1], first.vectors[0])
        # The caller's copy is its own: changing it leaves the cache intact.
        again.vectors[0, :] = 0.0
        third = host.embed(["where is the train station?"], MODEL, query=True)
        np.testing.assert_array_equal(third.vectors, first.vectors)
    finally:
        host.close()


def test_query_cache_is_bounded_and_evicts_least_recently_used(registry: ModelRegistry) -> None:
    log = BatchLog()
    host = make_host(registry, log, micro_batching=False, query_cache_entries=2)
    try:
        for text in ("alpha query", "beta query"):
            host.embed([text], MODEL, query=True)
        host.embed(["alpha query"], MODEL, query=True)  # hit: alpha is now the most recent
        assert len(log.sizes) == 2
        host.embed(["gamma query"], MODEL, query=True)  # evicts beta, the least recent
        assert len(host.cache) == 2
        assert len(log.sizes) == 3
        host.embed(["alpha query"], MODEL, query=True)  # still cached
        assert len(log.sizes) == 3
        host.embed(["gamma query"], MODEL, query=True)  # still cached
        assert len(log.sizes) == 3
        host.embed(["beta query"], MODEL, query=True)  # was evicted: the model runs again
        assert len(log.sizes) == 4
        assert len(host.cache) == 2
    finally:
        host.close()


def test_query_cache_entries_zero_disables_the_cache(registry: ModelRegistry) -> None:
    log = BatchLog()
    host = make_host(registry, log, micro_batching=False, query_cache_entries=0)
    try:
        first = host.embed(["the same query"], MODEL, query=True)
        second = host.embed(["the same query"], MODEL, query=True)
        assert len(log.sizes) == 2
        assert host.cache.hits == 0
        assert len(host.cache) == 0
        np.testing.assert_allclose(second.vectors, first.vectors, atol=1e-6)
    finally:
        host.close()


def test_documents_are_never_cached(registry: ModelRegistry) -> None:
    log = BatchLog()
    host = make_host(registry, log, micro_batching=False, query_cache_entries=16)
    try:
        host.embed(["a document text"], MODEL)
        host.embed(["a document text"], MODEL, query=False)
        assert len(log.sizes) == 2
        assert len(host.cache) == 0
        assert host.cache.hits == 0
        # A document embedding does not seed the cache for the same text as a query either.
        host.embed(["a document text"], MODEL, query=True)
        assert len(log.sizes) == 3
        assert host.cache.hits == 0
        assert len(host.cache) == 1
    finally:
        host.close()


# -- micro-batching under concurrency ----------------------------------------------------------
def test_concurrent_callers_share_model_runs_and_get_their_own_vectors(
    registry: ModelRegistry, direct: ModelHost
) -> None:
    # 12 single-text requests and 4 of three texts each, all different, of varied lengths.
    requests: list[list[str]] = [
        [f"request {i}: " + " ".join(["token"] * (i * 7)) + f" about subject {i}"]
        for i in range(12)
    ]
    requests += [
        [f"multi {i} part {j} " + "word " * (3 * j + i) for j in range(3)] for i in range(4)
    ]
    expected = [one_by_one(direct, texts) for texts in requests]

    log = BatchLog()
    # A long window: once one batch runs, later arrivals wait for company and share a run.
    policy = BatchPolicy(window_s=0.05, workers=2)
    host = make_host(registry, log, micro_batching=True, query_cache_entries=0, policy=policy)
    try:
        host.embed(["warm up: load the model"], MODEL)
        log.clear()
        barrier = threading.Barrier(len(requests))
        results: list[FloatArray | None] = [None] * len(requests)
        errors: list[BaseException] = []

        def call(i: int) -> None:
            try:
                barrier.wait(timeout=30)
                results[i] = host.embed(requests[i], MODEL, query=i % 2 == 0).vectors
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
    finally:
        host.close()
    for i, (got, want) in enumerate(zip(results, expected, strict=True)):
        assert got is not None, i
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"request {i}")
    assert sum(log.sizes) == sum(len(r) for r in requests)
    assert max(log.sizes) > 1, log.sizes  # at least one model run served several texts
    assert len(log.sizes) < len(requests)


# -- MicroBatcher with a fake model ------------------------------------------------------------
FAKE_DIM = 3


def fake_run(items: Sequence[Tokenized]) -> FloatArray:
    """Row i encodes the first token id of item i, so order mistakes are visible."""
    out = np.zeros((len(items), FAKE_DIM), dtype=np.float32)
    for row, item in enumerate(items):
        out[row] = [item.ids[0], item.length, 1.0]
    return out


def tokens(start: int, count: int, length: int = 4) -> list[Tokenized]:
    return [Tokenized([start + i] * length, False) for i in range(count)]


def test_a_large_request_is_cut_into_parts_and_comes_back_in_order() -> None:
    sizes: list[int] = []

    def run(items: Sequence[Tokenized]) -> FloatArray:
        sizes.append(len(items))
        return fake_run(items)

    batcher = MicroBatcher(run, FAKE_DIM, BatchPolicy(window_s=0.0, max_texts=32, workers=2))
    try:
        items = tokens(1000, 100)
        out = batcher.embed(items)
    finally:
        batcher.close()
    assert out.shape == (100, FAKE_DIM)
    np.testing.assert_array_equal(out[:, 0], np.arange(1000, 1100, dtype=np.float32))
    assert sorted(sizes) == [4, 32, 32, 32]


def test_a_large_requests_parts_hold_texts_of_similar_length() -> None:
    """Regression: parts were cut in arrival order, so one long text in every 16 made each run
    as wide as it (2.1x the token positions on mixed-length passages in the rerank benchmark)."""
    widths: list[list[int]] = []

    def run(items: Sequence[Tokenized]) -> FloatArray:
        widths.append(sorted({item.length for item in items}))
        return fake_run(items)

    # 64 texts: every fourth one is 200 tokens long, the others 5
    items = [Tokenized([i] * (200 if i % 4 == 0 else 5), False) for i in range(64)]
    batcher = MicroBatcher(run, FAKE_DIM, BatchPolicy(window_s=0.0, max_texts=16, workers=1))
    try:
        out = batcher.embed(items)
    finally:
        batcher.close()
    np.testing.assert_array_equal(out[:, 0], np.arange(64, dtype=np.float32))
    np.testing.assert_array_equal(out[:, 1], [item.length for item in items])
    assert sorted(widths) == [[5], [5], [5], [200]]


def test_a_lone_mid_sized_request_runs_on_every_worker_at_once() -> None:
    """Regression: a lone request of up to 16 texts ran in its caller's thread on one core, so
    /v1/rerank of 10 documents left the second embedding worker idle."""
    both_running = threading.Barrier(2, timeout=10)  # broken unless two runs overlap
    sizes: list[int] = []

    def run(items: Sequence[Tokenized]) -> FloatArray:
        sizes.append(len(items))
        both_running.wait()
        return fake_run(items)

    batcher = MicroBatcher(run, FAKE_DIM, BatchPolicy(window_s=0.0, max_texts=16, workers=2))
    try:
        out = batcher.embed(tokens(0, 10))
    finally:
        batcher.close()
    np.testing.assert_array_equal(out[:, 0], np.arange(10, dtype=np.float32))
    assert sizes == [5, 5]


def test_part_sizes_spread_a_request_over_the_workers() -> None:
    policy = BatchPolicy(max_texts=16, workers=2, spread_min_texts=4)
    assert policy.part_size(1) == 16  # a query: one run (inline on an idle model)
    assert policy.part_size(7) == 16  # too small to be worth two hand-offs
    assert policy.part_size(8) == 4
    assert policy.part_size(10) == 5
    assert policy.part_size(20) == 10
    assert policy.part_size(1000) == 16
    assert BatchPolicy(max_texts=16, workers=1).part_size(10) == 16


def test_a_batch_respects_the_padded_token_budget() -> None:
    sizes: list[int] = []
    started = threading.Event()
    gate = threading.Event()

    def run(items: Sequence[Tokenized]) -> FloatArray:
        started.set()
        gate.wait(10)
        sizes.append(len(items))
        return fake_run(items)

    # Requests of 2 texts of 200 tokens: two of them (4 x 200 = 800 padded tokens) fit a
    # 1000-token budget, a third (6 x 200 = 1200) does not, though max_texts would allow it.
    policy = BatchPolicy(window_s=0.0, max_texts=8, max_tokens=1000, workers=1)
    batcher = MicroBatcher(run, FAKE_DIM, policy)
    results: dict[int, FloatArray] = {}

    def call(key: int, items: list[Tokenized]) -> None:
        results[key] = batcher.embed(items)

    try:
        threads = [threading.Thread(target=call, args=(0, tokens(0, 1, 5)))]
        threads[0].start()
        assert started.wait(10)  # the only worker holds the first request
        for key in (1, 2, 3):
            threads.append(threading.Thread(target=call, args=(key, tokens(key * 10, 2, 200))))
            threads[-1].start()
            wait_for(lambda key=key: batcher._queued_texts == 2 * key)
        gate.set()
        for thread in threads:
            thread.join(10)
    finally:
        gate.set()
        batcher.close()
    assert sizes == [1, 4, 2]
    for key in (1, 2, 3):
        np.testing.assert_array_equal(results[key][:, 0], [key * 10, key * 10 + 1])
        np.testing.assert_array_equal(results[key][:, 1], [200, 200])


def wait_for(condition: Any, timeout_s: float = 10.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout_s / 0.005)):
        if condition():
            return
        done.wait(0.005)
    raise AssertionError("condition not reached")


def test_a_full_queue_raises_overloaded_and_recovers() -> None:
    started = threading.Event()
    release = threading.Event()

    def run(items: Sequence[Tokenized]) -> FloatArray:
        started.set()
        release.wait(10)
        return fake_run(items)

    policy = BatchPolicy(window_s=0.0, max_texts=8, workers=1, max_queued_texts=5)
    batcher = MicroBatcher(run, FAKE_DIM, policy)
    outputs: dict[str, FloatArray] = {}
    try:
        running = threading.Thread(target=lambda: outputs.update(a=batcher.embed(tokens(0, 2))))
        running.start()
        assert started.wait(10)  # the only worker is busy with the first request
        queued = threading.Thread(target=lambda: outputs.update(b=batcher.embed(tokens(10, 3))))
        queued.start()
        wait_for(lambda: batcher._queued_texts == 3)
        with pytest.raises(Overloaded) as info:
            batcher.embed(tokens(20, 3))  # 3 waiting + 3 > 5
        assert info.value.status == 503
        assert "queue is full" in info.value.message
        assert info.value.retry_after_s >= 1
        release.set()
        running.join(10)
        queued.join(10)
        # Drained: the same request is accepted now.
        again = batcher.embed(tokens(20, 3))
    finally:
        release.set()
        batcher.close()
    np.testing.assert_array_equal(outputs["a"][:, 0], [0, 1])
    np.testing.assert_array_equal(outputs["b"][:, 0], [10, 11, 12])
    np.testing.assert_array_equal(again[:, 0], [20, 21, 22])


def test_a_request_past_its_deadline_leaves_the_queue() -> None:
    """A timed-out request's waiting texts are taken off the queue: the model never runs
    them, and the next request is not stuck behind dead work."""
    started = threading.Event()
    release = threading.Event()
    seen: list[int] = []

    def run(items: Sequence[Tokenized]) -> FloatArray:
        seen.extend(item.ids[0] for item in items)
        started.set()
        release.wait(10)
        return fake_run(items)

    policy = BatchPolicy(window_s=0.0, max_texts=8, workers=1, max_queued_texts=100)
    batcher = MicroBatcher(run, FAKE_DIM, policy)
    try:
        busy = threading.Thread(target=lambda: batcher.embed(tokens(0, 2)))
        busy.start()
        assert started.wait(10)  # the only worker is held by the first request
        token = deadlines.start(0.05)
        try:
            with pytest.raises(RequestTimedOut) as info:
                batcher.embed(tokens(50, 3))
        finally:
            deadlines.reset(token)
        assert info.value.status == 503
        assert info.value.error_type == "timeout"
        assert batcher.queued_texts == 0
        release.set()
        busy.join(10)
        np.testing.assert_array_equal(batcher.embed(tokens(80, 2))[:, 0], [80, 81])
    finally:
        release.set()
        batcher.close()
    assert not {50, 51, 52} & set(seen)


def test_a_request_larger_than_the_queue_is_refused_at_once() -> None:
    calls: list[int] = []

    def run(items: Sequence[Tokenized]) -> FloatArray:
        calls.append(len(items))
        return fake_run(items)

    batcher = MicroBatcher(run, FAKE_DIM, BatchPolicy(max_queued_texts=10))
    try:
        with pytest.raises(Overloaded):
            batcher.embed(tokens(0, 11))
        assert calls == []
        assert batcher.embed(tokens(0, 10)).shape == (10, FAKE_DIM)
    finally:
        batcher.close()


def test_an_error_inside_the_model_run_reaches_the_caller() -> None:
    def run(items: Sequence[Tokenized]) -> FloatArray:
        if any(item.ids[0] == 666 for item in items):
            raise RuntimeError("the model exploded on token 666")
        return fake_run(items)

    batcher = MicroBatcher(run, FAKE_DIM, BatchPolicy(window_s=0.0, max_texts=4, workers=1))
    try:
        with pytest.raises(RuntimeError, match="exploded on token 666"):
            batcher.embed([Tokenized([666], False)])
        # A multi-part request with one failing part fails as a whole ...
        with pytest.raises(RuntimeError, match="exploded"):
            batcher.embed([*tokens(0, 6), Tokenized([666], False), *tokens(7, 3)])
        # ... and the batcher keeps working for the next caller.
        out = batcher.embed(tokens(0, 9))
        np.testing.assert_array_equal(out[:, 0], np.arange(9, dtype=np.float32))
    finally:
        batcher.close()


def test_an_empty_request_never_reaches_the_model() -> None:
    calls: list[int] = []

    def run(items: Sequence[Tokenized]) -> FloatArray:
        calls.append(len(items))
        return fake_run(items)

    batcher = MicroBatcher(run, FAKE_DIM, BatchPolicy())
    try:
        assert batcher.embed([]).shape == (0, FAKE_DIM)
    finally:
        batcher.close()
    assert calls == []


def test_a_closed_batcher_refuses_work() -> None:
    batcher = MicroBatcher(fake_run, FAKE_DIM, BatchPolicy())
    batcher.close()
    with pytest.raises(Overloaded, match="shutting down"):
        batcher.embed(tokens(0, 1))


def test_an_idle_batcher_runs_a_lone_request_in_the_callers_thread() -> None:
    """Nobody to batch with: the caller runs the model itself (no queue hand-offs); while that
    run holds the only worker, the next caller waits in the queue for the executor."""
    threads: list[str] = []
    started = threading.Event()
    release = threading.Event()

    def run(items: Sequence[Tokenized]) -> FloatArray:
        threads.append(threading.current_thread().name)
        if items[0].ids[0] == 0:
            started.set()
            release.wait(10)
        return fake_run(items)

    batcher = MicroBatcher(run, FAKE_DIM, BatchPolicy(window_s=0.0, workers=1), name="t")
    outputs: dict[str, FloatArray] = {}
    try:
        first = threading.Thread(
            target=lambda: outputs.update(a=batcher.embed(tokens(0, 1))), name="caller-a"
        )
        first.start()
        assert started.wait(10)
        second = threading.Thread(
            target=lambda: outputs.update(b=batcher.embed(tokens(5, 2))), name="caller-b"
        )
        second.start()
        wait_for(lambda: batcher._queued_texts == 2)  # queued: the only worker is busy
        release.set()
        first.join(10)
        second.join(10)
        # Idle again: a request larger than one batch still goes through the executor.
        batcher.embed(tokens(10, batcher.policy.max_texts + 1))
    finally:
        release.set()
        batcher.close()
    assert threads[0] == "caller-a"
    assert threads[1].startswith("vecstore-t")  # the executor, not caller-b
    assert all(t.startswith("vecstore-t") for t in threads[2:])
    np.testing.assert_array_equal(outputs["a"][:, 0], [0])
    np.testing.assert_array_equal(outputs["b"][:, 0], [5, 6])


def test_a_document_cache_entry_stays_near_two_kilobytes_whatever_the_text() -> None:
    """docs/settings.md promises ~2 KB an entry at 384-d: the key is a digest, not the text."""
    import tracemalloc

    from vecstore.inference.embedding_cache import CachedEmbedding, EmbeddingCache

    cache = EmbeddingCache(2000, digest_keys=True)
    vectors = [np.ones(384, dtype=np.float32) for _ in range(2000)]
    texts = [f"a long document {i} " * 200 for i in range(2000)]  # ~4 KB of text each
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(2000):
            cache.put("m", texts[i], CachedEmbedding(vectors[i].copy(), 60, False))
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    per_entry = sum(s.size_diff for s in after.compare_to(before, "filename")) / 2000
    assert 1536 < per_entry < 2500
    assert cache.get("m", texts[7]) is not None
