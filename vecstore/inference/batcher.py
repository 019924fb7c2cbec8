"""Micro-batching: concurrent embedding requests share model runs on a dedicated executor.

Callers (request worker threads, never the event loop) hand in tokenised texts and wait. On an
idle model (nothing queued, a worker free) a lone request runs in its caller's thread: there is
nobody to batch with. Otherwise a dispatcher thread takes waiting requests while a worker is
free, lets a short window pass for company when the queue is short (and a batch is already
running), and packs a batch within a text count and a token budget
(counted as padded tokens: the batch runs at the width of its longest text). Large requests are
cut into parts of texts of similar length, so a bulk upsert never holds every worker and a long
text does not widen a run of short ones; a mid-sized lone request is cut into one part per
worker, so it uses every core. Interactive (query) requests go ahead
of bulk ones. Each caller gets its own rows back, in its own order.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from vecstore import deadlines
from vecstore.domain import FloatArray
from vecstore.errors import Overloaded, RequestTimedOut
from vecstore.inference.onnx_embedder import Tokenized

RunFn = Callable[[Sequence[Tokenized]], FloatArray]
# (texts in the batch, padded tokens, seconds the model ran)
ObserveFn = Callable[[int, int, float], None]


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    window_s: float = 0.002
    max_texts: int = 16
    max_tokens: int = 8192
    workers: int = 2
    max_queued_texts: int = 20000
    timeout_s: float = 60.0
    # A request of at least twice this many texts is cut into one part per worker (each of at
    # most max_texts), so a lone request of, say, 10 documents uses every core, not one.
    spread_min_texts: int = 4

    def part_size(self, texts: int) -> int:
        if texts < 2 * self.spread_min_texts or self.workers < 2:
            return self.max_texts
        per_worker = -(-texts // self.workers)  # ceiling division
        return max(self.spread_min_texts, min(self.max_texts, per_worker))


@dataclass(eq=False)
class _Request:
    out: FloatArray
    remaining: int
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@dataclass(eq=False, slots=True)
class _Part:
    request: _Request
    rows: list[int]  # positions in the request's output
    items: list[Tokenized]
    arrived: float

    @property
    def width(self) -> int:
        return max(item.length for item in self.items)


class MicroBatcher:
    def __init__(
        self,
        run: RunFn,
        dimension: int,
        policy: BatchPolicy,
        *,
        name: str = "embed",
        observe: ObserveFn | None = None,
    ) -> None:
        self._run = run
        self._dimension = dimension
        self.policy = policy
        self._observe = observe
        self._urgent: deque[_Part] = deque()
        self._bulk: deque[_Part] = deque()
        self._queued_texts = 0
        self._running = 0  # batches on the executor now
        self._cond = threading.Condition()
        self._free = threading.Semaphore(policy.workers)
        self._closed = False
        self._executor = ThreadPoolExecutor(policy.workers, thread_name_prefix=f"vecstore-{name}")
        self._dispatcher = threading.Thread(
            target=self._dispatch, name=f"vecstore-{name}-batcher", daemon=True
        )
        self._dispatcher.start()

    # -- callers ------------------------------------------------------------------------------
    def embed(self, items: Sequence[Tokenized], *, urgent: bool = False) -> FloatArray:
        """Block until every item is embedded; rows in input order."""
        if not items:
            return np.zeros((0, self._dimension), dtype=np.float32)
        if len(items) > self.policy.max_queued_texts:
            raise Overloaded(
                f"this request holds {len(items)} texts, more than the embedding queue takes"
                f" ({self.policy.max_queued_texts}); send fewer texts per request"
            )
        size = self.policy.part_size(len(items))
        if len(items) <= size and self._claim_idle_worker():
            return self._run_inline(items)
        request = _Request(np.empty((len(items), self._dimension), np.float32), 0)
        now = time.monotonic()
        # Parts of texts of similar length: a run is padded to its longest text, so one long
        # text among short ones would make the whole run pay for its length.
        order = sorted(range(len(items)), key=lambda i: items[i].length)
        parts = [
            _Part(request, order[s : s + size], [items[i] for i in order[s : s + size]], now)
            for s in range(0, len(order), size)
        ]
        request.remaining = len(parts)
        with self._cond:
            if self._closed:
                raise Overloaded("the embedding service is shutting down")
            if self._queued_texts + len(items) > self.policy.max_queued_texts:
                raise Overloaded(
                    f"the embedding queue is full ({self._queued_texts} texts waiting);"
                    " retry shortly or send fewer texts per request"
                )
            (self._urgent if urgent else self._bulk).extend(parts)
            self._queued_texts += len(items)
            self._cond.notify()
        wait_s = self.policy.timeout_s
        left = deadlines.remaining_s()
        by_deadline = left is not None and left < wait_s
        if left is not None:
            wait_s = min(wait_s, max(0.0, left))
        if not request.done.wait(wait_s):
            # Nobody will read these rows: parts not yet taken leave the queue (a part already
            # on the model finishes, as a model run cannot be interrupted).
            self._withdraw(request)
            if by_deadline:
                raise RequestTimedOut(
                    "the request timed out waiting for the embedding model; its texts were"
                    " taken off the queue"
                )
            raise Overloaded(
                f"embedding did not finish within {self.policy.timeout_s:g} s; the server is busy"
            )
        if request.error is not None:
            raise request.error
        return request.out

    @property
    def queued_texts(self) -> int:
        """Texts waiting for a model run now (the back-pressure gauge)."""
        with self._cond:
            return self._queued_texts

    def _withdraw(self, request: _Request) -> None:
        with self._cond:
            for queue in (self._urgent, self._bulk):
                mine = [part for part in queue if part.request is request]
                for part in mine:
                    queue.remove(part)
                    self._queued_texts -= len(part.items)

    def _claim_idle_worker(self) -> bool:
        """Nothing waits and a worker is free: there is nobody to batch with, so the caller
        may run the model itself, sparing the two thread hand-offs of the queue."""
        with self._cond:
            if self._closed or self._urgent or self._bulk:
                return False
            if not self._free.acquire(blocking=False):
                return False
            self._running += 1  # requests arriving meanwhile wait for company
            return True

    def _run_inline(self, items: Sequence[Tokenized]) -> FloatArray:
        try:
            started = time.perf_counter()
            vectors = self._run(items)
            if self._observe is not None:
                width = max(i.length for i in items)
                self._observe(len(items), width * len(items), time.perf_counter() - started)
            return vectors
        finally:
            with self._cond:
                self._running -= 1
            self._free.release()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._dispatcher.join(timeout=5)
        self._executor.shutdown(wait=True, cancel_futures=False)

    # -- dispatcher thread --------------------------------------------------------------------
    def _dispatch(self) -> None:
        while True:
            with self._cond:
                while not (self._urgent or self._bulk or self._closed):
                    self._cond.wait()
                if self._closed and not (self._urgent or self._bulk):
                    return
            self._free.acquire()  # wait for a free worker: meanwhile requests pile up
            with self._cond:  # only this thread takes; a timed-out caller may withdraw parts
                if self._urgent or self._bulk:
                    self._wait_for_company()
                batch = self._take()
                if not batch:  # every waiting part was withdrawn meanwhile
                    self._free.release()
                    continue
                self._queued_texts -= sum(len(p.items) for p in batch)
                self._running += 1
            self._executor.submit(self._run_batch, batch)

    def _wait_for_company(self) -> None:
        """A short window for more requests, when the queue holds less than a full batch and
        another batch is running (so more callers are about). An idle server never waits."""
        if self._running == 0:
            return
        oldest = min(q[0].arrived for q in (self._urgent, self._bulk) if q)
        deadline = oldest + self.policy.window_s
        while not self._closed and self._queued_texts < self.policy.max_texts:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def _take(self) -> list[_Part]:
        batch: list[_Part] = []
        texts = width = 0
        for queue in (self._urgent, self._bulk):
            while queue:
                part = queue[0]
                n, w = texts + len(part.items), max(width, part.width)
                if batch and (n > self.policy.max_texts or n * w > self.policy.max_tokens):
                    return batch
                if batch and any(p.request is part.request for p in batch):
                    return batch  # a request's parts were cut to run side by side
                batch.append(queue.popleft())
                texts, width = n, w
        return batch

    # -- executor workers ---------------------------------------------------------------------
    def _run_batch(self, batch: list[_Part]) -> None:
        try:
            items = [item for part in batch for item in part.items]
            started = time.perf_counter()
            try:
                vectors = self._run(items)
            except BaseException as exc:
                for part in batch:
                    part.request.error = exc
                    self._finish(part.request)
                return
            if self._observe is not None:
                width = max(i.length for i in items)
                self._observe(len(items), width * len(items), time.perf_counter() - started)
            offset = 0
            for part in batch:
                part.request.out[part.rows] = vectors[offset : offset + len(part.items)]
                offset += len(part.items)
                self._finish(part.request)
        finally:
            with self._cond:
                self._running -= 1
            self._free.release()

    def _finish(self, request: _Request) -> None:
        with self._cond:
            request.remaining -= 1
            last = request.remaining == 0
        if last:
            request.done.set()


class DirectRunner:
    """No batching across requests (``embedding_micro_batching=false``): each caller runs the
    model in its own thread. The benchmark compares this with the batcher."""

    def __init__(self, run: RunFn, *, observe: ObserveFn | None = None) -> None:
        self._run = run
        self._observe = observe

    def embed(self, items: Sequence[Tokenized], *, urgent: bool = False) -> FloatArray:
        started = time.perf_counter()
        vectors = self._run(items)
        if self._observe is not None and items:
            width = max(i.length for i in items)
            self._observe(len(items), width * len(items), time.perf_counter() - started)
        return vectors

    def close(self) -> None:
        return None
