"""Quick searches that reach the event loop together run as one index search.

One process answers every request, and a quick search runs on the event loop itself
(``offload``): with many clients, the loop's core does all the HTTP work and every HNSW search
one after another, and the other core idles. So a quick search does not run at once: it joins
the searches waiting for the loop's next turn, and the first one to join schedules that turn
with ``call_soon``. By then every request whose bytes arrived in the same read has reached the
same point, and ``SearchService.run`` answers them with one FAISS call, which spreads the batch
over its OpenMP threads (all cores) and shares the per-call bookkeeping. A lone client pays one
extra turn of the loop.

A batch never waits for more requests than are already there, and it takes at most
``max_batch`` searches, so the loop is never held longer than that many quick searches spread
over the cores. When the batch cannot run without waiting (a writer holds a lock) or fails,
each of its requests runs alone in a worker thread, as a search that is not quick does, and
meets its own error there.
"""

from __future__ import annotations

import asyncio
from functools import partial

from litestar.concurrency import sync_to_thread

from vecstore.services.search import SearchPlan, SearchResult, SearchService

_Waiting = tuple[SearchPlan, "asyncio.Future[SearchResult | None]"]


class SearchBatcher:
    def __init__(self, search: SearchService, *, max_batch: int = 32) -> None:
        self.search = search
        self.max_batch = max_batch
        self._waiting: list[_Waiting] = []

    async def run(self, plan: SearchPlan) -> SearchResult:
        """The result of a plan made with ``nonblocking=True``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SearchResult | None] = loop.create_future()
        self._waiting.append((plan, future))
        if len(self._waiting) == 1:
            loop.call_soon(self._flush)
        result = await future
        if result is None:  # the batch declined: alone, off the loop
            return (await sync_to_thread(partial(self.search.run, [plan])))[0]
        return result

    def _flush(self) -> None:
        batch = self._waiting[: self.max_batch]
        del self._waiting[: self.max_batch]
        if self._waiting:
            asyncio.get_running_loop().call_soon(self._flush)
        batch = [(plan, future) for plan, future in batch if not future.done()]  # timed out
        if not batch:
            return
        try:
            results: list[SearchResult | None] = list(
                self.search.run([plan for plan, _ in batch], nonblocking=True)
            )
        except Exception:  # WouldBlock, or an error each request should meet on its own
            results = [None] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
