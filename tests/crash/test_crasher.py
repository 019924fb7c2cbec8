"""The crasher in ``make test``: a short kill -9 run, and proof that its checker can fail.

The long run (≥ 200 cycles) is ``make crash``; its report is in docs/reliability.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.crash.checker import CheckResult, check, check_search, read_collection
from tests.crash.harness import CRASH_ENV, CrashConfig, render_markdown, run_crasher
from tests.crash.model import CollectionSpec, CollectionState, canonical, diff_states
from tests.crash.workload import Worker, WorkloadShape
from tests.server_process import ServerProcess, new_admin_key, running_server

pytestmark = pytest.mark.timeout(280)


def test_short_crash_run_finds_no_violation(tmp_path: Path) -> None:
    config = CrashConfig(cycles=12, seed=3, p_kill=0.5, interval_s=(0.5, 1.5), p_kill_in_start=0.2)
    report = run_crasher(config, tmp_path / "data", tmp_path / "logs")
    print(render_markdown(report))
    assert report.violations == []
    assert report.cycles == 12
    assert report.kills + report.kills_in_start >= 12
    # The run did exercise every kind of write it claims to, and checked searches.
    kinds = {
        "create_collection",
        "upsert",
        "bulk_upsert",
        "delete",
        "delete_batch",
        "delete_by_filter",
    }
    assert kinds <= set(report.acknowledged)
    assert report.searches_checked > 0
    assert report.max_records_checked > 0


# -- the checker detects what it is meant to detect -----------------------------------------------
def _spec(name: str = "w0_c1") -> CollectionSpec:
    return CollectionSpec(name, 4, "l2", "flat")


def test_diff_names_every_kind_of_difference() -> None:
    vec = np.ones(4, dtype="<f4").tobytes()
    model = {
        "w0_c1": CollectionState(
            _spec(),
            {
                "a": (vec, canonical([{"g": 1}, None])),
                "b": (vec, canonical([{"g": 2}, None])),
                "c": (vec, canonical([{"g": 3}, "t"])),
            },
        ),
        "w0_c2": CollectionState(_spec("w0_c2")),
    }
    other = np.full(4, 2, dtype="<f4").tobytes()
    server = {
        "w0_c1": CollectionState(
            _spec(),
            {
                "a": (other, canonical([{"g": 1}, None])),
                "b": (vec, canonical([{"g": 9}, None])),
                "z": (vec, canonical([{}, None])),
            },
        ),
        "w0_c3": CollectionState(_spec("w0_c3")),
    }
    problems = "\n".join(diff_states(server, model))
    assert "w0_c2: acknowledged but missing" in problems
    assert "w0_c3: phantom" in problems
    assert "1 missing records ['c']" in problems
    assert "1 phantom records ['z']" in problems
    assert "record 'a': vector differs" in problems
    assert "record 'b': metadata differs" in problems
    assert diff_states(model, model) == []
    changed_spec = {"w0_c2": CollectionState(CollectionSpec("w0_c2", 4, "ip", "flat"))}
    assert "spec" in diff_states(changed_spec, {"w0_c2": model["w0_c2"]})[0]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path / "data", admin_key=new_admin_key(), env=CRASH_ENV) as srv:
        yield srv


def _worker_with_data(server: ServerProcess, steps: int = 40) -> Worker:
    shape = WorkloadShape(max_collections=1, index_types=("flat",), metrics=("l2",))
    worker = Worker(0, seed=11, shape=shape)
    with server.client() as client:
        for _ in range(steps):
            assert worker.step(client)
    assert worker.problems == []
    return worker


def test_checker_reports_what_the_server_lost_or_invented(server: ServerProcess) -> None:
    worker = _worker_with_data(server)
    ((name, coll),) = worker.state.items()
    lost, changed = sorted(coll.records)[:2]
    with server.client() as client:
        assert check(client, [worker], np.random.default_rng(0)).violations == []
        # Behind the model's back: lose a record, change one, invent one and a collection.
        assert client.delete(f"/v1/collections/{name}/delete/{lost}").status_code == 200
        body = {"external_id": changed, "vector": [0.0] * coll.spec.dim, "metadata": {"g": 1}}
        assert client.post(f"/v1/collections/{name}/upsert", json=body).status_code == 200
        body = {"external_id": "invented", "vector": [1.0] * coll.spec.dim}
        assert client.post(f"/v1/collections/{name}/upsert", json=body).status_code == 200
        new = {"name": "stray", "dim": 4}
        assert client.post("/v1/collections", json=new).status_code == 201
        problems = "\n".join(check(client, [worker], np.random.default_rng(0)).violations)
    assert f"1 missing records ['{lost}']" in problems
    assert "1 phantom records ['invented']" in problems
    assert f"record '{changed}': vector differs" in problems
    assert "collection stray: phantom (no worker owns it)" in problems


def test_an_in_doubt_write_must_be_all_or_nothing(server: ServerProcess) -> None:
    worker = _worker_with_data(server)
    ((name, coll),) = worker.state.items()
    with server.client() as client:
        # In doubt and not applied: accepted.
        op = worker._bulk_upsert(coll)
        worker._in_doubt(op)
        result = check(client, [worker], np.random.default_rng(0))
        assert result.violations == []
        assert result.in_doubt["not applied"] == 1
        # In doubt and applied in full: accepted.
        op = worker._bulk_upsert(worker.state[name])
        worker._in_doubt(op)
        assert client.post(op.path, json=op.body).status_code == 200
        result = check(client, [worker], np.random.default_rng(0))
        assert result.violations == []
        assert result.in_doubt["applied"] == 1
        # In doubt and applied by half: a violation.
        op = worker._bulk_upsert(worker.state[name])
        while len(op.body["items"]) < 2:
            op = worker._bulk_upsert(worker.state[name])
        worker._in_doubt(op)
        half = {"items": op.body["items"][: len(op.body["items"]) // 2]}
        assert client.post(op.path, json=half).status_code == 200
        problems = check(client, [worker], np.random.default_rng(0)).violations
    assert any("neither outcome matches" in p for p in problems), problems


def test_checker_catches_a_wrong_search_answer(server: ServerProcess) -> None:
    worker = _worker_with_data(server)
    ((name, coll),) = worker.state.items()
    with server.client() as client:
        assert read_collection(client, name, []).records == coll.records
        # Move one vector in the model only, to the origin: in l2 it is then the model's nearest
        # record for almost every random query, while the server's copy is not.
        moved = sorted(coll.records)[0]
        coll.records[moved] = (
            np.zeros(coll.spec.dim, dtype="<f4").tobytes(),
            coll.records[moved][1],
        )
        result = CheckResult()
        check_search(client, coll, np.random.default_rng(0), result)
    assert result.searches > 0
    assert any("flat search" in v for v in result.violations), result.violations
