"""What the workload was told is committed: collections, records, and the exact-search oracle.

A record is kept as the server must give it back: the vector's little-endian float32 bytes and
the metadata as canonical JSON, so "equal" means byte-equal and dict ordering cannot hide or fake
a difference.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests.oracles import np_scores

Record = tuple[bytes, str]  # (float32 vector bytes, canonical metadata JSON)


def canonical(metadata: Any) -> str:
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def vector_bytes(values: Any) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


def record_of(item: dict[str, Any]) -> Record:
    """The record an upsert item stores: its vector (JSON floats or base64) with its metadata
    and content (both always sent by the harnesses, so an update replaces both)."""
    vector = item["vector"]
    raw = base64.b64decode(vector) if isinstance(vector, str) else vector_bytes(vector)
    return raw, canonical([item["metadata"], item["content"]])


def metadata_of(record: Record) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(record[1])[0]
    return value


@dataclass(frozen=True)
class CollectionSpec:
    name: str
    dim: int
    metric: str  # cosine | ip | l2
    index_type: str  # flat | hnsw

    def create_body(self) -> dict[str, Any]:
        index: dict[str, Any] = {"type": self.index_type}
        if self.index_type == "hnsw":
            index.update(m=16, ef_construction=64, ef_search=128)
        return {"name": self.name, "dim": self.dim, "distance_metric": self.metric, "index": index}


@dataclass
class CollectionState:
    spec: CollectionSpec
    records: dict[str, Record] = field(default_factory=dict)

    def copy(self) -> CollectionState:
        return CollectionState(self.spec, dict(self.records))

    def exact_top(self, query: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
        """The ids of the k best records and every record's score (higher is better)."""
        ids = list(self.records)
        if not ids:
            return [], np.zeros(0)
        matrix = np.stack([np.frombuffer(self.records[i][0], dtype="<f4") for i in ids])
        scores = np_scores(self.spec.metric, matrix, query)
        order = np.argsort(-scores, kind="stable")[:k]
        return [ids[i] for i in order], scores

    def scores_of(self, query: np.ndarray, ids: list[str]) -> np.ndarray:
        matrix = np.stack([np.frombuffer(self.records[i][0], dtype="<f4") for i in ids])
        scores: np.ndarray = np_scores(self.spec.metric, matrix, query)
        return scores


State = dict[str, CollectionState]  # collection name -> state


def copy_state(state: State) -> State:
    return {name: c.copy() for name, c in state.items()}


def diff_states(server: State, model: State, *, limit: int = 5) -> list[str]:
    """Every way ``server`` differs from ``model`` (empty: equal), a few examples per kind."""
    problems: list[str] = []
    for name in sorted(model.keys() - server.keys()):
        problems.append(f"collection {name}: acknowledged but missing")
    for name in sorted(server.keys() - model.keys()):
        problems.append(f"collection {name}: phantom (never acknowledged)")
    for name in sorted(model.keys() & server.keys()):
        want, got = model[name], server[name]
        if want.spec != got.spec:
            problems.append(f"collection {name}: spec {got.spec} != acknowledged {want.spec}")
            continue
        missing = sorted(want.records.keys() - got.records.keys())
        phantom = sorted(got.records.keys() - want.records.keys())
        changed = [
            i
            for i in sorted(want.records.keys() & got.records.keys())
            if want.records[i] != got.records[i]
        ]
        if missing:
            problems.append(f"collection {name}: {len(missing)} missing records {missing[:limit]}")
        if phantom:
            problems.append(f"collection {name}: {len(phantom)} phantom records {phantom[:limit]}")
        for i in changed[:limit]:
            what = "vector" if want.records[i][0] != got.records[i][0] else "metadata"
            problems.append(f"collection {name}: record {i!r}: {what} differs")
        if len(changed) > limit:
            problems.append(f"collection {name}: {len(changed)} records differ in all")
    return problems
