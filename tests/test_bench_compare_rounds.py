"""The comparison's repeated passes: which round a pass reports (the median, with every round's
figure kept), and the orchestration — server systems stay up after their own turn and are
visited in turn, in alternating order, then stopped; an embedded system repeats its passes in
its own turn. Fake peers on a tiny synthetic set: no server, no network."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from benchmarks import compare, compare_rounds, report_compare
from benchmarks.peers.base import Peer
from tests.test_bench_compare import ExactPeer


def single(q: float, recall: float = 0.99) -> dict[str, Any]:
    return {"qps": q, "recall@10": recall, "latency": {"p50_ms": 1000 / q}}


def row(knob: int, one: float, eight: float) -> dict[str, Any]:
    return {"knob": knob, "single": single(one), "concurrent": [{"threads": 8, "qps": eight}]}


def test_a_pass_reports_its_median_round_and_keeps_every_rounds_figure() -> None:
    passes = [single(900), single(1200), single(1000)]
    chosen = compare_rounds.median_pass(passes, compare_rounds.qps, higher_is_better=True)
    assert chosen["qps"] == 1000
    assert chosen["rounds"] == [900, 1200, 1000]  # round order, not sorted
    # of an even count, the worse of the two middle rounds: never flattering
    two = compare_rounds.median_pass(passes[:2], compare_rounds.qps, higher_is_better=True)
    assert two["qps"] == 900
    lat = [{"latency": {"p50_ms": x}} for x in (2.0, 3.0, 1.0, 4.0)]
    assert compare_rounds.median_pass(lat, compare_rounds.p50_ms, higher_is_better=False)[
        "latency"
    ]["p50_ms"] == pytest.approx(3.0)
    with pytest.raises(ValueError):
        compare_rounds.median_pass([], compare_rounds.qps, higher_is_better=True)


def test_sweeps_combine_knob_by_knob_and_pass_by_pass() -> None:
    rounds = [
        [row(16, 1000, 2000), row(32, 800, 1700)],
        [row(16, 1100, 1800), row(32, 700, 1900)],
        [row(16, 900, 2100)],  # a round that ended early contributes what it reached
    ]
    combined = compare_rounds.median_sweep(rounds)
    assert [r["knob"] for r in combined] == [16, 32]
    assert combined[0]["single"]["qps"] == 1000
    assert combined[0]["concurrent"][0]["qps"] == 2000  # chosen apart from the single pass
    assert combined[0]["concurrent"][0]["rounds"] == [2000, 1800, 2100]
    assert combined[1]["single"]["qps"] == 700  # worse middle of two
    system = {"sweep": combined}
    assert report_compare.best_qps(system, 1) == 1000
    assert report_compare.best_row(system, 8)["knob"] == 16


def test_reranks_combine_by_median_p50() -> None:
    def rr(n: int, p50: float) -> dict[str, Any]:
        return {"candidates": n, "latency": {"p50_ms": p50}}

    system: dict[str, Any] = {
        "rounds": [
            {"sweep": [row(16, 1, 1)], "rerank": [rr(100, 1.0), rr(1000, 3.3)]},
            {"sweep": [row(16, 1, 1)], "rerank": [rr(100, 0.8), rr(1000, 2.5)]},
            {"sweep": [row(16, 1, 1)], "rerank": [rr(100, 0.9), rr(1000, 2.6)]},
        ]
    }
    compare_rounds.combine(system)
    assert report_compare.rerank_p50(system, 100) == 0.9
    assert report_compare.rerank_p50(system, 1000) == 2.6
    assert system["rerank"][1]["rounds"] == [3.3, 2.5, 2.6]


def test_visiting_order_alternates() -> None:
    names = ["vecstore", "chroma", "pgvector"]
    assert compare_rounds.visiting_order(names, 2) == ["pgvector", "chroma", "vecstore"]
    assert compare_rounds.visiting_order(names, 3) == names


class Recorded(ExactPeer):
    """An exact peer that logs what the harness does with it."""

    def __init__(self, name: str, kind: str, log: list[tuple[str, str]]) -> None:
        super().__init__()
        self.name, self.kind, self.log = name, kind, log

    def start(self, workdir: Path) -> None:
        self.log.append((self.name, "start"))

    def stop(self) -> None:
        self.log.append((self.name, "stop"))

    def set_knob(self, value: int) -> None:
        super().set_knob(value)
        if value == self.knobs[0]:  # a sweep begins
            self.log.append((self.name, "sweep"))

    def restart(self) -> None:
        super().restart()
        self.log.append((self.name, "restart"))


def _run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kinds: dict[str, str], argv: Sequence[str]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    log: list[tuple[str, str]] = []
    peers: dict[str, Peer] = {}

    def make(name: str) -> Peer:
        peers[name] = Recorded(name, kinds[name], log)
        return peers[name]

    monkeypatch.setattr(compare, "make", make)
    monkeypatch.setattr(compare, "SYSTEMS", tuple(kinds))
    monkeypatch.setattr(compare.machine, "round_trip_us", lambda: {"p50": 1.0, "p90": 2.0})
    monkeypatch.setattr(compare.cw, "settle", lambda pids, budget_s: {"waited_s": 0.0})
    args: argparse.Namespace = compare.parse_args(
        [
            "--dataset=clustered-300",
            "--queries=12",
            "--per-thread=3",
            "--rerank-queries=4",
            "--rerank-sizes=20",
            "--knobs=1,2",
            "--wait-quiet=0",
            f"--systems={','.join(kinds)}",
            f"--out={tmp_path}",
            *argv,
        ]
    )
    return compare.run(args), log


def test_servers_stay_up_for_rounds_that_visit_them_in_turn(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kinds = {"a": "server", "e": "embedded", "b": "server"}
    results, log = _run(monkeypatch, tmp_path, kinds, ["--rounds=3"])
    # a: its own turn (one sweep), restarted, kept; e: all three sweeps in its own turn, then
    # stopped; b likewise kept; round 2 visits b then a, round 3 a then b; then both stop.
    assert log == [
        ("a", "start"),
        ("a", "sweep"),
        ("a", "restart"),
        ("e", "start"),
        ("e", "sweep"),
        ("e", "sweep"),
        ("e", "sweep"),
        ("e", "restart"),
        ("e", "stop"),
        ("b", "start"),
        ("b", "sweep"),
        ("b", "restart"),
        ("b", "sweep"),
        ("a", "sweep"),
        ("a", "sweep"),
        ("b", "sweep"),
        ("b", "stop"),  # the last kept stops first, each before its working directory goes
        ("a", "stop"),
    ]
    assert results["config"]["rounds"] == 3
    for name in kinds:
        system = results["systems"][name]
        assert len(system["rounds"]) == 3
        assert [r["knob"] for r in system["sweep"]] == [1, 2]
        assert len(system["sweep"][0]["single"]["rounds"]) == 3
        assert len(system["rerank"][0]["rounds"]) == 3
        assert system["sweep"][0]["single"]["recall@10"] == 1.0
    text = report_compare.markdown(results)
    assert "## Rounds" in text
    assert "ran 3 times" in text


def test_one_round_stops_each_system_in_its_own_turn(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    results, log = _run(monkeypatch, tmp_path, {"a": "server", "b": "server"}, ["--rounds=1"])
    assert log == [
        ("a", "start"),
        ("a", "sweep"),
        ("a", "restart"),
        ("a", "stop"),
        ("b", "start"),
        ("b", "sweep"),
        ("b", "restart"),
        ("b", "stop"),
    ]
    assert len(results["systems"]["a"]["rounds"]) == 1
    assert "## Rounds" not in report_compare.markdown(results)


def test_a_server_failing_in_a_later_round_keeps_its_earlier_rounds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = {"n": 0}
    original = compare.another_round

    def flaky(name: str, peer: Peer, *args: Any) -> None:
        if name == "a":
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("server went away")
        original(name, peer, *args)

    monkeypatch.setattr(compare, "another_round", flaky)
    results, log = _run(monkeypatch, tmp_path, {"a": "server", "b": "server"}, ["--rounds=3"])
    a = results["systems"]["a"]
    assert len(a["rounds"]) == 2
    assert a["rounds_failed"] == "round 3: RuntimeError('server went away')"
    assert not a.get("failed")  # its figures stand, from the rounds it finished
    assert log.count(("a", "stop")) == 1
    assert log.count(("b", "stop")) == 1
    assert len(results["systems"]["b"]["rounds"]) == 3
    assert "Rounds cut short: a: round 3" in report_compare.markdown(results)


def test_a_stop_that_fails_does_not_leave_the_other_servers_running(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Regression (review): the kept servers were stopped in one loop, so a stop that raised
    # left every server after it running while its working directory was deleted.
    def failing_stop(self: Recorded) -> None:
        self.log.append((self.name, "stop"))
        if self.name == "a":
            raise RuntimeError("would not stop")

    monkeypatch.setattr(Recorded, "stop", failing_stop)
    _, log = _run(monkeypatch, tmp_path, {"a": "server", "b": "server"}, ["--rounds=2"])
    assert log.count(("a", "stop")) == 1
    assert log.count(("b", "stop")) == 1


def test_a_round_that_fails_midway_keeps_the_passes_it_finished(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Regression (review): a sweep collected its rows in a local list, so a failure in the
    # middle lost the settings it had measured.
    original = compare.cw.rerank
    calls = {"n": 0}

    def rerank_fails_in_round_2(peer: Peer, *args: Any, **kwargs: Any) -> dict[str, Any]:
        calls["n"] += 1  # one rerank size: one call per round
        if calls["n"] == 2:
            raise RuntimeError("rerank broke")
        return original(peer, *args, **kwargs)

    monkeypatch.setattr(compare.cw, "rerank", rerank_fails_in_round_2)
    results, _ = _run(monkeypatch, tmp_path, {"a": "server"}, ["--rounds=2"])
    a = results["systems"]["a"]
    assert a["rounds_failed"] == "round 2: RuntimeError('rerank broke')"
    assert [r["knob"] for r in a["rounds"][1]["sweep"]] == [1, 2]  # its sweep stands
    assert a["rounds"][1]["rerank"] == []
    assert len(a["sweep"][0]["single"]["rounds"]) == 2
    assert len(a["rerank"][0]["rounds"]) == 1
