"""Domain values shared by services and storage. No framework, SQL or faiss imports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import msgspec
import numpy as np
import numpy.typing as npt

Metric = Literal["cosine", "ip", "l2"]
IndexType = Literal["flat", "hnsw", "hnsw_sq8"]
METRICS: tuple[str, ...] = ("cosine", "ip", "l2")
INDEX_TYPES: tuple[str, ...] = ("flat", "hnsw", "hnsw_sq8")

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class IndexParams:
    type: str = "hnsw"
    m: int = 32
    ef_construction: int = 128
    ef_search: int = 128
    # hnsw_sq8 fetches this many times k candidates and re-scores them exactly.
    rescore_factor: int = 4

    def as_dict(self) -> dict[str, Any]:
        if self.type == "flat":
            return {"type": "flat"}
        out: dict[str, Any] = {
            "type": self.type,
            "m": self.m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
        }
        if self.type == "hnsw_sq8":
            out["rescore_factor"] = self.rescore_factor
        return out


class CollectionShape(Protocol):
    """What a request needs to know of a collection: the hot paths read it from memory."""

    @property
    def id(self) -> int: ...

    @property
    def dim(self) -> int: ...

    @property
    def metric(self) -> str: ...

    @property
    def embedding_model(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    id: int
    name: str
    dim: int
    metric: str
    description: str | None
    index: IndexParams
    embedding_model: str | None
    vector_count: int
    created_at: str
    updated_at: str


# A field absent from the request (as opposed to null): msgspec's own marker, so the values the
# wire layer decodes pass through to the domain unchanged.
Unset = msgspec.UnsetType
UNSET = msgspec.UNSET


@dataclass(slots=True)
class RecordWrite:
    """One upsert. ``metadata``/``content`` UNSET means "keep what is stored"."""

    external_id: str
    vector: FloatArray
    metadata: dict[str, Any] | Unset = UNSET
    content: str | Unset | None = UNSET
    # ``metadata`` as stored JSON, when the caller has already encoded it (to size-check it)
    metadata_json: str | None = None


@dataclass(slots=True)
class Record:
    external_id: str
    metadata: dict[str, Any]
    content: str | None = None
    vector: FloatArray | None = None


class Hit(msgspec.Struct):
    """One scored record. A msgspec Struct rather than a dataclass: a rerank builds a thousand
    of these per request, and Struct construction runs in C."""

    external_id: str
    score: float
    internal_id: int
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    distance: float | None = None
    content: str | None = None
    vector: FloatArray | None = None


@dataclass(frozen=True, slots=True)
class SearchOptions:
    k: int = 10
    offset: int = 0
    exact: bool = False
    ef_search: int | None = None
    score_threshold: float | None = None
    include_vectors: bool = False
    include_content: bool = False


@dataclass(frozen=True, slots=True)
class CollectionStats:
    name: str
    dim: int
    metric: str
    vector_count: int
    index_type: str
    index_vectors: int
    deleted_fraction: float


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the API says of a registered model (``GET /v1/models``)."""

    id: str
    kind: str  # "embedding" | "cross-encoder"
    dimension: int | None
    max_tokens: int
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Embeddings:
    """The output of one embedding call: a row per text, in input order."""

    model: str
    vectors: FloatArray  # unit length when the model normalises (every built-in one does)
    token_counts: list[int]
    truncated: list[bool]
    # Each text's pooled vector length before normalisation (a TEI client may ask for raw vectors).
    norms: FloatArray | None = None

    @property
    def total_tokens(self) -> int:
        return sum(self.token_counts)


@dataclass(frozen=True, slots=True)
class ChunkedEmbeddings:
    """Documents embedded for scoring, long ones as several chunks."""

    model: str
    vectors: FloatArray  # a row per chunk
    owner: list[int]  # the document of each row
    tokens: int  # tokens of every chunk embedded
    truncated: list[bool]  # per document: it lost text (more chunks than allowed)


@dataclass(frozen=True, slots=True)
class CrossScores:
    """A cross-encoder's verdict on each document: its best chunk's logit."""

    model: str
    logits: list[float]
    tokens: int  # tokens of every (query, chunk) pair scored
    truncated: list[bool]  # a document lost text (more chunks than allowed)
