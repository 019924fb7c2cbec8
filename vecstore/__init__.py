"""vecstore: a self-hosted vector database with a built-in rerank endpoint."""

__version__ = "0.1.0"
