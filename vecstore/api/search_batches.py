"""Quick searches that reach the event loop together run as one index search.

One process answers every request, and a quick search runs on the event loop itself
(``offload``): with many clients, the loop's core does all the HTTP work and every HNSW search
one after another, and the other core idles. So a quick search does not run at once: it joins
the searches waiting for the loop's next turn, and the first one to join schedules that turn
with ``call_soon``. By then every request whose bytes arrived in the same read has reached the
same point, and ``SearchService.run`` answers them with one FAISS call, which spreads the batch
over its OpenMP threads (all cores) and shares the per-call bookkeeping. A search that has no
other request beside it (``_alone``) runs at once instead: that turn of the loop cost a lone
client ~10 % of its request rate.

A batch never waits for more requests than are already there, and it takes at most
``max_batch`` searches, so the loop is never held longer than that many quick searches spread
over the cores. When the batch cannot run without waiting (a writer holds a lock) or fails,
each of its requests runs alone in a worker thread, as a search that is not quick does, and
meets its own error there.
"""

from __future__ import annotations

import asyncio
import sys
from functools import partial

from litestar.concurrency import sync_to_thread

from vecstore.services.search import SearchPlan, SearchResult, SearchService

# Every this many checks, ``_alone`` counts the live tasks even when the registry's size says
# the request is alone (see there).
_RECOUNT_EVERY = 64

_Waiting = tuple[SearchPlan, "asyncio.Future[SearchResult | None]"]


class SearchBatcher:
    def __init__(self, search: SearchService, *, max_batch: int = 32) -> None:
        self.search = search
        self.max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._fewest_tasks = 0  # unknown until note_idle(): every search joins a batch
        self._checks = 0  # calls of _alone, for its periodic recount

    async def run(self, plan: SearchPlan) -> SearchResult:
        """The result of a plan made with ``nonblocking=True``."""
        if not self._waiting and self._alone():
            # Nothing to batch with: a turn of the loop would only add latency (~10 % of a
            # lone client's search request, measured against a live server).
            found = self._run([plan])[0]
            if found is not None:
                return found
            return (await sync_to_thread(partial(self.search.run, [plan])))[0]
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
        results = self._run([plan for plan, _ in batch])
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _run(self, plans: list[SearchPlan]) -> list[SearchResult | None]:
        """Results, or None for each plan when they cannot run now (a writer holds a lock) or
        fail: each request then runs its own plan in a worker thread and meets its outcome."""
        try:
            return list(self.search.run(plans, nonblocking=True))
        except Exception:
            return [None] * len(plans)

    def note_idle(self) -> None:
        """Called once the server has started and before any request: the tasks that exist
        now are not requests, so a request with no other beside it will see one more."""
        self._fewest_tasks = len(asyncio.all_tasks()) + 1

    def _alone(self) -> bool:
        """Whether this request is the only one the server has: no more tasks exist than the
        fewest a search has seen (uvicorn makes a task per request as soon as its headers
        arrive, before any of them runs, so requests that came in together are all counted).
        Before ``note_idle`` (and until a search finds itself alone) the answer is no.

        The size of asyncio's task registry answers first: it is never below the number of
        live tasks (it also holds finished tasks not yet freed, and other loops' tasks), so
        when it is small enough the request is alone. Otherwise, and every
        ``_RECOUNT_EVERY``-th call, ``all_tasks()`` counts the live tasks (it walks the
        registry in Python: ~3 µs warm, ~3 % of a lone search request in a profile); the
        recount lowers the fewest when a task that existed at ``note_idle`` has ended but
        stays registered, which the registry's size alone would hide. A wrong answer costs
        only speed: a search judged alone runs at once instead of joining a batch."""
        self._checks += 1
        tasks = _registered_tasks()
        if tasks is None or tasks > self._fewest_tasks or self._checks % _RECOUNT_EVERY == 0:
            tasks = len(asyncio.all_tasks())
        if tasks <= self._fewest_tasks:
            self._fewest_tasks = tasks
            return True
        return False


def _registered_tasks() -> int | None:
    """The size of asyncio's registry of tasks, without walking it (None if this Python keeps
    it elsewhere): ``_all_tasks`` up to 3.11, ``_scheduled_tasks`` and ``_eager_tasks`` in
    3.12 and 3.13. From 3.14 native tasks live in per-thread lists the registry does not
    hold, so it would count too few."""
    if sys.version_info >= (3, 14):
        return None
    registry = getattr(asyncio.tasks, "_all_tasks", None)
    if registry is None:
        registry = getattr(asyncio.tasks, "_scheduled_tasks", None)
        if registry is None:
            return None
        return len(registry) + len(getattr(asyncio.tasks, "_eager_tasks", ()))
    return len(registry)
