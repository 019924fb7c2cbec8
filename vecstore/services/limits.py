"""Size limits, checked before any work is done. Every message names the field and the bound."""

from __future__ import annotations

from dataclasses import dataclass

from vecstore.errors import LimitExceeded

# Deepest nesting of a metadata object (objects and arrays, the top level counting as 1). The
# JSON decoder stops near 900 levels and SQLite's JSON functions at 1000; nothing legitimate
# comes close, and a bound here keeps every recursive walk of metadata far from either.
MAX_JSON_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Limits:
    max_dim: int = 4096
    max_metadata_bytes: int = 65536
    max_bulk_items: int = 1000
    max_candidates: int = 10000
    max_k: int = 1000
    max_k_offset: int = 10000
    max_text_chars: int = 100000
    max_external_id_bytes: int = 512
    max_bulk_queries: int = 100
    max_page: int = 1000

    def check_count(self, field: str, n: int, bound: int) -> None:
        if n > bound:
            raise LimitExceeded(f"'{field}' has {n} items; the limit is {bound} per request")

    def check_range(self, field: str, value: int, low: int, high: int) -> None:
        if not low <= value <= high:
            raise LimitExceeded(f"'{field}' must be between {low} and {high}, got {value}")
