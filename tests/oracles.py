"""Shared test helpers: the error-envelope check, numpy scoring straight from the definitions,
and a count of the lookups that reach a row table's id dict."""

from __future__ import annotations

from typing import Any

import numpy as np

from vecstore.storage.vector_table import VectorTable


def assert_error(response: Any, status: int, type_: str | None = None) -> dict[str, Any]:
    """Check the error envelope (HTTP status == error.code) and return ``error``."""
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["status"] == "error"
    assert payload["error"]["code"] == status
    if type_ is not None:
        assert payload["error"]["type"] == type_, payload
    error: dict[str, Any] = payload["error"]
    return error


def np_scores(metric: str, matrix: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Higher-is-better scores in float64, straight from the definitions."""
    m = matrix.astype(np.float64)
    qq = q.astype(np.float64)
    out: np.ndarray
    if metric == "cosine":
        out = (m @ qq) / (np.linalg.norm(m, axis=1) * np.linalg.norm(qq))
    elif metric == "ip":
        out = m @ qq
    else:
        out = -np.linalg.norm(m - qq, axis=1)
    return out


def metric_value(client: Any, name: str, **labels: str) -> float:
    """One sample of the server's /metrics; 0 when the series does not exist (yet)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in client.get("/metrics").text.splitlines():
        series, _, value = line.rpartition(" ")
        if series == (f"{name}{{{wanted}}}" if labels else name):
            return float(value)
    return 0.0


class CountingDict(dict[str, int]):
    """The table's id dict, counting the lookups that reach it."""

    gets = 0

    def get(self, key: str, default: int | None = None) -> int | None:  # type: ignore[override]
        self.gets += 1
        return super().get(key, default)


def counted(table: VectorTable) -> CountingDict:
    table.row_by_external = counting = CountingDict(table.row_by_external)
    return counting
