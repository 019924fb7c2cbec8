"""The soak in ``make test``: 8 clients for 30 s; ``python -m tests.soak`` runs 10 minutes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server_process import ServerProcess, new_admin_key, running_server
from tests.soak.client import SoakClient
from tests.soak.harness import SOAK_ENV, SPECS, SoakConfig, render_markdown, run_soak

pytestmark = pytest.mark.timeout(240)


def test_short_soak_has_no_errors_and_ends_equal_to_the_model(tmp_path: Path) -> None:
    report = run_soak(SoakConfig(clients=8, duration_s=30), tmp_path / "data", tmp_path / "logs")
    print(render_markdown(report))
    assert report.unexpected_errors == []
    assert report.read_mismatches == []
    assert report.final_state_problems == []
    assert report.final_records > 0
    kinds = {
        "upsert",
        "bulk_upsert",
        "delete",
        "delete_batch",
        "delete_by_filter",
        "search",
        "search_own",
        "fetch",
        "count",
        "scroll",
    }
    assert kinds <= set(report.by_kind)
    assert report.rss_mib["peak"] > 0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path / "data", admin_key=new_admin_key(), env=SOAK_ENV) as srv:
        with srv.client() as admin:
            for spec in SPECS:
                assert admin.post("/v1/collections", json=spec.create_body()).status_code == 201
        yield srv


def test_the_read_checks_notice_a_change_behind_the_clients_back(server: ServerProcess) -> None:
    client = SoakClient(0, seed=5, specs=SPECS)
    coll = client.model["soak_flat"]
    with server.client() as http:
        for _ in range(3):
            client._bulk_upsert(http, coll)
        client._fetch(http, coll)
        client._count(http, coll)
        client._scroll_own(http, coll)
        client._search_own(http, coll)
        assert client.mismatches == []
        assert client.errors == []
        victim = sorted(coll.records)[0]
        body = {"external_id": victim, "vector": [0.0] * 32, "metadata": {"owner": 0, "g": 1}}
        assert http.post("/v1/collections/soak_flat/upsert", json=body).status_code == 200
        extra = {"external_id": "s0-extra", "vector": [1.0] * 32, "metadata": {"owner": 0}}
        assert http.post("/v1/collections/soak_flat/upsert", json=extra).status_code == 200
        client._count(http, coll)
        client._scroll_own(http, coll)
        for _ in range(200):  # each fetch samples 20 ids: sooner or later the changed one
            client._fetch(http, coll)
            if any("fetch" in m for m in client.mismatches):
                break
    found = "\n".join(client.mismatches)
    assert "count" in found
    assert "own scroll differs" in found
    assert f"fetch {victim} differs" in found


def test_an_error_answer_is_counted_as_unexpected(server: ServerProcess) -> None:
    client = SoakClient(0, seed=5, specs=SPECS)
    with server.client() as http:
        client._call(http, "search", "POST", "/v1/collections/missing/search", {"k": 1})
    assert len(client.errors) == 1
    assert "404" in client.errors[0]
