"""Bounded LRU caches of embeddings: a repeated query, or a document reranked again, skips the
model entirely."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from vecstore.domain import FloatArray


@dataclass(frozen=True, slots=True)
class CachedEmbedding:
    vector: FloatArray  # read-only: shared by every caller that hits it
    tokens: int
    truncated: bool


class EmbeddingCache:
    """Thread-safe. With ``digest_keys`` a text is keyed by a 128-bit BLAKE2b digest instead of
    itself, so an entry's size does not grow with the text (documents can be long; queries are
    short and kept as they are)."""

    def __init__(self, max_entries: int, *, digest_keys: bool = False) -> None:
        self.max_entries = max_entries
        self.digest_keys = digest_keys
        self._entries: OrderedDict[tuple[str, str | bytes], CachedEmbedding] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _key(self, model: str, text: str) -> tuple[str, str | bytes]:
        if not self.digest_keys:
            return (model, text)
        raw = text.encode("utf-8", "surrogatepass")
        return (model, hashlib.blake2b(raw, digest_size=16).digest())

    def get(self, model: str, text: str) -> CachedEmbedding | None:
        if self.max_entries <= 0:
            return None
        key = self._key(model, text)
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found

    def put(self, model: str, text: str, entry: CachedEmbedding) -> None:
        if self.max_entries <= 0:
            return
        entry.vector.setflags(write=False)
        key = self._key(model, text)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
