"""Domain values to wire Structs."""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from vecstore.api import schemas as w
from vecstore.domain import CollectionInfo, Hit, Record
from vecstore.services.hybrid import FusedHit, QueryTiming
from vecstore.services.keys import Principal
from vecstore.services.search import ReadTiming
from vecstore.storage.keys import KeyRow
from vecstore.storage.snapshots import Manifest


def collection_out(info: CollectionInfo) -> w.CollectionOut:
    return w.CollectionOut(
        name=info.name,
        dim=info.dim,
        distance_metric=info.metric,
        description=info.description,
        index=info.index.as_dict(),
        embedding_model=info.embedding_model,
        vector_count=info.vector_count,
        created_at=info.created_at,
        updated_at=info.updated_at,
    )


def record_out(record: Record) -> w.RecordOut:
    return w.RecordOut(
        external_id=record.external_id,
        metadata=record.metadata,
        content=record.content,
        vector=record.vector.tolist() if record.vector is not None else UNSET,
    )


def hit_out(hit: Hit, *, include_content: bool = False) -> w.HitOut:
    return w.HitOut(
        external_id=hit.external_id,
        score=hit.score,
        metadata=hit.metadata,
        content=hit.content if include_content else UNSET,
        vector=hit.vector.tolist() if hit.vector is not None else UNSET,
        distance=hit.distance if hit.distance is not None else UNSET,
    )


def fused_hit_out(fused: FusedHit, *, include_content: bool = False) -> w.FusedHitOut:
    base = hit_out(fused.hit, include_content=include_content)
    return w.FusedHitOut(
        **msgspec.structs.asdict(base),
        vector_score=_given(fused.vector_score),
        text_score=_given(fused.text_score),
        retrieval_score=_given(fused.retrieval_score),
        rerank_score=_given(fused.rerank_score),
    )


def _given(value: float | None) -> float | UnsetType:
    return value if value is not None else UNSET


def query_timing(timing: QueryTiming) -> w.QueryTiming:
    return w.QueryTiming(
        embedding_ms=round(timing.embedding_ms, 4),
        search_ms=round(timing.search_ms, 4),
        rerank_ms=round(timing.rerank_ms, 4),
        total_ms=round(timing.total_ms, 4),
    )


def read_timing(timing: ReadTiming) -> w.ReadTiming:
    return w.ReadTiming(
        embedding_ms=round(timing.embedding_ms, 4),
        search_ms=round(timing.search_ms, 4),
        total_ms=round(timing.total_ms, 4),
    )


def key_out(row: KeyRow, secret: str | None = None) -> w.KeyOut:
    return w.KeyOut(
        id=row.id,
        name=row.name,
        role=row.role,
        collections=row.collections,
        is_active=row.is_active,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        prefix=row.prefix,
        rate_limit_per_minute=row.rate_limit_per_minute,
        key=secret if secret is not None else UNSET,
    )


def visible(principal: Principal, names: list[str]) -> list[str]:
    return [n for n in names if principal.can_see(n)]


def snapshot_out(manifest: Manifest) -> w.SnapshotOut:
    return w.SnapshotOut(
        id=manifest.id,
        created_at=manifest.created_at,
        size_bytes=manifest.size_bytes,
        files=len(manifest.files),
        vecstore_version=manifest.vecstore_version,
        schema_revision=manifest.schema_revision,
        collections=[
            w.SnapshotCollectionOut(c.name, c.dim, c.vector_count) for c in manifest.collections
        ],
    )
