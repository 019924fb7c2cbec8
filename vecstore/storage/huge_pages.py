"""Transparent huge pages for the large arrays an index search reads (Linux; elsewhere a no-op).

An HNSW search of a 100k 384-d collection reads about a thousand stored vectors scattered over
150 MB, and the neighbour lists of as many nodes. On 4 KiB pages nearly every one of those
reads misses the TLB, and in a virtual machine each miss walks two page tables; the search
also evicts the TLB entries of everything the request does next. On 2 MiB pages the same
150 MB are 75 entries. Most Linux systems ship transparent huge pages in "madvise" mode, so a
process has to ask for them: ``advise()`` marks a range ``MADV_HUGEPAGE`` and then, on kernels
from 6.1, collapses what is already resident into huge pages at once (``MADV_COLLAPSE``, which
copies: ~0.5 s per 150 MB, run by the background indexer, never on a request). Older kernels
leave the collapse to ``khugepaged``, which gets there in minutes.

Only the 2 MiB-aligned part inside each range is advised, so no page outside the array's used
bytes (FAISS's arrays keep spare capacity) is faulted in: the RSS does not grow. The effect on
this project's VM, at ef 32 on 100k 384-d vectors: 7 % less time inside FAISS on random vectors
(``benchmarks/run_request_path.py``), ~17 % on the docstring embeddings of the comparison
(scratch).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import sys
from collections.abc import Iterable
from typing import Any

HUGE_PAGE = 2 * 1024 * 1024
_MADV_HUGEPAGE = 14  # <sys/mman.h> on Linux
_MADV_COLLAPSE = 25  # Linux 6.1+


@functools.cache
def _madvise() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


_collapse_supported = True  # until the kernel says otherwise (EINVAL: older than 6.1)


def aligned_inside(address: int, size: int) -> tuple[int, int] | None:
    """The largest 2 MiB-aligned ``(start, length)`` inside ``[address, address + size)``."""
    start = -(-address // HUGE_PAGE) * HUGE_PAGE
    stop = (address + size) // HUGE_PAGE * HUGE_PAGE
    return (start, stop - start) if stop > start else None


def advise(regions: Iterable[tuple[int, int]], *, collapse: bool = True) -> int:
    """Ask for huge pages under each ``(address, size)`` region; the bytes advised (0 when the
    platform has no ``madvise`` or every region is under 2 MiB). Errors are ignored: huge pages
    are a speed-up, never a condition of correctness."""
    global _collapse_supported
    madvise = _madvise()
    if madvise is None:
        return 0
    advised = 0
    for address, size in regions:
        inside = aligned_inside(address, size)
        if inside is None:
            continue
        start, length = inside
        if madvise(start, length, _MADV_HUGEPAGE) != 0:
            continue
        advised += length
        if (
            collapse
            and _collapse_supported
            and madvise(start, length, _MADV_COLLAPSE) != 0
            and ctypes.get_errno() == errno.EINVAL  # a kernel older than 6.1
        ):
            _collapse_supported = False
    return advised
