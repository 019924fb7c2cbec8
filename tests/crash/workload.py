"""A workload thread: random writes against the server, recorded in its own model.

Each worker owns the collections whose names start with its prefix, so the workers write at the
same time without ever racing each other, and each keeps an exact model of its own data. A worker
sends one request at a time. When the answer is 2xx the operation is acknowledged and applied to
the model. When the connection breaks mid-request (the server was killed) the operation is *in
doubt*: the worker stops, and the model remembers both the state before it and the state it would
have produced, since the server may have committed it or not — but never half of it.
"""

from __future__ import annotations

import base64
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from tests.crash.model import (
    CollectionSpec,
    CollectionState,
    State,
    copy_state,
    metadata_of,
    record_of,
)

Apply = Callable[[State, Any], None]  # (model state, response data) -> None; mutates the state


@dataclass
class Op:
    kind: str
    method: str
    path: str
    body: Any
    apply: Apply
    # Checks the 2xx answer against what the model expects; returns a problem or None.
    expect: Callable[[Any], str | None] = lambda data: None


@dataclass
class WorkloadShape:
    max_collections: int = 3
    max_records: int = 1500
    dims: tuple[int, ...] = (8, 16)
    metrics: tuple[str, ...] = ("cosine", "ip", "l2")
    index_types: tuple[str, ...] = ("flat", "hnsw")
    max_bulk: int = 150


@dataclass
class Worker:
    index: int
    seed: int
    shape: WorkloadShape = field(default_factory=WorkloadShape)
    state: State = field(default_factory=dict)
    # When the last operation is in doubt: the state had it been committed, and its kind.
    pending: State | None = None
    pending_kind: str = ""
    acknowledged: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    timeouts: int = 0

    def __post_init__(self) -> None:
        self.prefix = f"w{self.index}"
        self.rng = random.Random(self.seed)
        self.np_rng = np.random.default_rng(self.seed)
        self.next_record = 0
        self.next_collection = 0

    # -- running --------------------------------------------------------------------------------
    def run(self, base_url: str, key: str, stop: threading.Event) -> None:
        """Send operations until ``stop`` is set or the server goes away."""
        headers = {"x-api-key": key}
        with httpx.Client(base_url=base_url, headers=headers, timeout=30.0) as client:
            while not stop.is_set():
                if not self.step(client):
                    return

    def step(self, client: httpx.Client) -> bool:
        """One operation; False once the server is unreachable (the worker then stops)."""
        op = self.next_op()
        try:
            response = client.request(op.method, op.path, json=op.body)
        except httpx.ConnectError:
            return False  # never reached the server: certainly not applied
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.TimeoutException):
                self.timeouts += 1
            self._in_doubt(op)
            return False
        if response.status_code >= 500:
            # A 5xx is a failure we report; whether it was applied is settled by the check.
            self.problems.append(f"{op.kind} {op.path}: {response.status_code} {response.text}")
            self._in_doubt(op)
            return False
        if response.status_code >= 400:
            self.problems.append(f"{op.kind} {op.path}: {response.status_code} {response.text}")
            return True
        data = response.json()["data"] if response.content else None
        problem = op.expect(data)
        if problem:
            self.problems.append(f"{op.kind} {op.path}: {problem}")
        op.apply(self.state, data)
        self.acknowledged[op.kind] += 1
        return True

    def _in_doubt(self, op: Op) -> None:
        self.pending = copy_state(self.state)
        op.apply(self.pending, None)
        self.pending_kind = op.kind

    def settle(self, server_state: State) -> None:
        """Adopt the state the check found (after it compared it with the candidates)."""
        self.state = copy_state(server_state)
        self.pending = None
        self.pending_kind = ""

    # -- choosing operations ----------------------------------------------------------------------
    def next_op(self) -> Op:
        rng, names = self.rng, sorted(self.state)
        roll = rng.random()
        if not names or (len(names) < self.shape.max_collections and roll < 0.02):
            return self._create()
        if len(names) > 1 and roll < 0.03:
            return self._drop(rng.choice(names))
        coll = self.state[rng.choice(names)]
        size = len(coll.records)
        roll = rng.random()
        if size > self.shape.max_records:
            return self._delete_by_filter(coll) if roll < 0.5 else self._delete_batch(coll)
        if size == 0 or roll < 0.35:
            return self._bulk_upsert(coll)
        if roll < 0.60:
            return self._upsert(coll)
        if roll < 0.75:
            return self._delete_one(coll)
        if roll < 0.92:
            return self._delete_batch(coll)
        return self._delete_by_filter(coll)

    def _record(self, coll: CollectionState, *, reuse: float) -> tuple[str, dict[str, Any]]:
        """A new or (with probability ``reuse``) existing id, and an upsert item for it."""
        rng = self.rng
        if coll.records and rng.random() < reuse:
            external_id = rng.choice(sorted(coll.records))
        else:
            self.next_record += 1
            external_id = f"{self.prefix}-{self.next_record}"
        vector = self.np_rng.standard_normal(coll.spec.dim).astype("<f4")
        item: dict[str, Any] = {
            "external_id": external_id,
            # Both encodings: JSON floats (float32 values print and parse exactly) and base64.
            "vector": (
                base64.b64encode(vector.tobytes()).decode()
                if rng.random() < 0.5
                else vector.tolist()
            ),
            "metadata": {
                "g": rng.randrange(10),
                "tag": rng.choice(["alpha", "beta", "gamma", "δέλτα"]),
                "x": rng.random(),
                "nested": {"n": rng.randrange(1000), "ok": rng.random() < 0.5},
            },
            "content": None if rng.random() < 0.2 else f"text {rng.randrange(10**6)}",
        }
        return external_id, item

    @staticmethod
    def _store(coll: CollectionState, item: dict[str, Any]) -> None:
        coll.records[item["external_id"]] = record_of(item)

    def _create(self) -> Op:
        self.next_collection += 1
        spec = CollectionSpec(
            name=f"{self.prefix}_c{self.next_collection}",
            dim=self.rng.choice(self.shape.dims),
            metric=self.rng.choice(self.shape.metrics),
            index_type=self.rng.choice(self.shape.index_types),
        )

        def apply(state: State, data: Any) -> None:
            state[spec.name] = CollectionState(spec)

        return Op("create_collection", "POST", "/v1/collections", spec.create_body(), apply)

    def _drop(self, name: str) -> Op:
        def apply(state: State, data: Any) -> None:
            state.pop(name, None)

        return Op("drop_collection", "DELETE", f"/v1/collections/{name}", None, apply)

    def _upsert(self, coll: CollectionState) -> Op:
        external_id, item = self._record(coll, reuse=0.4)
        status = "updated" if external_id in coll.records else "inserted"
        name = coll.spec.name

        def apply(state: State, data: Any) -> None:
            self._store(state[name], item)

        def expect(data: Any) -> str | None:
            return None if data["status"] == status else f"status {data['status']} != {status}"

        return Op("upsert", "POST", f"/v1/collections/{name}/upsert", item, apply, expect)

    def _bulk_upsert(self, coll: CollectionState) -> Op:
        count = self.rng.randint(1, self.shape.max_bulk)
        items = [self._record(coll, reuse=0.2)[1] for _ in range(count)]
        if self.rng.random() < 0.1 and items:
            # The same id twice in one call: the later item wins (inserted, then updated).
            again = dict(items[0], metadata={"g": 0, "again": True})
            items.append(again)
        seen = set(coll.records)
        inserted = 0
        for item in items:
            inserted += item["external_id"] not in seen
            seen.add(item["external_id"])
        name = coll.spec.name

        def apply(state: State, data: Any) -> None:
            for item in items:
                self._store(state[name], item)

        def expect(data: Any) -> str | None:
            got = (data["inserted"], data["updated"])
            want = (inserted, len(items) - inserted)
            return None if got == want else f"inserted/updated {got} != {want}"

        body = {"items": items}
        return Op("bulk_upsert", "POST", f"/v1/collections/{name}/bulk_upsert", body, apply, expect)

    def _delete_one(self, coll: CollectionState) -> Op:
        external_id = self.rng.choice(sorted(coll.records))
        name = coll.spec.name

        def apply(state: State, data: Any) -> None:
            state[name].records.pop(external_id, None)

        path = f"/v1/collections/{name}/delete/{external_id}"
        return Op("delete", "DELETE", path, None, apply)

    def _delete_batch(self, coll: CollectionState) -> Op:
        ids = self.rng.sample(sorted(coll.records), min(len(coll.records), self.rng.randint(1, 60)))
        absent = f"{self.prefix}-absent-{self.rng.randrange(10**9)}"
        name = coll.spec.name

        def apply(state: State, data: Any) -> None:
            for external_id in ids:
                state[name].records.pop(external_id, None)

        def expect(data: Any) -> str | None:
            if sorted(data["deleted"]) != sorted(ids) or data["not_found"] != [absent]:
                return (
                    f"deleted {len(data['deleted'])} of {len(ids)}, not_found {data['not_found']}"
                )
            return None

        body = {"external_ids": [*ids, absent]}
        return Op(
            "delete_batch", "POST", f"/v1/collections/{name}/delete_batch", body, apply, expect
        )

    def _delete_by_filter(self, coll: CollectionState) -> Op:
        group = self.rng.randrange(10)
        name = coll.spec.name

        def matching(state: State) -> list[str]:
            records = state[name].records
            return [i for i, rec in records.items() if metadata_of(rec)["g"] == group]

        expected = len(matching(self.state))

        def apply(state: State, data: Any) -> None:
            for external_id in matching(state):
                del state[name].records[external_id]

        def expect(data: Any) -> str | None:
            got = data["deleted_count"]
            return None if got == expected else f"deleted_count {got} != {expected}"

        body = {"filters": {"g": group}}
        path = f"/v1/collections/{name}/delete_by_filter"
        return Op("delete_by_filter", "POST", path, body, apply, expect)
