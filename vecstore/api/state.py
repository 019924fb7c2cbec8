"""The services one app instance runs with, kept on ``app.state.services``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from vecstore.api.metrics import Metrics
from vecstore.api.search_batches import SearchBatcher
from vecstore.inference.host import ModelHost
from vecstore.services.collections import CollectionService
from vecstore.services.document_rerank import DocumentRerankService
from vecstore.services.embedder import Embedder
from vecstore.services.embeddings import EmbeddingService
from vecstore.services.hybrid import HybridService
from vecstore.services.keys import KeyService
from vecstore.services.records import RecordService
from vecstore.services.search import SearchService
from vecstore.services.snapshots import SnapshotService
from vecstore.settings import Settings
from vecstore.storage.engine import StorageEngine


@dataclass
class AppServices:
    settings: Settings
    engine: StorageEngine
    collections: CollectionService
    records: RecordService
    search: SearchService
    hybrid: HybridService
    keys: KeyService
    snapshots: SnapshotService
    metrics: Metrics
    embedder: Embedder
    embeddings: EmbeddingService
    document_rerank: DocumentRerankService
    search_batches: SearchBatcher
    # The ONNX model host when the server runs its own models (tests may inject a fake embedder).
    models: ModelHost | None = None
    started_monotonic: float = field(default_factory=time.monotonic)


def services_of(app_state: Any) -> AppServices:
    services: AppServices = app_state.services
    return services
