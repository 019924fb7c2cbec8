"""Where a read runs: on the event loop when it is quick, else in a worker thread.

A thread hop (queue, wake a worker, hand the GIL over, wake the loop) costs more than a whole
HNSW search on a small machine: in process at 20k vectors a search request took about twice
as long through a worker as on the loop (``python -m benchmarks.run_request_path``). So the hot
reads first try themselves with
``nonblocking=True``: they answer at once when the work is bounded and no writer holds a lock,
and otherwise decline with ``WouldBlock`` before doing any work, to be run in a thread like
every other handler. A long search, a filter, a text query or a writer therefore never stalls
the loop. Searches take the same test when they are planned, and run in batches
(``search_batches``); reranks use ``quick_or_threaded``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from litestar.concurrency import sync_to_thread

from vecstore.storage.rwlock import WouldBlock

T = TypeVar("T")


async def quick_or_threaded(call: Callable[..., T]) -> T:
    """``call(nonblocking=True)`` here, or ``call()`` in a worker thread if it declines."""
    try:
        return call(nonblocking=True)
    except WouldBlock:
        return await sync_to_thread(call)
