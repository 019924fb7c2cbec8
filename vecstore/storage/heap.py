"""Hand freed heap memory back to the operating system (glibc only; elsewhere a no-op).

A server that parses large request bodies in many threads leaves glibc's per-thread arenas full
of freed chunks: the memory is reusable by the process but still counted in its RSS. After the
indexer catches up with a burst of writes, ``release_free_memory()`` asks glibc to return it
(``malloc_trim``).

Trimming cannot return a page that still holds one small live object, and glibc's default
placement interleaves them with large short-lived blocks: it serves a block from an arena once
a block that size has been freed (the threshold raises itself, up to 32 MiB), so megabyte-sized
request bodies and temporary arrays land between the records' small objects. After a 100k
ingest ~50 MiB of arena pages stayed resident that way (scratch runs, 403/430 MiB against
350/356 MiB with the threshold fixed; not a committed benchmark). ``set_mmap_threshold()`` fixes the
threshold (``mallopt(M_MMAP_THRESHOLD)``), so blocks from that size up always get their own
mapping and go back to the OS the moment they are freed. It is off by default: every such block
is then a fresh mapping whose pages fault in one by one, and on the project's VM a 1.5 MB gather
took 1.2-6.4 ms instead of 0.1 ms at 128 KiB (a rerank of 1,000 ids over HTTP 7.8 ms instead of
~2.5 ms). Servers short of memory rather than latency can turn it on (``heap_mmap_threshold_kib``).

Each thread that allocates gets an arena of its own, up to eight per core: the worker threads
that run bulk writes each fill one with request buffers, vector blobs and SQLite pages. What
they free at the top of such an arena stays resident: ``malloc_trim`` returns free pages inside
every arena but shrinks only the main arena's top. After a 100k 384-d ingest the thread arenas
held 5-40 MiB that way, varying from run to run. ``set_arena_max()`` caps the arenas the
process may have (``mallopt(M_ARENA_MAX)``, ``heap_arena_max``, 1 by default, so every thread
allocates from the main arena and a trim reaches all of it). ``vecstore serve`` sets it before
numpy's BLAS starts its threads: a thread keeps the arena it first got. After a 100k 384-d
ingest the server's RSS was 343/345/344 MiB with one arena against 373/369/364 MiB with two
(scratch runs, alternating; the comparison in docs/benchmarks.md is the committed figure), with
ingest, 8-client search and rerank rates within the noise of each other.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable
from typing import Any


def _libc_function(name: str) -> Any:
    """A function of the C library on Linux, or None (another platform, or musl lacks it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    trim: Callable[[int], int] | None = _libc_function("malloc_trim")
    return trim


_M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
_M_ARENA_MAX = -8


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    mallopt: Callable[[int, int], int] | None = _libc_function("mallopt")
    return mallopt


def set_mmap_threshold(kib: int) -> bool:
    """Give allocations of ``kib`` KiB and more their own mappings (process-wide; 0 leaves the
    C library's default). True if glibc took the setting."""
    mallopt = _mallopt()
    if kib <= 0 or mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, kib * 1024))


def set_arena_max(arenas: int) -> bool:
    """Let all threads share at most ``arenas`` malloc arenas (process-wide; 0 leaves the C
    library's default). True if glibc took the setting. Call it before the worker threads
    allocate: a thread keeps the arena it first got."""
    mallopt = _mallopt()
    if arenas <= 0 or mallopt is None:
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


def release_free_memory() -> bool:
    """True if the C library was asked to return free memory (and had some to return)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
