"""Adapters that drive vecstore's peers (Chroma, pgvector, Milvus Lite, LanceDB, raw FAISS)
through one interface, so a benchmark can give them all identical work in one run.

Importing this package needs only numpy: each peer imports its own packages in ``start()`` and
raises ``PeerUnavailable`` when they are missing (install them with the ``peers`` extra, see
``NOTES.md``). ``PEERS`` maps each name to a factory; ``make_peer(name)`` builds one.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.peers.base import Peer, PeerUnavailable
from benchmarks.peers.chroma_peer import ChromaPeer
from benchmarks.peers.faiss_peer import FaissPeer
from benchmarks.peers.lancedb_peer import LanceDBPeer
from benchmarks.peers.milvus_peer import MilvusLitePeer
from benchmarks.peers.pgvector_peer import PgvectorPeer

PEERS: dict[str, Callable[[], Peer]] = {
    "faiss": FaissPeer,
    "chroma": ChromaPeer,
    "pgvector": PgvectorPeer,
    "milvus-lite": MilvusLitePeer,
    "lancedb": LanceDBPeer,
}


def make_peer(name: str) -> Peer:
    try:
        factory = PEERS[name]
    except KeyError:
        raise ValueError(f"unknown peer {name!r}; known: {', '.join(PEERS)}") from None
    return factory()


__all__ = [
    "PEERS",
    "ChromaPeer",
    "FaissPeer",
    "LanceDBPeer",
    "MilvusLitePeer",
    "Peer",
    "PeerUnavailable",
    "PgvectorPeer",
    "make_peer",
]
