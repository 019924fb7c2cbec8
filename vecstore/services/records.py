"""Record use cases: upserts (with text embedded in one batch), reads, deletes, scroll, import."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import numpy as np

from vecstore.domain import UNSET, Record, RecordWrite, Unset
from vecstore.errors import (
    BadRequest,
    LimitExceeded,
    RecordNotFound,
    VecstoreError,
)
from vecstore.services.collections import CollectionService
from vecstore.services.limits import MAX_JSON_DEPTH, Limits
from vecstore.services.vectors import QueryResolver, as_matrix, as_vector
from vecstore.storage.engine import StorageEngine, WriteResult
from vecstore.storage.filters import Node, parse_filter

_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class UpsertItem:
    external_id: str
    vector: Sequence[float] | str | None = None
    text: str | None = None
    metadata: dict[str, Any] | Unset | None = UNSET
    content: str | Unset | None = UNSET


class UpsertSource(Protocol):
    """What an upsert reads of an item: an ``UpsertItem``, or any object with the same
    attributes (the API passes its request Structs as they are: copying 1,000 items per
    ``bulk_upsert`` into ``UpsertItem`` was a visible share of the request)."""

    @property
    def external_id(self) -> str: ...
    @property
    def vector(self) -> Sequence[float] | str | None: ...
    @property
    def text(self) -> str | None: ...
    @property
    def metadata(self) -> dict[str, Any] | Unset | None: ...
    @property
    def content(self) -> str | Unset | None: ...


@dataclass(frozen=True, slots=True)
class WriteTiming:
    embedding_ms: float
    storage_ms: float
    total_ms: float


class RecordService:
    def __init__(
        self,
        engine: StorageEngine,
        collections: CollectionService,
        resolver: QueryResolver,
        limits: Limits,
    ) -> None:
        self.engine = engine
        self.collections = collections
        self.resolver = resolver
        self.limits = limits

    def check_external_id(self, external_id: str, field: str = "external_id") -> None:
        size = len(external_id.encode("utf-8", "surrogatepass"))
        if not 1 <= size <= self.limits.max_external_id_bytes:
            raise BadRequest(
                f"'{field}' must be 1 to {self.limits.max_external_id_bytes} bytes of UTF-8,"
                f" got {size}",
                type_="invalid_external_id",
            )

    def check_metadata(self, metadata: dict[str, Any], field: str) -> str:
        """Check ``metadata`` against the limits; returns it encoded as JSON (what is stored)."""
        encoded = _encode(metadata)
        size = len(encoded)
        if size > self.limits.max_metadata_bytes:
            raise LimitExceeded(
                f"{field} is {size} bytes of JSON; the limit is {self.limits.max_metadata_bytes}"
            )
        too_deep, bad = _json_problems(metadata, MAX_JSON_DEPTH)
        if too_deep:
            raise LimitExceeded(
                f"{field} nests objects and arrays more than {MAX_JSON_DEPTH} levels deep;"
                " flatten it (dotted keys such as 'a.b' are matched by filters)"
            )
        if bad is not None:
            raise BadRequest(
                f"{field} holds the number {bad!r:.40}; metadata numbers must be finite and"
                f" integers within ±2^53 (JSON's exactly representable range): store larger"
                f" ones as strings",
                type_="invalid_metadata",
            )
        return encoded.decode()

    def check_content(self, content: object, field: str) -> None:
        if isinstance(content, str) and len(content) > self.limits.max_text_chars:
            raise LimitExceeded(
                f"{field} has {len(content)} characters; the limit is {self.limits.max_text_chars}"
            )

    def upsert(
        self, name: str, items: Sequence[UpsertSource], *, field: str = "items"
    ) -> tuple[WriteResult, WriteTiming, list[str]]:
        started = time.perf_counter()
        info = self.collections.live(name)
        if not items:
            raise BadRequest(f"'{field}' must hold at least one item")
        self.limits.check_count(field, len(items), self.limits.max_bulk_items)
        writes: list[RecordWrite] = []
        texts: list[tuple[int, str]] = []
        for i, item in enumerate(items):
            self.check_external_id(item.external_id, f"{field}[{i}].external_id")
            if item.vector is None:
                if item.text is None:
                    raise BadRequest(f"{field}[{i}] needs 'vector' or 'text'")
                self.resolver.check_text(item.text, _text_field(field, i))
                texts.append((i, item.text))
            metadata = item.metadata
            if metadata is None:
                metadata = {}
            metadata_json = None
            if not isinstance(metadata, Unset):
                metadata_json = self.check_metadata(metadata, f"{field}[{i}].metadata")
            content = item.content
            if isinstance(content, Unset) and item.text is not None:
                content = item.text  # content defaults to the embedded text
            self.check_content(content, "content" if field == "item" else f"{field}[{i}].content")
            writes.append(
                RecordWrite(
                    item.external_id, np.zeros(0, np.float32), metadata, content, metadata_json
                )
            )
        given = [(i, it.vector) for i, it in enumerate(items) if it.vector is not None]
        if given:
            matrix = as_matrix(
                [v for _, v in given],
                info.dim,
                field=field,
                metric=info.metric,
                positions=[i for i, _ in given],
            )
            for row, (i, _) in enumerate(given):
                writes[i].vector = matrix[row]
        embedding_ms, warnings = 0.0, []
        if texts:  # every text of the request in one embedding call
            out = self.resolver.embed_texts(
                info,
                [t for _, t in texts],
                [_text_field(field, i) for i, _ in texts],
                query=False,
            )
            embedding_ms, warnings = out.embedding_ms, out.warnings
            for row, (i, _) in enumerate(texts):
                writes[i].vector = out.vectors[row]
        t1 = time.perf_counter()
        result = self.engine.upsert(name, writes, collection_id=info.id)
        storage_ms = (time.perf_counter() - t1) * 1000
        total_ms = (time.perf_counter() - started) * 1000
        return result, WriteTiming(embedding_ms, storage_ms, total_ms), warnings

    def get(self, name: str, external_id: str, include_vector: bool) -> Record:
        self.collections.live(name)
        found = self.engine.fetch(name, [external_id], include_vector)
        if external_id not in found:
            raise RecordNotFound(f"no record '{external_id}' in collection '{name}'")
        return found[external_id]

    def fetch(
        self, name: str, ids: Sequence[str], include_vectors: bool
    ) -> tuple[list[Record], list[str]]:
        self.collections.live(name)
        self.limits.check_count("ids", len(ids), self.limits.max_bulk_items)
        found = self.engine.fetch(name, ids, include_vectors)
        records = [found[i] for i in dict.fromkeys(ids) if i in found]
        missing = [i for i in dict.fromkeys(ids) if i not in found]
        return records, missing

    def delete_one(self, name: str, external_id: str) -> None:
        self.collections.live(name)
        deleted, _ = self.engine.delete(name, [external_id])
        if not deleted:
            raise RecordNotFound(f"no record '{external_id}' in collection '{name}'")

    def delete_batch(self, name: str, ids: Sequence[str]) -> tuple[list[str], list[str]]:
        self.collections.live(name)
        self.limits.check_count("external_ids", len(ids), self.limits.max_bulk_items)
        return self.engine.delete(name, ids)

    def delete_by_filter(self, name: str, filters: dict[str, Any]) -> int:
        self.collections.live(name)
        node = parse_filter(filters)
        if node is None:
            raise BadRequest(
                "'filters' must be a non-empty filter object; to drop every record,"
                " delete the collection"
            )
        return self.engine.delete_by_filter(name, node)

    def count(self, name: str, filters: dict[str, Any] | None) -> int:
        self.collections.live(name)
        return self.engine.count(name, parse_filter(filters))

    def scroll(
        self,
        name: str,
        *,
        cursor: str | None,
        limit: int,
        filters: dict[str, Any] | None,
        include_vectors: bool,
    ) -> tuple[list[Record], str | None]:
        runtime = self.collections.live(name)
        self.limits.check_range("limit", limit, 1, self.limits.max_page)
        node: Node | None = parse_filter(filters)
        after = decode_cursor(cursor, runtime.id) if cursor else None
        records, last = self.engine.scroll(
            name, after=after, limit=limit, node=node, include_vectors=include_vectors
        )
        return records, encode_cursor(runtime.id, last) if last is not None else None

    def export(self, name: str) -> Iterator[list[Record]]:
        self.collections.live(name)
        return self.engine.iter_records(name)

    def import_lines(
        self, name: str, lines: Iterable[bytes] | Iterable[tuple[int, bytes]]
    ) -> tuple[int, int]:
        """Import NDJSON records in batches; each batch is one transaction.

        ``lines`` holds raw lines, or ``(line number, line)`` pairs when the caller feeds one
        stream in several calls: every error then names the line's number in the whole body.
        """
        info = self.collections.live(name)
        inserted = updated = 0
        batch: list[UpsertItem] = []
        for position, entry in enumerate(lines, start=1):
            lineno, line = entry if isinstance(entry, tuple) else (position, entry)
            if not line.strip():
                continue
            try:
                raw = msgspec.json.decode(line)
            except msgspec.DecodeError as exc:
                raise BadRequest(f"import line {lineno} is not valid JSON: {exc}") from exc
            except RecursionError:
                raise LimitExceeded(
                    f"import line {lineno} is nested too deeply to decode; metadata may nest at"
                    f" most {MAX_JSON_DEPTH} levels"
                ) from None
            if not isinstance(raw, dict) or not isinstance(raw.get("external_id"), str):
                raise BadRequest(f"import line {lineno} needs an object with 'external_id'")
            vector = raw.get("vector")
            if not isinstance(vector, list):
                raise BadRequest(f"import line {lineno} needs 'vector' ({info.dim} floats)")
            metadata = raw.get("metadata", {})
            if not isinstance(metadata, dict):
                raise BadRequest(f"import line {lineno}: 'metadata' must be an object")
            content = raw.get("content")
            if content is not None and not isinstance(content, str):
                raise BadRequest(f"import line {lineno}: 'content' must be a string or null")
            if not all(type(x) is float or type(x) is int for x in vector):
                raise BadRequest(f"import line {lineno}: 'vector' must be a list of numbers")
            try:  # validate here, so that the error names the line rather than a batch index
                self.check_external_id(raw["external_id"])
                as_vector(vector, info.dim, metric=info.metric)
                self.check_metadata(metadata, "'metadata'")
                self.check_content(content, "'content'")
            except VecstoreError as exc:
                raise type(exc)(
                    f"import line {lineno}: {exc.message}", type_=exc.error_type
                ) from exc
            batch.append(UpsertItem(raw["external_id"], vector, None, metadata, content))
            if len(batch) >= self.limits.max_bulk_items:
                result, _, _ = self.upsert(name, batch, field=f"lines ending {lineno}")
                inserted, updated = inserted + result.inserted, updated + result.updated
                batch = []
        if batch:
            result, _, _ = self.upsert(name, batch, field="lines")
            inserted, updated = inserted + result.inserted, updated + result.updated
        return inserted, updated


SAFE_INTEGER = 2**53


def _text_field(field: str, i: int) -> str:
    """How messages name an item's text: plain 'text' for a single upsert (its body is the
    item), 'items[3].text' in a bulk request."""
    return "text" if field == "item" else f"{field}[{i}].text"


_SCALARS = (str, bool, type(None))


def _json_problems(value: dict[str, Any], depth_limit: int) -> tuple[bool, int | float | None]:
    """(objects and arrays nest deeper than ``depth_limit``, the first number that filters
    could not compare exactly) in one walk that never recurses. Depth is what is reported
    when both are wrong; the walk order matches the number check's earlier, separate walk."""
    # Most metadata is one flat object of scalars: settle that without building a stack.
    for item in value.values():
        kind = type(item)
        if kind is int:
            if not -SAFE_INTEGER <= item <= SAFE_INTEGER:
                break
        elif kind is float:
            if not math.isfinite(item):
                break
        elif kind not in _SCALARS:
            break
    else:
        return False, None
    bad: int | float | None = None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            if bad is None and not isinstance(item, bool) and isinstance(item, (int, float)):
                if isinstance(item, int):
                    if not -SAFE_INTEGER <= item <= SAFE_INTEGER:
                        bad = item
                elif not math.isfinite(item):
                    bad = item
            continue
        if depth > depth_limit:
            return True, None
        stack.extend((child, depth + 1) for child in children)
    return False, bad


# A scroll cursor is a position, not a capability: every page is authorised afresh against the
# key's scope, so a forged cursor can reach nothing a fresh scroll could not. It is bound to the
# collection it was issued for (its never-reused numeric id: a dropped and re-created collection
# of the same name does not accept it) and carries a check value, so a cursor reused on another
# collection, truncated or edited is refused with 400 rather than read as some other position.
_CURSOR_CONTEXT = b"vecstore scroll cursor v1\0"
_CURSOR_TAG = 8


def _cursor_tag(body: bytes) -> bytes:
    return hashlib.sha256(_CURSOR_CONTEXT + body).digest()[:_CURSOR_TAG]


def encode_cursor(collection_id: int, external_id: str) -> str:
    body = collection_id.to_bytes(8, "big", signed=True) + external_id.encode(
        "utf-8", "surrogatepass"
    )
    return base64.urlsafe_b64encode(_cursor_tag(body) + body).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, collection_id: int) -> str:
    """The external id to resume after; 400 for anything ``encode_cursor`` did not produce for
    this collection."""
    invalid = BadRequest("'cursor' is not a cursor this server returned", type_="invalid_cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise invalid from exc
    tag, body = raw[:_CURSOR_TAG], raw[_CURSOR_TAG:]
    if len(body) < 9 or not hmac.compare_digest(tag, _cursor_tag(body)):
        raise invalid
    try:
        value = body[8:].decode("utf-8", "surrogatepass")
    except UnicodeError as exc:
        raise invalid from exc
    # The decoder skips characters outside the alphabet ("!!!!" decodes to ""): accept only the
    # exact form encode_cursor produces, so a mangled cursor never silently restarts the scroll.
    issued_for = int.from_bytes(body[:8], "big", signed=True)
    if encode_cursor(issued_for, value) != cursor:
        raise invalid
    if issued_for != collection_id:
        raise BadRequest(
            "'cursor' was issued for another collection (or an earlier collection of this"
            " name); scroll this one from the start, without a cursor",
            type_="invalid_cursor",
        )
    return value
