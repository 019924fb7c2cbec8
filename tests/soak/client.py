"""One soak client: random reads, writes and deletes of its own records, every read checked."""

from __future__ import annotations

import base64
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from tests.crash.model import (
    CollectionSpec,
    CollectionState,
    canonical,
    metadata_of,
    record_of,
    vector_bytes,
)

SCORE_TOLERANCE = 1e-4


@dataclass
class SoakClient:
    index: int
    seed: int
    specs: list[CollectionSpec]
    target_records: int = 400  # per collection; above it the client deletes more than it writes
    ops: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # unexpected answers and broken connections
    mismatches: list[str] = field(default_factory=list)  # reads that disagree with the model
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def __post_init__(self) -> None:
        self.prefix = f"s{self.index}-"
        self.rng = random.Random(self.seed)
        self.np_rng = np.random.default_rng(self.seed)
        self.model = {spec.name: CollectionState(spec) for spec in self.specs}
        self.next_id = 0

    # -- loop -----------------------------------------------------------------------------------
    def run(self, base_url: str, key: str, stop: threading.Event) -> None:
        with httpx.Client(base_url=base_url, headers={"x-api-key": key}, timeout=60.0) as client:
            while not stop.is_set():
                coll = self.model[self.rng.choice(sorted(self.model))]
                try:
                    self.step(client, coll)
                except httpx.TransportError as exc:
                    self.errors.append(f"transport error: {exc!r}")
                    time.sleep(0.5)

    def _call(self, client: httpx.Client, kind: str, method: str, path: str, body: Any) -> Any:
        started = time.perf_counter()
        response = client.request(method, path, json=body)
        self.latencies_ms[kind].append((time.perf_counter() - started) * 1000)
        self.ops[kind] += 1
        if response.status_code != 200:
            self.errors.append(f"{kind} {path}: {response.status_code} {response.text[:200]}")
            return None
        return response.json()["data"]

    def step(self, client: httpx.Client, coll: CollectionState) -> None:
        size = len(coll.records)
        roll = self.rng.random()
        over = size > self.target_records
        if size < 10 or (not over and roll < 0.20):
            self._upsert(client, coll)
        elif not over and roll < 0.32:
            self._bulk_upsert(client, coll)
        elif roll < (0.45 if over else 0.38):
            self._delete_one(client, coll)
        elif roll < (0.55 if over else 0.43):
            self._delete_batch(client, coll)
        elif roll < (0.60 if over else 0.45):
            self._delete_by_filter(client, coll)
        elif roll < 0.70:
            self._search_own(client, coll)
        elif roll < 0.80:
            self._search_all(client, coll)
        elif roll < 0.90:
            self._fetch(client, coll)
        elif roll < 0.95:
            self._count(client, coll)
        else:
            self._scroll_own(client, coll)

    # -- writes ---------------------------------------------------------------------------------
    def _item(self, coll: CollectionState, reuse: float) -> dict[str, Any]:
        if coll.records and self.rng.random() < reuse:
            external_id = self.rng.choice(sorted(coll.records))
        else:
            self.next_id += 1
            external_id = f"{self.prefix}{self.next_id}"
        vector = self.np_rng.standard_normal(coll.spec.dim).astype("<f4")
        return {
            "external_id": external_id,
            "vector": base64.b64encode(vector.tobytes()).decode()
            if self.rng.random() < 0.5
            else vector.tolist(),
            "metadata": {"owner": self.index, "g": self.rng.randrange(10), "x": self.rng.random()},
            "content": f"soak {self.rng.randrange(10**6)}",
        }

    @staticmethod
    def _store(coll: CollectionState, item: dict[str, Any]) -> None:
        coll.records[item["external_id"]] = record_of(item)

    def _path(self, coll: CollectionState, route: str) -> str:
        return f"/v1/collections/{coll.spec.name}/{route}"

    def _upsert(self, client: httpx.Client, coll: CollectionState) -> None:
        item = self._item(coll, reuse=0.3)
        if self._call(client, "upsert", "POST", self._path(coll, "upsert"), item) is not None:
            self._store(coll, item)

    def _bulk_upsert(self, client: httpx.Client, coll: CollectionState) -> None:
        items = [self._item(coll, reuse=0.1) for _ in range(self.rng.randint(5, 50))]
        body = {"items": items}
        path = self._path(coll, "bulk_upsert")
        if self._call(client, "bulk_upsert", "POST", path, body) is not None:
            for item in items:
                self._store(coll, item)

    def _delete_one(self, client: httpx.Client, coll: CollectionState) -> None:
        external_id = self.rng.choice(sorted(coll.records))
        path = self._path(coll, f"delete/{external_id}")
        if self._call(client, "delete", "DELETE", path, None) is not None:
            del coll.records[external_id]

    def _delete_batch(self, client: httpx.Client, coll: CollectionState) -> None:
        ids = self.rng.sample(sorted(coll.records), min(len(coll.records), self.rng.randint(2, 30)))
        body = {"external_ids": ids}
        data = self._call(client, "delete_batch", "POST", self._path(coll, "delete_batch"), body)
        if data is not None:
            if sorted(data["deleted"]) != sorted(ids):
                self.mismatches.append(f"delete_batch deleted {len(data['deleted'])}/{len(ids)}")
            for external_id in ids:
                coll.records.pop(external_id, None)

    def _delete_by_filter(self, client: httpx.Client, coll: CollectionState) -> None:
        group = self.rng.randrange(10)
        doomed = [i for i, rec in coll.records.items() if metadata_of(rec)["g"] == group]
        body = {"filters": {"owner": self.index, "g": group}}
        path = self._path(coll, "delete_by_filter")
        data = self._call(client, "delete_by_filter", "POST", path, body)
        if data is not None:
            if data["deleted_count"] != len(doomed):
                self.mismatches.append(
                    f"delete_by_filter deleted {data['deleted_count']}, model {len(doomed)}"
                )
            for external_id in doomed:
                del coll.records[external_id]

    # -- reads, each checked against the model ----------------------------------------------------
    def _search_own(self, client: httpx.Client, coll: CollectionState) -> None:
        """Filtered to this client's records: must equal exact search over its model."""
        query = self.np_rng.standard_normal(coll.spec.dim).astype(np.float32)
        body = {"vector": query.tolist(), "k": 10, "filters": {"owner": self.index}}
        data = self._call(client, "search_own", "POST", self._path(coll, "search"), body)
        if data is None:
            return
        got = [h["external_id"] for h in data["results"]]
        k = min(10, len(coll.records))
        if len(got) != k or any(i not in coll.records for i in got):
            self.mismatches.append(f"{coll.spec.name}: own search gave {len(got)}/{k} hits")
            return
        if not got:
            return
        _, scores = coll.exact_top(query, k)
        want = np.sort(scores)[::-1][:k]
        if not np.allclose(
            coll.scores_of(query, got), want, rtol=SCORE_TOLERANCE, atol=SCORE_TOLERANCE
        ):
            self.mismatches.append(f"{coll.spec.name}: own search differs from exact search")

    def _search_all(self, client: httpx.Client, coll: CollectionState) -> None:
        """Unfiltered: other clients' records change meanwhile, so check the shape and own hits."""
        query = self.np_rng.standard_normal(coll.spec.dim).astype(np.float32)
        body = {"vector": query.tolist(), "k": 10}
        data = self._call(client, "search", "POST", self._path(coll, "search"), body)
        if data is None:
            return
        got = [h["external_id"] for h in data["results"]]
        if len(set(got)) != len(got):
            self.mismatches.append(f"{coll.spec.name}: duplicate ids in a search answer")
        stale = [i for i in got if i.startswith(self.prefix) and i not in coll.records]
        if stale:
            self.mismatches.append(f"{coll.spec.name}: search returned deleted records {stale}")

    def _fetch(self, client: httpx.Client, coll: CollectionState) -> None:
        ids = self.rng.sample(sorted(coll.records), min(len(coll.records), 20))
        gone = f"{self.prefix}never"
        body = {"ids": [*ids, gone]}
        data = self._call(client, "fetch", "POST", self._path(coll, "vectors/fetch"), body)
        if data is None:
            return
        for record in data["vectors"]:
            got = (
                vector_bytes(record["vector"]),
                canonical([record["metadata"], record["content"]]),
            )
            if coll.records.get(record["external_id"]) != got:
                self.mismatches.append(f"{coll.spec.name}: fetch {record['external_id']} differs")
        if data["not_found"] != [gone]:
            self.mismatches.append(f"{coll.spec.name}: fetch not_found {data['not_found']}")

    def _count(self, client: httpx.Client, coll: CollectionState) -> None:
        body = {"filters": {"owner": self.index}}
        data = self._call(client, "count", "POST", self._path(coll, "count"), body)
        if data is not None and data["count"] != len(coll.records):
            self.mismatches.append(
                f"{coll.spec.name}: count {data['count']} != {len(coll.records)}"
            )

    def _scroll_own(self, client: httpx.Client, coll: CollectionState) -> None:
        body = {"limit": 1000, "filters": {"owner": self.index}, "include_vectors": True}
        data = self._call(client, "scroll", "POST", self._path(coll, "scroll"), body)
        if data is None:
            return
        got = {
            r["external_id"]: (vector_bytes(r["vector"]), canonical([r["metadata"], r["content"]]))
            for r in data["vectors"]
        }
        if got != coll.records:
            self.mismatches.append(f"{coll.spec.name}: own scroll differs from the model")
