"""The metadata walk (``services.records._json_problems``) against a plain recursive oracle,
and its flat fast path through HTTP."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

from tests.oracles import assert_error
from vecstore.services.records import SAFE_INTEGER, _json_problems

_LIMIT = 4


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _numbers(value: Any) -> list[Any]:
    """Numbers in the order the checks have always reported them: last child first."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        out: list[Any] = []
        for child in reversed(value):
            out += _numbers(child)
        return out
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    return []


def _unsafe(n: Any) -> bool:
    if isinstance(n, int):
        return not -SAFE_INTEGER <= n <= SAFE_INTEGER
    return not math.isfinite(n)


_scalars = (
    st.none()
    | st.booleans()
    | st.text(max_size=3)
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.sampled_from([2**53, -(2**53), 2**53 + 1, 10**400])
    | st.floats(allow_nan=True, allow_infinity=True)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=3), _json, max_size=4))
def test_the_walk_agrees_with_the_oracle(metadata: dict[str, Any]) -> None:
    too_deep, bad = _json_problems(metadata, _LIMIT)
    assert too_deep == (_depth(metadata) > _LIMIT)
    if not too_deep:
        first = next((n for n in _numbers(metadata) if _unsafe(n)), None)
        if first is None or isinstance(first, int):
            assert bad == first
        else:  # nan != nan: compare what kind of float it is
            assert bad is not None
            assert bad == first or (math.isnan(bad) and math.isnan(first))


def test_a_flat_object_with_an_unsafe_number_is_refused_through_http(
    client: TestClient[Litestar], make_collection: Any
) -> None:
    make_collection("flat", dim=2)
    bad = {"external_id": "a", "vector": [1, 0], "metadata": {"ok": 1, "n": 2**53 + 1}}
    r = client.post("/v1/collections/flat/bulk_upsert", json={"items": [bad]})
    assert assert_error(r, 400)["type"] == "invalid_metadata"
    good = {"external_id": "a", "vector": [1, 0], "metadata": {"s": "x", "b": True, "z": None}}
    assert client.post("/v1/collections/flat/bulk_upsert", json={"items": [good]}).is_success
    got = client.get("/v1/collections/flat/vectors/a").json()["data"]
    assert got["metadata"] == good["metadata"]
