"""Embedding phases against a live server: ``POST /v1/embeddings`` latency and throughput, text
search QPS, the server's own embedding metrics, and the cosine agreement with a reference model.

Every request body is encoded before the clock starts and every text is sent once (no query
cache hits), except in the passes that measure the cache on purpose.
"""

from __future__ import annotations

import base64
import os
import re
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np

from benchmarks import datasets, machine
from benchmarks.bench_ingest import ingest, wait_for_index
from benchmarks.client import ApiClient, ApiError, data_of, encode
from benchmarks.load import LoadResult, Request, run_load, striped
from benchmarks.metrics import latency_ms, median_round, summarize_ms
from benchmarks.sentences import TextPool
from benchmarks.server import ServerHandle

MODEL = "all-MiniLM-L6-v2"
DIM = 384
EMBED_PATH = "/v1/embeddings"
SEARCH_ROUTE = "/v1/collections/{name}/search"  # the route label in the server's metrics
WARMUP = 20


# -- /v1/embeddings -------------------------------------------------------------------------------
def embeddings_body(texts: str | list[str], encoding: str = "float") -> bytes:
    return encode({"input": texts, "model": MODEL, "encoding_format": encoding})


def decode_embeddings(raw: bytes, expected: int) -> np.ndarray:
    """The vectors of an OpenAI-shaped answer, checked for shape; float lists or base64."""
    doc = msgspec.json.decode(raw)
    if not isinstance(doc, dict) or doc.get("object") != "list" or "data" not in doc:
        raise ValueError(f"not an OpenAI embeddings list: {raw[:300]!r}")
    rows = sorted(doc["data"], key=lambda d: d["index"])
    if len(rows) != expected:
        raise ValueError(f"{len(rows)} embeddings for {expected} inputs")
    vecs = [
        np.frombuffer(base64.b64decode(r["embedding"]), dtype="<f4")
        if isinstance(r["embedding"], str)
        else np.asarray(r["embedding"], dtype=np.float32)
        for r in rows
    ]
    out = np.stack(vecs)
    if out.shape != (expected, DIM):
        raise ValueError(f"embeddings of shape {out.shape}, expected ({expected}, {DIM})")
    return out


def embeddings_route_missing(server: ServerHandle) -> str | None:
    """None when ``POST /v1/embeddings`` answers; else why the embedding passes are skipped."""
    with ApiClient(server.base_url, server.key) as client:
        try:
            decode_embeddings(client.post_raw(EMBED_PATH, embeddings_body("probe")), 1)
        except ApiError as exc:
            return f"POST {EMBED_PATH} is not usable: {exc}"
    return None


def embed_texts(server: ServerHandle, texts: list[str]) -> np.ndarray:
    with ApiClient(server.base_url, server.key) as client:
        return decode_embeddings(client.post_raw(EMBED_PATH, embeddings_body(texts)), len(texts))


def _check_all(result: LoadResult, sizes: Sequence[int]) -> int:
    """Decode every kept response (shape check); return how many came back wrong."""
    bad = 0
    for idx, raw in result.responses:
        try:
            decode_embeddings(raw, sizes[idx])
        except (ValueError, KeyError, msgspec.DecodeError):
            bad += 1
    return bad


def single_query_pass(
    server: ServerHandle, texts: list[str], *, time_budget_s: float, encoding: str = "float"
) -> dict[str, Any]:
    """One short text per request from one client; the first ``WARMUP`` texts are not timed."""
    reqs = [Request(EMBED_PATH, embeddings_body(t, encoding)) for t in texts]
    run_load(server, reqs, [list(range(WARMUP))], time_budget_s=time_budget_s)
    with Scrape(server) as scrape:
        result = run_load(
            server,
            reqs,
            [list(range(WARMUP, len(reqs)))],
            time_budget_s=time_budget_s,
            keep_responses=True,
        )
    return {
        "encoding_format": encoding,
        "clients": 1,
        "bad_responses": _check_all(result, [1] * len(reqs)),
        **result.figures(),
        "server": scrape.figures(EMBED_PATH),
    }


def batch_pass(
    server: ServerHandle,
    texts: list[str],
    *,
    batch_size: int,
    clients: int,
    time_budget_s: float,
) -> dict[str, Any]:
    """Requests of ``batch_size`` distinct sentences; the first request per client warms up."""
    bodies = [texts[s : s + batch_size] for s in range(0, len(texts), batch_size)]
    bodies = [b for b in bodies if len(b) == batch_size]
    reqs = [Request(EMBED_PATH, embeddings_body(b)) for b in bodies]
    if len(reqs) <= clients:
        raise ValueError(f"{len(texts)} texts make too few requests of {batch_size}")
    run_load(server, reqs, [[i] for i in range(clients)], time_budget_s=time_budget_s)
    rest = list(range(clients, len(reqs)))
    with Scrape(server) as scrape:
        result = run_load(
            server,
            reqs,
            [rest[t::clients] for t in range(clients)],
            time_budget_s=time_budget_s,
            keep_responses=True,
        )
    return {
        "batch_size": batch_size,
        "clients": clients,
        "texts": result.completed * batch_size,
        "texts_per_s": result.qps * batch_size,
        "bad_responses": _check_all(result, [batch_size] * len(reqs)),
        **result.figures(),
        "server": scrape.figures(EMBED_PATH),
    }


def agreement(server: ServerHandle, texts: list[str], reference: np.ndarray) -> dict[str, Any]:
    """Cosine of vecstore's vector and the reference vector, per text; and batch vs one-by-one."""
    batched = embed_texts(server, texts)
    single = np.concatenate([embed_texts(server, [t]) for t in texts])
    cos = _cosines(batched, reference)
    self_cos = _cosines(batched, single)
    worst = int(np.argmin(cos))
    return {
        "texts": len(texts),
        "cosine_min": float(cos.min()),
        "cosine_mean": float(cos.mean()),
        "cosine_per_text": [round(float(c), 6) for c in cos],
        "worst_text": texts[worst][:120],
        "vecstore_norm_min": float(np.linalg.norm(batched, axis=1).min()),
        "batch_vs_single_cosine_min": float(self_cos.min()),
    }


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    num = (a64 * b64).sum(axis=1)
    return np.asarray(num / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)))


def http_floor(server: ServerHandle, calls: int = 300) -> dict[str, Any]:
    """``GET /health`` round trips: what HTTP on loopback plus the client cost, with no work."""
    lat = []
    with ApiClient(server.base_url, server.key) as client:
        for _ in range(WARMUP):
            client.get_health()
        for _ in range(calls):
            t0 = time.perf_counter()
            client.get_health()
            lat.append(time.perf_counter() - t0)
    return latency_ms(np.array(lat))


# -- text search ----------------------------------------------------------------------------------
class TextSearchBench:
    """A collection of stored random clustered unit vectors; queries are texts the server embeds."""

    def __init__(self, server: ServerHandle, *, collection: str, time_budget_s: float) -> None:
        self.server = server
        self.collection = collection
        self.path = f"/v1/collections/{collection}/search"
        self.time_budget_s = time_budget_s

    def fill(self, n: int) -> dict[str, Any]:
        with ApiClient(self.server.base_url, self.server.key) as client:
            client.post("/v1/collections", {"name": self.collection, "dim": DIM})
        ds = datasets.load(n, 1)
        ing = ingest(
            self.server,
            ds,
            collection=self.collection,
            batch_size=1000,
            threads=2,
            time_budget_s=self.time_budget_s,
        )
        idx = wait_for_index(
            self.server, collection=self.collection, expected=n, timeout_s=self.time_budget_s
        )
        return {
            "records": n,
            "vectors_per_s": ing["vectors_per_s"],
            "index_caught_up": idx["caught_up"],
        }

    def requests(self, texts: Sequence[str], *, include_timing: bool = False) -> list[Request]:
        extra = {"include_timing": True} if include_timing else {}
        return [Request(self.path, encode({"text": t, "k": 10, **extra})) for t in texts]

    def qps_pass(
        self, texts: Sequence[str], threads: int, *, include_timing: bool = False
    ) -> dict[str, Any]:
        """Each text once, striped over ``threads`` clients; all clients start together."""
        reqs = self.requests(texts, include_timing=include_timing)
        with Scrape(self.server) as scrape:
            result = run_load(
                self.server,
                reqs,
                striped(len(reqs), threads),
                time_budget_s=self.time_budget_s,
                keep_responses=True,
            )
        hits = [len(data_of(raw)["results"]) for _, raw in result.responses]
        out: dict[str, Any] = {
            "threads": threads,
            "short_results": sum(h != 10 for h in hits),
            **result.figures(),
            "server": scrape.figures(SEARCH_ROUTE),
        }
        if include_timing:
            timings = [data_of(raw)["timing_ms"] for _, raw in result.responses]
            out["server_timing_ms"] = {
                key: summarize_ms([t[key] for t in timings])
                for key in ("embedding_ms", "search_ms", "total_ms")
            }
        return out

    def warm_up(self, texts: Sequence[str]) -> None:
        reqs = self.requests(texts)
        run_load(self.server, reqs, [list(range(len(reqs)))], time_budget_s=self.time_budget_s)


def search_suite(
    servers: dict[str, ServerHandle],
    pool: TextPool,
    *,
    records: int,
    requests: int,
    thread_counts: Sequence[int],
    rounds: int,
    time_budget_s: float,
    before_round: Callable[[int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """For each server (label -> handle): fill a collection, then per round and client count a
    pass on fresh texts and one re-sending them (the cached case: model skipped). The servers
    take turns pass by pass, in alternating order, so a burst of noise on the shared machine
    hits both; each figure is the median round. Last, one pass per client count with
    ``include_timing`` for the server's breakdown."""
    benches = {
        label: TextSearchBench(server, collection="embed-bench", time_budget_s=time_budget_s)
        for label, server in servers.items()
    }
    out: dict[str, dict[str, Any]] = {
        label: {"collection": b.fill(records), "requests_per_pass": requests, "rounds": rounds}
        for label, b in benches.items()
    }
    for b in benches.values():
        b.warm_up(pool.take(WARMUP))
    fresh: dict[tuple[str, int], list[dict[str, Any]]] = {}
    cached: dict[tuple[str, int], list[dict[str, Any]]] = {}
    labels = list(benches)
    for r in range(rounds):
        if before_round is not None:
            before_round(r)
        for threads in thread_counts:
            for label in labels if r % 2 == 0 else labels[::-1]:
                texts = pool.take(requests)
                fresh.setdefault((label, threads), []).append(
                    benches[label].qps_pass(texts, threads)
                )
                # The same texts again: every query embedding now comes from the query cache.
                cached.setdefault((label, threads), []).append(
                    benches[label].qps_pass(texts, threads)
                )
    for label, b in benches.items():
        out[label]["qps"] = [
            median_round(fresh[label, t], "qps", noise=pass_noise) for t in thread_counts
        ]
        out[label]["qps_cached"] = [
            median_round(cached[label, t], "qps", noise=pass_noise) for t in thread_counts
        ]
        out[label]["timing"] = [
            b.qps_pass(pool.take(max(requests // 2, 1)), t, include_timing=True)
            for t in thread_counts
        ]
    return out


def pass_noise(result: dict[str, Any]) -> float | None:
    """CPUs that other processes used during a pass (for ``median_round``)."""
    value: float | None = result.get("server", {}).get("other_cpu_cores")
    return value


# -- the server's own figures ---------------------------------------------------------------------
# Label values may hold braces themselves (route="/v1/collections/{name}/search").
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$")


def scrape_metrics(server: ServerHandle) -> dict[tuple[str, str], float]:
    """``GET /metrics`` as {(sample name, label text): value}."""
    resp = httpx.get(f"{server.base_url}/metrics", headers={"x-api-key": server.key}, timeout=30.0)
    resp.raise_for_status()
    out: dict[tuple[str, str], float] = {}
    for line in resp.text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def server_pid(server: ServerHandle) -> int | None:
    """The pid of the server process this process started on ``server``'s port (Linux /proc)."""
    port = server.base_url.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"--port" in argv and port.encode() in argv:
            return int(entry.name)
    return None


class Scrape:
    """Metrics before and after a pass: model runs (texts per run, run time), the server's own
    time per request of one route (inside the ASGI app, so without socket and HTTP parsing), and
    the CPU time the server process and this (client) process used meanwhile."""

    def __init__(self, server: ServerHandle) -> None:
        self.server = server
        self.pid = server_pid(server)
        self.before: dict[tuple[str, str], float] = {}
        self.after: dict[tuple[str, str], float] = {}
        self._cpu: list[tuple[float, float, float, float]] = []

    def _cpu_now(self) -> tuple[float, float, float, float]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        busy = machine.cpu_busy_s()[0]
        return (
            time.perf_counter(),
            machine.process_cpu_s(self.pid),
            own.ru_utime + own.ru_stime,
            busy,
        )

    def __enter__(self) -> Scrape:
        self.before = scrape_metrics(self.server)
        self._cpu = [self._cpu_now()]
        return self

    def __exit__(self, *exc: object) -> None:
        self._cpu.append(self._cpu_now())
        self.after = scrape_metrics(self.server)

    def _delta(self, name: str, label_part: str) -> float:
        def total(sample: dict[tuple[str, str], float]) -> float:
            return sum(v for (n, lbl), v in sample.items() if n == name and label_part in lbl)

        return total(self.after) - total(self.before)

    def figures(self, route: str) -> dict[str, Any]:
        runs = self._delta("vecstore_embedding_batch_texts_count", "")
        texts = self._delta("vecstore_embedding_batch_texts_sum", "")
        run_s = self._delta("vecstore_embedding_batch_duration_seconds_sum", "")
        route_label = f'route="{route}"'
        calls = self._delta("vecstore_http_request_duration_seconds_count", route_label)
        call_s = self._delta("vecstore_http_request_duration_seconds_sum", route_label)
        (t0, srv0, own0, busy0), (t1, srv1, own1, busy1) = self._cpu
        wall = t1 - t0
        other = (busy1 - busy0) - (srv1 - srv0) - (own1 - own0)
        return {
            "model_runs": int(runs),
            "texts_per_run_mean": texts / runs if runs else None,
            "model_run_ms_mean": 1000 * run_s / runs if runs else None,
            "model_busy_s": run_s,
            "requests": int(calls),
            "request_ms_mean": 1000 * call_s / calls if calls else None,
            "server_cpu_cores": (srv1 - srv0) / wall if self.pid and wall > 0 else None,
            "server_cpu_ms_per_request": 1000 * (srv1 - srv0) / calls
            if self.pid and calls
            else None,
            "client_cpu_cores": (own1 - own0) / wall if wall > 0 else None,
            # Everything else on the machine meanwhile (the other, idle server included).
            "other_cpu_cores": max(other, 0.0) / wall if self.pid and wall > 0 else None,
        }


# -- in process: the pieces of one request ------------------------------------------------------
def component_profile(queries: list[str], sentences: list[str], threads: int) -> dict[str, Any]:
    """The server's own model code, timed piece by piece with no HTTP and no server around:
    tokenising one short query, one ONNX run on it, and turning the vector into the JSON answer
    (float list, and base64); plus one run on a batch of 32 sentences."""
    from vecstore.api import dialect_schemas as d
    from vecstore.inference.onnx_embedder import OnnxEmbeddingModel
    from vecstore.inference.registry import ModelRegistry

    spec = ModelRegistry.load().get(MODEL, kind="embedding")
    model = OnnxEmbeddingModel(spec, intra_op_threads=threads)
    for q in queries[:WARMUP]:
        model.run(model.tokenize([q]))
    tok, run, js, b64 = [], [], [], []
    tokens = []
    for q in queries[WARMUP:]:
        t0 = time.perf_counter()
        items = model.tokenize([q], query=True)
        t1 = time.perf_counter()
        vectors = model.run(items)
        t2 = time.perf_counter()
        out = d.OpenAIEmbeddingsOut(
            data=[d.OpenAIEmbedding(embedding=r, index=i) for i, r in enumerate(vectors.tolist())],
            model=MODEL,
            usage=d.OpenAIUsage(items[0].length, items[0].length),
        )
        msgspec.json.encode(out)
        t3 = time.perf_counter()
        little = vectors.astype("<f4", copy=False)
        rows = [base64.b64encode(r.tobytes()).decode("ascii") for r in little]
        msgspec.json.encode({"data": rows})
        t4 = time.perf_counter()
        tok.append(t1 - t0)
        run.append(t2 - t1)
        js.append(t3 - t2)
        b64.append(t4 - t3)
        tokens.append(items[0].length)
    batch = [sentences[s : s + 32] for s in range(0, len(sentences) - 31, 32)]
    model.run(model.tokenize(batch[0]))
    batch_s = []
    for texts in batch[1:]:
        t0 = time.perf_counter()
        model.run(model.tokenize(texts))
        batch_s.append(time.perf_counter() - t0)
    return {
        "intra_op_threads": threads,
        "queries": len(run),
        "query_tokens_mean": float(np.mean(tokens)),
        "tokenize": latency_ms(np.array(tok)),
        "onnx_run": latency_ms(np.array(run)),
        "json_float_response": latency_ms(np.array(js)),
        "base64_response": latency_ms(np.array(b64)),
        "batch32_run": latency_ms(np.array(batch_s)),
        "batch32_texts_per_s": 32 * len(batch_s) / sum(batch_s) if batch_s else None,
    }
