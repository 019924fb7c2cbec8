"""Model inference: the model registry, ONNX embedders, micro-batching and the query cache.

The only package that imports onnxruntime and tokenizers.
"""
