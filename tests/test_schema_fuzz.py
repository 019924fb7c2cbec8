"""Schema fuzzing: schemathesis drives every operation of the live server's OpenAPI schema.

One real ``vecstore serve`` process (``tests/server_process.py``) on a throw-away data directory,
seeded with two collections, a key and a snapshot. Each operation gets a few generated requests
(schema-valid ones, and a few schema-violating ones); operations with path parameters run once
more with the parameters pinned to the seeded data, so that they reach past the 404. Every
response must be no 5xx, have a status the schema declares for the operation, and match the
declared content type and schema. Destructive operations run last, in a fixed order; the
bootstrap admin key (``VECSTORE_ADMIN_KEY``) lives outside the key store, so no deleted,
rotated or restored key can lock the run out.

Bounded: a fixed number of examples per operation, no shrinking, derandomized (Hypothesis picks
the same cases every run), no example database.

Also checked without the fuzzer: every error status the code can answer is declared for the
operations that can answer it (docs/api.md's error table and ``vecstore.errors``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.server_process import ServerProcess, new_admin_key, poll_until, running_server
from vecstore import errors

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[1]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Cases per operation and mode; operations with path parameters run a second, pinned, round.
POSITIVE_EXAMPLES = 6
NEGATIVE_EXAMPLES = 3
# Run last, in this order: each may remove what the ones before it (and the pinned rounds) use.
DESTRUCTIVE = [
    ("DELETE", "/v1/collections/{name}/delete/{external_id}"),
    ("POST", "/v1/collections/{name}/delete_batch"),
    ("POST", "/v1/collections/{name}/delete_by_filter"),
    ("DELETE", "/v1/collections/{name}"),
    ("POST", "/v1/admin/keys/{key_id}/rotate"),
    ("DELETE", "/v1/admin/keys/{key_id}"),
    ("POST", "/v1/admin/snapshots/{snapshot_id}/restore"),
    ("DELETE", "/v1/admin/snapshots/{snapshot_id}"),
]
SMALL = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.6, 0.8, 0.0, 0.0]]


@dataclass
class Seeded:
    server: ServerProcess
    key_id: str
    snapshot_id: str

    @property
    def pinned(self) -> dict[str, str]:
        """Path parameter values that exist on the server."""
        return {
            "name": "docs",
            "external_id": "a",
            "key_id": self.key_id,
            "snapshot_id": self.snapshot_id,
        }


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    root = tmp_path_factory.mktemp("fuzz")
    with running_server(root / "data", admin_key=new_admin_key()) as server, server.client() as c:

        def ok(response: httpx.Response) -> Any:
            assert response.is_success, f"{response.status_code}: {response.text}"
            return response.json()["data"]

        ok(c.post("/v1/collections", json={"name": "docs", "dim": 384}))
        ok(c.post("/v1/collections", json={"name": "small", "dim": 4, "index": {"type": "flat"}}))
        texts = ["the cat sat on the mat", "vector databases index embeddings", "hello world"]
        items = [
            {"external_id": eid, "text": text, "metadata": {"n": i}, "content": text}
            for i, (eid, text) in enumerate(zip("abc", texts, strict=True))
        ]
        ok(c.post("/v1/collections/docs/bulk_upsert", json={"items": items}))
        small = [{"external_id": eid, "vector": v} for eid, v in zip("abc", SMALL, strict=True)]
        ok(c.post("/v1/collections/small/bulk_upsert", json={"items": small}))
        key_id = ok(c.post("/v1/admin/keys", json={"name": "fuzzed", "role": "read"}))["id"]
        snapshot_id = ok(c.post("/v1/admin/snapshots"))["id"]
        yield Seeded(server, key_id, snapshot_id)


@dataclass
class Run:
    cases: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, set[int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def _fuzz(operation: Any, server: ServerProcess, run: Run, **strategy_kwargs: Any) -> None:
    """A few schema-valid cases, then a few schema-violating ones."""
    for mode, examples in (
        (GenerationMode.POSITIVE, POSITIVE_EXAMPLES),
        (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES),
    ):
        strategy = operation.as_strategy(generation_mode=mode, **strategy_kwargs)
        try:
            _fuzz_cases(operation.label, f"{operation.label} [{mode.value}]", strategy)(
                server, run, examples
            )
        except Unsatisfiable:
            # Nothing in the operation can be made invalid (no parameters, no body).
            assert mode is GenerationMode.NEGATIVE, operation.label


def _fuzz_cases(label: str, tag: str, strategy: Any) -> Any:
    def cases(server: ServerProcess, run: Run, examples: int) -> None:
        headers = {"x-api-key": server.admin_key or ""}

        @given(case=strategy)
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )
        def one(case: Any) -> None:
            run.cases[label] = run.cases.get(label, 0) + 1
            response = case.call(base_url=server.base_url, headers=headers, timeout=60)
            run.statuses.setdefault(label, set()).add(response.status_code)
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except (AssertionError, FailureGroup) as exc:
                found = exc.exceptions if isinstance(exc, FailureGroup) else [exc]
                text = "; ".join(str(f).replace("\n", " ")[:600] for f in found)
                run.failures.append(f"{tag}: {text}\n  {case.as_curl_command()}")

        one()

    return cases


def _ordered(operations: list[Any]) -> list[Any]:
    rank = {op: i for i, op in enumerate(DESTRUCTIVE)}
    return sorted(operations, key=lambda o: rank.get((o.method.upper(), o.path), -1))


def test_fuzzing_finds_no_server_error_and_no_undeclared_response(seeded: Seeded) -> None:
    server = seeded.server
    schema = schemathesis.openapi.from_url(f"{server.base_url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    documented = {(op.method.upper(), op.path) for op in operations}
    assert set(DESTRUCTIVE) <= documented
    run = Run()
    started = time.monotonic()
    for operation in _ordered(operations):
        _fuzz(operation, server, run)
        names = {p.name for p in operation.path_parameters}
        if names:
            pinned = {k: v for k, v in seeded.pinned.items() if k in names}
            _fuzz(operation, server, run, path_parameters=pinned)
        if operation.path.endswith("/restore"):
            # A restore reloads every collection; until then requests answer 503 not_ready.
            poll_until(
                lambda: httpx.get(f"{server.base_url}/ready").status_code == 200,
                timeout_s=60,
                what="ready after a restore",
            )
    elapsed = time.monotonic() - started
    assert not run.failures, (
        f"{len(run.failures)} failing cases of {sum(run.cases.values())} in {elapsed:.0f} s:\n"
        + "\n\n".join(run.failures[:20])
    )
    # Every operation was exercised (an input space smaller than the budget ends early), and
    # the server survived the run.
    assert set(run.cases) == {op.label for op in operations}
    succeeded = sorted(k for k, codes in run.statuses.items() if any(c < 300 for c in codes))
    assert len(succeeded) >= len(operations) * 2 // 3, (succeeded, run.statuses)
    never = sorted(set(run.statuses) - set(succeeded))
    print(
        f"\nfuzzed {len(operations)} operations, {sum(run.cases.values())} cases in {elapsed:.0f} s"
    )
    print(f"operations without a 2xx: {never}")
    assert server.running, server.stderr()[-4000:]
    with server.client() as c:
        assert c.get("/v1/health").status_code == 200
    assert "Traceback" not in server.stderr(), server.stderr()[-4000:]


# -- declared error statuses --------------------------------------------------------------------
def documented_statuses() -> set[int]:
    """The statuses of docs/api.md's error table."""
    text = (ROOT / "docs" / "api.md").read_text()
    section = text.split("## Errors", 1)[1].split("\n## ", 1)[0]
    return {int(s) for s in re.findall(r"^\| (\d{3}) \|", section, flags=re.MULTILINE)}


def error_statuses() -> set[int]:
    return {
        cls.status
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.VecstoreError)
    }


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from litestar.testing import TestClient

    from tests.conftest import make_settings
    from vecstore.app import create_app

    app = create_app(make_settings(tmp_path_factory.mktemp("openapi") / "data"))
    with TestClient(app=app) as client:
        doc: dict[str, Any] = client.get("/schema/openapi.json").json()
    return doc


def _operations(openapi: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in openapi["paths"].items():
        for method, op in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield method.upper(), path, op


def expected_statuses(method: str, path: str, op: dict[str, Any]) -> set[int]:
    """What the code can answer on this operation, besides its success status."""
    if path == "/health":
        return set()
    statuses = {500, 503}  # a bug; not ready, overloaded or past request_timeout_s
    if path == "/ready":
        return statuses
    assert op.get("security"), (method, path)
    statuses |= {401, 403}  # every other route checks a key and its role
    if path == "/metrics":
        return statuses
    statuses |= {400, 422, 429}  # keyed routes: bad values, undecodable input, rate limits
    if "requestBody" in op or method != "GET":
        statuses |= {408, 413}  # a body that is too slow or too large
    dialect = not path.startswith("/v1/") or path in {"/v1/embeddings", "/v1/models", "/v1/rerank"}
    if not dialect:
        statuses.add(404)  # a collection, record, key or snapshot that does not exist
    if path in {"/v1/collections"} and method == "POST":
        statuses.add(409)
    if path.startswith("/v1/admin/snapshots") and method != "GET":
        statuses |= {409, 507}
    return statuses


def test_every_documented_error_status_is_a_known_one() -> None:
    declared = documented_statuses()
    # 405 comes from the router for a method the path does not serve (not an operation's).
    assert error_statuses() | {408, 500} <= declared
    assert declared - {405} <= {400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 503, 507}


def test_every_operation_declares_the_error_statuses_it_can_answer(
    openapi: dict[str, Any],
) -> None:
    missing = {}
    for method, path, op in _operations(openapi):
        declared = {int(code) for code in op["responses"] if code[0] in "45"}
        want = expected_statuses(method, path, op)
        if want - declared:
            missing[f"{method} {path}"] = sorted(want - declared)
    assert missing == {}


def test_the_schema_documents_the_rules_the_services_check(openapi: dict[str, Any]) -> None:
    """The constraints the fuzzer found undeclared, as the schema now states them."""
    schemas = openapi["components"]["schemas"]
    create = schemas["CreateCollectionIn"]["properties"]
    assert create["name"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
    assert create["distance_metric"]["enum"] == ["cosine", "ip", "l2"]
    key = schemas["CreateKeyIn"]["properties"]
    assert (key["name"]["minLength"], key["name"]["maxLength"]) == (1, 200)
    assert key["role"]["enum"] == ["read", "write", "admin"]
    similarity = openapi["paths"]["/v1/collections/{name}/similarity"]["post"]
    body = similarity["requestBody"]["content"]["application/json"]["schema"]
    assert body["type"] == "object"
    assert body["allOf"][0]["required"] == ["id1", "id2"]
    embeddings = schemas["OpenAIEmbeddingsIn"]
    assert embeddings["allOf"] == [{"required": ["input"]}]
    rerank = schemas["RerankDocsIn"]["allOf"]
    assert [alt["anyOf"][0]["required"] for alt in rerank] == [["query"], ["documents"]]
    tei_or_infinity = openapi["paths"]["/rerank"]["post"]["requestBody"]["content"]
    branches = tei_or_infinity["application/json"]["schema"]["anyOf"]
    assert [b["required"] for b in branches] == [["query", "texts"], ["query", "documents"]]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "type_"),
    [
        # The schema documents these rules; the services still answer them with their own 400.
        ("POST", "/v1/collections", {"name": "-bad", "dim": 4}, 400, "invalid_name"),
        ("POST", "/v1/admin/keys", {"name": "", "role": "read"}, 400, "bad_request"),
        ("POST", "/v1/admin/keys", {"name": "k", "role": "owner"}, 400, "bad_request"),
        ("POST", "/v1/collections/docs/similarity", {"id1": "a"}, 400, "bad_request"),
        ("POST", "/v1/collections", {"name": "x", "dim": 4, "index": {"nprobe": 4}}, 400, None),
    ],
)
def test_documented_rules_keep_the_service_errors(
    client: Any, method: str, path: str, body: Any, status: int, type_: str | None
) -> None:
    r = client.request(method, path, json=body)
    assert r.status_code == status, r.text
    if type_ is not None:
        assert r.json()["error"]["type"] == type_
