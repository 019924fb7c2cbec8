"""The metadata filter language, checked against an independent pure-Python oracle.

The oracle below is written from the semantics stated in ``vecstore/storage/filters.py``'s module
docstring (and spec §3), not from its SQL compiler: Hypothesis generates random nested metadata
and random filters, the records go in over HTTP, and ``count`` and filtered searches must select
exactly the records the oracle selects.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import ADMIN_KEY, make_settings, wait_ready
from vecstore.app import create_app

# -- the oracle ------------------------------------------------------------------------------

_MISSING = object()


def _lookup(metadata: dict[str, Any], key: str) -> Any:
    """The value a dotted key reaches, or _MISSING; only objects are walked into."""
    value: Any = metadata
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equals(value: Any, operand: Any) -> bool:
    """Typed JSON equality of a stored value and a scalar operand (true never equals 1)."""
    if value is _MISSING:
        return False
    if operand is None:
        return value is None
    if isinstance(operand, bool):
        return isinstance(value, bool) and value is operand
    if isinstance(operand, str):
        return isinstance(value, str) and value == operand
    return _is_number(value) and value == operand


def _compare(value: Any, op: str, operand: Any) -> bool:
    if isinstance(operand, str):
        if not isinstance(value, str):
            return False
    elif not _is_number(value):
        return False
    if op == "$gt":
        return bool(value > operand)
    if op == "$gte":
        return bool(value >= operand)
    if op == "$lt":
        return bool(value < operand)
    return bool(value <= operand)


def _field_matches(metadata: dict[str, Any], key: str, op: str, operand: Any) -> bool:
    value = _lookup(metadata, key)
    if op == "$eq":
        return _equals(value, operand)
    if op == "$ne":
        return not _equals(value, operand)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return _compare(value, op, operand)
    if op == "$in":
        return any(_equals(value, v) for v in operand)
    if op == "$nin":
        return not any(_equals(value, v) for v in operand)
    if op == "$exists":
        return (value is not _MISSING) is operand
    if op == "$contains":
        return isinstance(value, list) and any(_equals(e, operand) for e in value)
    raise AssertionError(f"oracle does not know {op}")


def oracle(metadata: dict[str, Any], flt: dict[str, Any]) -> bool:
    """True when ``metadata`` satisfies the filter object ``flt`` (all its keys ANDed)."""
    for key, cond in flt.items():
        if key == "$and":
            ok = all(oracle(metadata, c) for c in cond)
        elif key == "$or":
            ok = any(oracle(metadata, c) for c in cond)
        elif key == "$not":
            ok = not oracle(metadata, cond)
        elif isinstance(cond, dict):
            ok = all(_field_matches(metadata, key, op, v) for op, v in cond.items())
        else:
            ok = _field_matches(metadata, key, "$eq", cond)
        if not ok:
            return False
    return True


def test_oracle_agrees_with_the_documented_examples() -> None:
    meta = {"n": 1, "b": True, "z": None, "tags": ["x", 2], "author": {"name": "Ann"}}
    assert oracle(meta, {"n": 1})
    assert oracle(meta, {"n": 1.0})
    assert not oracle(meta, {"b": 1})
    assert not oracle(meta, {"n": True})
    assert oracle(meta, {"missing": {"$ne": 1}})
    assert oracle(meta, {"missing": {"$nin": [1]}})
    assert oracle(meta, {"z": {"$exists": True}})
    assert not oracle(meta, {"z": {"$ne": None}})
    assert oracle(meta, {"tags": {"$contains": 2}})
    assert not oracle(meta, {"author": {"$contains": "Ann"}})
    assert oracle(meta, {"author.name": "Ann"})
    assert not oracle(meta, {"n": {"$gt": "0"}})
    assert not oracle(meta, {"b": {"$gte": 0}})


# -- strategies ------------------------------------------------------------------------------

KEYS = ("a", "b", "c")
INNER_KEYS = ("x", "y")
FILTER_PATHS = ("a", "b", "c", "o", "o.x", "o.y", "o.o.x", "a.x", "tags", "nope")

small_ints = st.integers(min_value=-3, max_value=3)
floats = st.sampled_from([-1.5, -1.0, 0.0, 0.5, 1.0, 2.0, 2.5, 1e9])
strings = st.sampled_from(["", "a", "b", "ab", "B", "é", "a b", "1", "true", "null"])
scalars = st.one_of(small_ints, floats, strings, st.booleans(), st.none())
arrays = st.lists(st.one_of(scalars, st.lists(scalars, max_size=2)), max_size=4)


def _objects(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    leaf: st.SearchStrategy[Any] = st.one_of(scalars, arrays)
    if depth > 0:
        leaf = st.one_of(leaf, _objects(depth - 1))
    return st.dictionaries(st.sampled_from((*INNER_KEYS, "o")), leaf, max_size=3)


values = st.one_of(scalars, scalars, arrays, _objects(2))
metadatas = st.dictionaries(st.sampled_from((*KEYS, "o", "tags")), values, max_size=5)


def _field_clause() -> st.SearchStrategy[dict[str, Any]]:
    comparable = st.one_of(small_ints, floats, strings)
    op_and_operand = st.one_of(
        st.tuples(st.sampled_from(["$eq", "$ne", "$contains"]), scalars),
        st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), comparable),
        st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(scalars, max_size=4)),
        st.tuples(st.just("$exists"), st.booleans()),
    )

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        path = draw(st.sampled_from(FILTER_PATHS))
        if draw(st.booleans()):
            return {path: draw(scalars)}  # shorthand equality
        ops = draw(st.lists(op_and_operand, min_size=1, max_size=2, unique_by=lambda t: t[0]))
        return {path: dict(ops)}

    return build()


filters = st.recursive(
    _field_clause(),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"$and": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"$or": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"$not": x}, inner),
        # several keys in one object are ANDed
        st.builds(lambda x, y: {**x, **y}, inner, inner),
    ),
    max_leaves=6,
)


# -- a server shared by the whole module ------------------------------------------------------


@pytest.fixture(scope="module")
def shared_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient[Litestar]]:
    data_dir: Path = tmp_path_factory.mktemp("filters") / "data"
    app = create_app(make_settings(data_dir))
    with TestClient(app=app, raise_server_exceptions=False) as client:
        wait_ready(client)
        client.headers["x-api-key"] = ADMIN_KEY
        yield client


_names = itertools.count()


def _load(client: TestClient[Litestar], metas: list[dict[str, Any]]) -> str:
    name = f"f{next(_names)}"
    r = client.post("/v1/collections", json={"name": name, "dim": 2, "distance_metric": "l2"})
    assert r.status_code == 201, r.text
    items = [
        {"external_id": f"r{i}", "vector": [float(i), 1.0], "metadata": m}
        for i, m in enumerate(metas)
    ]
    r = client.post(f"/v1/collections/{name}/bulk_upsert", json={"items": items})
    assert r.status_code == 200, r.text
    return name


def _drop(client: TestClient[Litestar], name: str) -> None:
    assert client.delete(f"/v1/collections/{name}").status_code == 200


def _count(client: TestClient[Litestar], name: str, flt: dict[str, Any]) -> int:
    r = client.post(f"/v1/collections/{name}/count", json={"filters": flt})
    assert r.status_code == 200, (flt, r.text)
    count: int = r.json()["data"]["count"]
    return count


def _search_ids(
    client: TestClient[Litestar], name: str, flt: dict[str, Any], *, exact: bool
) -> list[str]:
    r = client.post(
        f"/v1/collections/{name}/search",
        json={"vector": [0.0, 1.0], "k": 100, "filters": flt, "exact": exact},
    )
    assert r.status_code == 200, (flt, r.text)
    return [h["external_id"] for h in r.json()["data"]["results"]]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(metas=st.lists(metadatas, min_size=1, max_size=25), flts=st.lists(filters, max_size=6))
def test_count_and_filtered_search_select_exactly_what_the_oracle_selects(
    shared_client: TestClient[Litestar],
    metas: list[dict[str, Any]],
    flts: list[dict[str, Any]],
) -> None:
    client = shared_client
    name = _load(client, metas)
    try:
        for flt in flts:
            expected = sorted(f"r{i}" for i, m in enumerate(metas) if oracle(m, flt))
            assert _count(client, name, flt) == len(expected), flt
            exact_ids = _search_ids(client, name, flt, exact=True)
            assert sorted(exact_ids) == expected, flt
            # vectors are (i, 1) and the query (0, 1): l2 ranks by i, ties impossible
            assert exact_ids == sorted(exact_ids, key=lambda e: int(e[1:])), flt
            assert _search_ids(client, name, flt, exact=False) == exact_ids, flt
    finally:
        _drop(client, name)


# -- hand-picked semantics ------------------------------------------------------------------

FIXED_METAS: list[dict[str, Any]] = [
    {"n": 1, "s": "apple", "flag": True, "tags": ["red", "green"], "author": {"name": "Ann"}},
    {"n": 1.0, "s": "banana", "flag": False, "tags": ["green"], "author": {"name": "Bob"}},
    {"n": 2.5, "s": "cherry", "flag": 1, "tags": [], "author": {"name": "Ann", "age": 40}},
    {"n": "1", "s": 3, "flag": None, "tags": "red", "author": "Ann"},
    {"n": True, "nested": {"deep": {"k": "v"}}},
    {},
]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"n": 1}, [0, 1]),
        ({"n": {"$eq": 1}}, [0, 1]),
        ({"n": True}, [4]),
        ({"flag": 1}, [2]),
        ({"flag": True}, [0]),
        ({"flag": None}, [3]),
        ({"flag": {"$exists": True}}, [0, 1, 2, 3]),
        ({"flag": {"$exists": False}}, [4, 5]),
        ({"flag": {"$ne": None}}, [0, 1, 2, 4, 5]),
        ({"n": {"$ne": 1}}, [2, 3, 4, 5]),
        ({"n": {"$gt": 1}}, [2]),
        ({"n": {"$gte": 1}}, [0, 1, 2]),
        ({"n": {"$lt": "2"}}, [3]),
        ({"s": {"$gte": "b"}}, [1, 2]),
        ({"s": {"$lt": 10}}, [3]),
        ({"n": {"$in": [2.5, "1"]}}, [2, 3]),
        ({"n": {"$in": []}}, []),
        ({"n": {"$nin": [1, True]}}, [2, 3, 5]),
        ({"n": {"$nin": []}}, [0, 1, 2, 3, 4, 5]),
        ({"tags": {"$contains": "red"}}, [0]),
        ({"tags": {"$contains": "green"}}, [0, 1]),
        ({"author.name": "Ann"}, [0, 2]),
        ({"author.name": {"$exists": False}}, [3, 4, 5]),
        ({"author.age": {"$gte": 40}}, [2]),
        ({"nested.deep.k": "v"}, [4]),
        ({"$or": [{"s": "apple"}, {"n": 2.5}]}, [0, 2]),
        ({"$and": [{"author.name": "Ann"}, {"flag": True}]}, [0]),
        ({"$not": {"author.name": "Ann"}}, [1, 3, 4, 5]),
        ({"author.name": "Ann", "n": {"$gt": 2}}, [2]),
        ({"n": {"$gt": 0, "$lt": 2}}, [0, 1]),
        ({}, [0, 1, 2, 3, 4, 5]),
    ],
)
def test_documented_semantics_on_fixed_records(
    shared_client: TestClient[Litestar], flt: dict[str, Any], expected: list[int]
) -> None:
    assert sorted(i for i, m in enumerate(FIXED_METAS) if oracle(m, flt)) == expected
    name = _load(shared_client, FIXED_METAS)
    try:
        assert _count(shared_client, name, flt) == len(expected)
        got = _search_ids(shared_client, name, flt, exact=True)
        assert got == [f"r{i}" for i in expected]
    finally:
        _drop(shared_client, name)


def test_null_filters_and_scroll_and_delete_by_filter_use_the_same_language(
    shared_client: TestClient[Litestar],
) -> None:
    client = shared_client
    name = _load(client, FIXED_METAS)
    try:
        r = client.post(f"/v1/collections/{name}/count", json={"filters": None})
        assert r.json()["data"]["count"] == len(FIXED_METAS)
        r = client.post(f"/v1/collections/{name}/count", json={})
        assert r.json()["data"]["count"] == len(FIXED_METAS)
        r = client.post(f"/v1/collections/{name}/scroll", json={"filters": {"author.name": "Ann"}})
        assert r.status_code == 200, r.text
        assert [v["external_id"] for v in r.json()["data"]["vectors"]] == ["r0", "r2"]
        r = client.post(
            f"/v1/collections/{name}/delete_by_filter", json={"filters": {"n": {"$in": [1]}}}
        )
        assert r.status_code == 200, r.text
        assert r.json()["data"] == {"deleted_count": 2}
        assert _count(client, name, {}) == len(FIXED_METAS) - 2
        assert _count(client, name, {"n": 1}) == 0
    finally:
        _drop(client, name)


def test_keys_and_values_are_bound_never_spliced_into_sql(
    shared_client: TestClient[Litestar],
) -> None:
    client = shared_client
    hostile = "x') OR 1=1 --"
    name = _load(client, [{"k'; DROP TABLE records; --": hostile}, {"k": "plain"}])
    try:
        assert _count(client, name, {"k'; DROP TABLE records; --": hostile}) == 1
        assert _count(client, name, {"k": hostile}) == 0
        assert _count(client, name, {"k": {"$gt": "' OR '1'='1"}}) == 1
        assert _count(client, name, {}) == 2
    finally:
        _drop(client, name)


def test_large_and_fractional_numbers_compare_numerically(
    shared_client: TestClient[Litestar],
) -> None:
    metas: list[dict[str, Any]] = [
        {"v": 10},
        {"v": 9.75},
        {"v": -0.0},
        {"v": 2**53},
        {"v": 1e300},
        {"v": "10"},
    ]
    name = _load(shared_client, metas)
    try:
        for flt in (
            {"v": {"$gt": 9.8}},
            {"v": {"$lte": 0}},
            {"v": 0},
            {"v": {"$gte": 2**53}},
            {"v": {"$lt": 10}},
            {"v": {"$gt": "1"}},
        ):
            expected = [f"r{i}" for i, m in enumerate(metas) if oracle(m, flt)]
            assert _search_ids(shared_client, name, flt, exact=True) == expected, flt
    finally:
        _drop(shared_client, name)


# -- parse errors ----------------------------------------------------------------------------


def _error(client: TestClient[Litestar], path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(path, json=body)
    assert r.status_code == 400, r.text
    payload = r.json()
    assert payload["status"] == "error"
    assert payload["error"]["code"] == 400
    assert payload["error"]["type"] == "invalid_filter", payload
    error: dict[str, Any] = payload["error"]
    return error


@pytest.fixture(scope="module")
def tiny(shared_client: TestClient[Litestar]) -> str:
    return _load(shared_client, [{"a": 1}])


@pytest.mark.parametrize("op", ["$regex", "$like", "$size", "$elemMatch", "eq"])
def test_unknown_field_operator_is_400_naming_it(
    shared_client: TestClient[Litestar], tiny: str, op: str
) -> None:
    # "eq" (no dollar) inside an operator object is still an operator slot
    err = _error(shared_client, f"/v1/collections/{tiny}/count", {"filters": {"a": {op: 1}}})
    assert op in err["message"]


def test_unknown_top_level_operator_is_400_naming_it(
    shared_client: TestClient[Litestar], tiny: str
) -> None:
    err = _error(shared_client, f"/v1/collections/{tiny}/count", {"filters": {"$nor": [{"a": 1}]}})
    assert "$nor" in err["message"]


@pytest.mark.parametrize(
    "flt",
    [
        {"a": {"$in": 1}},
        {"a": {"$in": "abc"}},
        {"a": {"$in": [[1]]}},
        {"a": {"$nin": [{"x": 1}]}},
        {"a": {"$in": list(range(1001))}},
        {"a": {"$gt": True}},
        {"a": {"$gt": None}},
        {"a": {"$lt": [1]}},
        {"a": {"$lte": {"x": 1}}},
        {"a": {"$exists": "yes"}},
        {"a": {"$exists": 1}},
        {"a": {"$eq": [1]}},
        {"a": {"$ne": {"b": 1}}},
        {"a": {"$contains": [1]}},
        {"a": [1, 2]},
        {"a": {}},
        {"$and": []},
        {"$or": []},
        {"$and": {"a": 1}},
        {"$and": [1]},
        {"$or": ["a"]},
        {"$and": [{}]},
        {"$not": [{"a": 1}]},
        {"$not": {}},
        {'a"b': 1},
        {'a."b': 1},
        {"a\\b": 1},
        {"a..b": 1},
        {".a": 1},
        {"a.": 1},
    ],
)
def test_malformed_filters_are_400_invalid_filter(
    shared_client: TestClient[Litestar], tiny: str, flt: dict[str, Any]
) -> None:
    err = _error(shared_client, f"/v1/collections/{tiny}/count", {"filters": flt})
    assert err["message"]


def test_empty_and_message_names_the_combinator(
    shared_client: TestClient[Litestar], tiny: str
) -> None:
    err = _error(shared_client, f"/v1/collections/{tiny}/count", {"filters": {"$and": []}})
    assert "$and" in err["message"]


def test_quote_in_key_message_names_the_key(shared_client: TestClient[Litestar], tiny: str) -> None:
    err = _error(shared_client, f"/v1/collections/{tiny}/count", {"filters": {'we"ird': 1}})
    assert 'we"ird' in err["message"]


def test_too_deeply_nested_filter_is_rejected(
    shared_client: TestClient[Litestar], tiny: str
) -> None:
    flt: dict[str, Any] = {"a": 1}
    for _ in range(40):
        flt = {"$not": flt}
    _error(shared_client, f"/v1/collections/{tiny}/count", {"filters": flt})


@pytest.mark.parametrize(
    ("suffix", "extra"),
    [
        ("count", {}),
        ("search", {"vector": [0.0, 1.0]}),
        ("scroll", {}),
        ("delete_by_filter", {}),
        ("bulk_search", None),
        ("recommend/r0", {}),
    ],
)
def test_every_filtered_route_rejects_unknown_operators_the_same_way(
    shared_client: TestClient[Litestar], tiny: str, suffix: str, extra: dict[str, Any] | None
) -> None:
    bad = {"a": {"$regex": "^x"}}
    if extra is None:
        body: dict[str, Any] = {"queries": [{"vector": [0.0, 1.0], "filters": bad}]}
    else:
        body = {**extra, "filters": bad}
    err = _error(shared_client, f"/v1/collections/{tiny}/{suffix}", body)
    assert "$regex" in err["message"]
    assert _count(shared_client, tiny, {}) == 1  # delete_by_filter deleted nothing


def test_non_object_filters_are_rejected(shared_client: TestClient[Litestar], tiny: str) -> None:
    for bad in ([{"a": 1}], "a = 1", 3):
        r = shared_client.post(f"/v1/collections/{tiny}/count", json={"filters": bad})
        assert r.status_code in (400, 422), r.text
        assert r.json()["error"]["code"] == r.status_code


def test_delete_by_filter_requires_a_non_empty_filter(
    shared_client: TestClient[Litestar], tiny: str
) -> None:
    r = shared_client.post(f"/v1/collections/{tiny}/delete_by_filter", json={"filters": {}})
    assert r.status_code == 400, r.text
    assert _count(shared_client, tiny, {}) == 1


@pytest.mark.parametrize("key", ["a b", "x[0]", "k*", "é", "a-b", "$x", "0", "'", "a'b", "ключ"])
def test_unusual_keys_are_reached_literally(shared_client: TestClient[Litestar], key: str) -> None:
    flt_key = key if not key.startswith("$") else f"o.{key}"
    meta: dict[str, Any] = {key: 1} if not key.startswith("$") else {"o": {key: 1}}
    name = _load(shared_client, [meta, {"other": 1}])
    try:
        assert _count(shared_client, name, {flt_key: 1}) == 1
        assert _count(shared_client, name, {flt_key: {"$exists": False}}) == 1
        assert _count(shared_client, name, {f"nest.{flt_key}": {"$exists": True}}) == 0
    finally:
        _drop(shared_client, name)
