"""Keep the cyclic garbage collector off the objects that live as long as the server.

A full collection visits every tracked object, and after start-up ~100k of them live for the
whole process (modules, the Litestar app, SQLAlchemy, FAISS's wrappers). On the project's 2-core
VM a full collection took ~100 ms while holding the GIL, a pause for every request in flight;
during a bulk ingest full collections come every second or so. ``gc.freeze()`` moves everything
alive after start-up into a permanent generation the collector skips: with 100k records loaded a
full collection took 13.4 ms instead of 102.7 ms (``python -m benchmarks.run_gc_pause``,
benchmarks/results/gc-pause-2026-12-04.md). The server undoes it at shutdown, so a process that
builds many apps (the test suite) does not keep their objects from the collector.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Exempt what is alive now from later collections. Young garbage is collected first (cheap);
    older garbage, if any, is kept until ``unfreeze``."""
    gc.collect(1)
    gc.freeze()


def unfreeze() -> None:
    gc.unfreeze()
