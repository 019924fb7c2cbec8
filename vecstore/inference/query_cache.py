"""A bounded LRU cache of query embeddings: a repeated query skips the model entirely."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from vecstore.domain import FloatArray


@dataclass(frozen=True, slots=True)
class CachedEmbedding:
    vector: FloatArray  # read-only: shared by every caller that hits it
    tokens: int
    truncated: bool


class QueryCache:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], CachedEmbedding] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, model: str, text: str) -> CachedEmbedding | None:
        if self.max_entries <= 0:
            return None
        key = (model, text)
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
        with self._lock:
            self._entries[(model, text)] = entry
            self._entries.move_to_end((model, text))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
