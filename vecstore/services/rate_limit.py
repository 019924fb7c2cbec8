"""Per-key rate limits as token buckets.

A key allowed N requests per minute holds a bucket of N tokens that refills at N/60 per second:
an idle key may burst up to N requests, and sustained traffic is held to N per minute. Unlike
fixed one-minute windows, there is no boundary at which 2N requests pass within a second.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    capacity: int


class TokenBuckets:
    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str, per_minute: int) -> int:
        """Spend one token of ``key``'s bucket: 0 when the request may pass, else the whole
        seconds until the next token (the ``Retry-After`` to send)."""
        now = time.monotonic()
        rate = per_minute / 60.0
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None or bucket.capacity != per_minute:
                # New key, or its limit changed: start full at the new size.
                bucket = self._buckets[key] = _Bucket(float(per_minute), now, per_minute)
            else:
                bucket.tokens = min(per_minute, bucket.tokens + (now - bucket.updated) * rate)
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0
            return max(1, math.ceil((1.0 - bucket.tokens) / rate))

    def forget(self, key: str) -> None:
        with self._lock:
            self._buckets.pop(key, None)
