"""Send pre-encoded POSTs from N threads, each with its own connection, and time every call."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.client import ApiClient
from benchmarks.metrics import latency_ms
from benchmarks.server import ServerHandle

# Time allowed, beyond the phase budget, for in-flight requests to finish before giving up.
_JOIN_GRACE_S = 180.0


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes


@dataclass
class LoadResult:
    planned: int
    wall_s: float
    latencies_s: npt.NDArray[np.float64]
    # (request index, raw response body) for every completed call, when asked for.
    responses: list[tuple[int, bytes]] = field(default_factory=list)
    retries: int = 0

    @property
    def completed(self) -> int:
        return int(self.latencies_s.size)

    @property
    def timed_out(self) -> bool:
        return self.completed < self.planned

    @property
    def qps(self) -> float:
        return self.completed / self.wall_s if self.wall_s > 0 else 0.0

    def figures(self) -> dict[str, Any]:
        """The JSON-ready summary of a pass (without the raw responses)."""
        return {
            "completed": self.completed,
            "planned": self.planned,
            "timed_out": self.timed_out,
            "wall_s": self.wall_s,
            "qps": self.qps,
            "latency": latency_ms(self.latencies_s),
            "retries": self.retries,
        }


def striped(n_requests: int, threads: int) -> list[list[int]]:
    """Each request once: thread t sends requests t, t+threads, t+2*threads, ..."""
    return [list(range(t, n_requests, threads)) for t in range(threads)]


def cycled(n_requests: int, threads: int, per_thread: int) -> list[list[int]]:
    """``per_thread`` requests on every thread, walking the list from staggered offsets."""
    if n_requests == 0:
        return [[] for _ in range(threads)]
    step = max(1, n_requests // threads)
    return [[(t * step + j) % n_requests for j in range(per_thread)] for t in range(threads)]


def run_load(
    server: ServerHandle,
    requests: Sequence[Request],
    assignments: Sequence[Sequence[int]],
    *,
    time_budget_s: float,
    keep_responses: bool = False,
) -> LoadResult:
    """Run ``assignments[t]`` (indices into ``requests``) on thread t; all threads start together.

    A thread stops early once ``time_budget_s`` has passed since the common start; the result then
    reports fewer completed than planned calls. Latency is the client-side HTTP round trip.
    """
    threads = len(assignments)
    start: list[float] = []
    ends = [0.0] * threads
    latencies: list[list[float]] = [[] for _ in range(threads)]
    responses: list[list[tuple[int, bytes]]] = [[] for _ in range(threads)]
    retries = [0] * threads
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads, action=lambda: start.append(time.perf_counter()))

    def worker(t: int) -> None:
        try:
            with ApiClient(server.base_url, server.key) as client:
                client.get_health()  # open the connection before the clock starts
                barrier.wait(timeout=60)
                deadline = start[0] + time_budget_s
                for idx in assignments[t]:
                    if time.perf_counter() >= deadline:
                        break
                    req = requests[idx]
                    t0 = time.perf_counter()
                    raw = client.post_raw(req.path, req.body)
                    latencies[t].append(time.perf_counter() - t0)
                    if keep_responses:
                        responses[t].append((idx, raw))
                ends[t] = time.perf_counter()
                retries[t] = client.retries
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    pool = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(timeout=time_budget_s + _JOIN_GRACE_S)
    if errors:
        raise errors[0]
    if any(th.is_alive() for th in pool):
        raise TimeoutError(f"load threads still running {_JOIN_GRACE_S:.0f} s after the budget")
    return LoadResult(
        planned=sum(len(a) for a in assignments),
        wall_s=max(ends) - start[0] if start else 0.0,
        latencies_s=np.array([x for lat in latencies for x in lat], dtype=np.float64),
        responses=[r for per in responses for r in per],
        retries=sum(retries),
    )
