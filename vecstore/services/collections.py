"""Collection use cases: validate names and index parameters, then call the engine."""

from __future__ import annotations

import re
from typing import Any

from vecstore.domain import (
    INDEX_TYPES,
    METRICS,
    CollectionInfo,
    IndexParams,
    Unset,
)
from vecstore.errors import BadRequest, CollectionNotFound, LimitExceeded, UnknownModel
from vecstore.services.embedder import Embedder
from vecstore.services.limits import Limits
from vecstore.storage.collection import CollectionRuntime
from vecstore.storage.engine import StorageEngine

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
INDEX_PARAM_RANGES = {
    "m": (4, 128),
    "ef_construction": (8, 4096),
    "ef_search": (1, 10000),
    "rescore_factor": (1, 64),
}


def validate_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise BadRequest(
            "'name' must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ (letters, digits, '_', '.', '-';"
            " at most 64 characters, starting with a letter or digit)",
            type_="invalid_name",
        )
    return name


def index_params(raw: dict[str, Any] | None) -> IndexParams:
    raw = {k: v for k, v in (raw or {}).items() if v is not None}
    kind = raw.pop("type", "hnsw")
    if kind in ("ivf_flat", "ivf_pq"):
        raise BadRequest(
            f"index type '{kind}' is not available in this version; use 'flat', 'hnsw' or"
            " 'hnsw_sq8'",
            type_="unsupported_index",
        )
    if kind not in INDEX_TYPES:
        raise BadRequest(f"'index.type' must be one of {', '.join(INDEX_TYPES)}, got '{kind}'")
    for key in ("nlist", "nprobe", "pq_m"):
        if key in raw:
            raise BadRequest(f"'index.{key}' applies to IVF indexes only, not '{kind}'")
    if kind != "hnsw_sq8" and "rescore_factor" in raw:
        raise BadRequest("'index.rescore_factor' applies to 'hnsw_sq8' only")
    if kind == "flat" and raw:
        raise BadRequest(f"a flat index takes no parameters, got {', '.join(sorted(raw))}")
    for key, value in raw.items():
        low, high = INDEX_PARAM_RANGES[key]
        if not isinstance(value, int) or not low <= value <= high:
            raise BadRequest(f"'index.{key}' must be an integer between {low} and {high}")
    return IndexParams(type=kind, **raw)


class CollectionService:
    def __init__(self, engine: StorageEngine, embedder: Embedder, limits: Limits) -> None:
        self.engine = engine
        self.embedder = embedder
        self.limits = limits

    def create(
        self,
        *,
        name: str,
        dim: int,
        metric: str,
        description: str | None,
        index: dict[str, Any] | None,
        embedding_model: str | None,
    ) -> CollectionInfo:
        validate_name(name)
        if not 1 <= dim <= self.limits.max_dim:
            raise BadRequest(f"'dim' must be between 1 and {self.limits.max_dim}, got {dim}")
        if metric not in METRICS:
            raise BadRequest(
                f"'distance_metric' must be one of {', '.join(METRICS)}, got '{metric}'"
            )
        self._check_description(description)
        params = index_params(index)
        embedding_model = self._embedding_model_for(dim, embedding_model)
        return self.engine.create_collection(
            name=name,
            dim=dim,
            metric=metric,
            description=description,
            params=params,
            embedding_model=embedding_model,
        )

    def _check_description(self, description: object) -> None:
        if isinstance(description, str) and len(description) > self.limits.max_text_chars:
            raise LimitExceeded(
                f"'description' has {len(description)} characters; the limit is"
                f" {self.limits.max_text_chars}"
            )

    def _embedding_model_for(self, dim: int, requested: str | None) -> str | None:
        """The model id a new collection records (its canonical id, never an alias). Without a
        request, the server's default embedder when its dimension fits, else none."""
        if requested is None:
            default = self.embedder.describe(None)
            return default.id if default is not None and default.dimension == dim else None
        model = self.embedder.describe(requested)
        if model is None or model.kind != "embedding":
            known = ", ".join(m.id for m in self.embedder.models() if m.kind == "embedding")
            raise UnknownModel(
                f"'embedding_model' '{requested}' is not a known embedding model;"
                f" known: {known or '(none)'} (see GET /v1/models)"
            )
        if model.dimension != dim:
            raise BadRequest(
                f"'embedding_model' '{requested}' produces {model.dimension} dimensions but"
                f" 'dim' is {dim}; create the collection with dim {model.dimension}",
                type_="dimension_mismatch",
            )
        return model.id

    def live(self, name: str) -> CollectionRuntime:
        """The collection's in-memory shape, without a database read (404 if absent)."""
        if not NAME_RE.fullmatch(name):
            raise CollectionNotFound(name)
        return self.engine.runtime(name)

    def get(self, name: str) -> CollectionInfo:
        if not NAME_RE.fullmatch(name):
            raise CollectionNotFound(name)
        return self.engine.get_collection(name)

    def list(self) -> list[CollectionInfo]:
        return self.engine.list_collections()

    def update(
        self, name: str, *, description: str | Unset | None, ef_search: int | None
    ) -> CollectionInfo:
        info = self.get(name)
        self._check_description(description)
        if ef_search is not None:
            if info.index.type == "flat":
                raise BadRequest("'index.ef_search' does not apply to a flat index")
            low, high = INDEX_PARAM_RANGES["ef_search"]
            if not low <= ef_search <= high:
                raise BadRequest(f"'index.ef_search' must be between {low} and {high}")
        return self.engine.update_collection(name, description=description, ef_search=ef_search)

    def delete(self, name: str) -> None:
        if not NAME_RE.fullmatch(name):
            raise CollectionNotFound(name)
        self.engine.drop_collection(name)
