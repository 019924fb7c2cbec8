"""Hand freed heap memory back to the operating system (glibc only; elsewhere a no-op).

A server that parses large request bodies in many threads leaves glibc's per-thread arenas full
of freed chunks: the memory is reusable by the process but still counted in its RSS. After the
indexer catches up with a burst of writes, ``release_free_memory()`` asks glibc to return it
(``malloc_trim``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim  # absent on musl
    except (OSError, AttributeError):
        return None
    return trim


def release_free_memory() -> bool:
    """True if the C library was asked to return free memory (and had some to return)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
