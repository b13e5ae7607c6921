"""The embedding cache: a frozen backbone's features, stored once per sample.

Keyed by the sample's sha256 and the backbone's identity (which names its weights), so a
changed backbone never reads another's features. Vectors are float32 little-endian bytes;
this module knows bytes only, never torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.orm import Session

from tailord.storage.models import Embedding

_CHUNK = 500  # SQLite caps the bound parameters of one statement


def cached(session: Session, backbone: str, digests: Iterable[str]) -> dict[str, bytes]:
    """The stored vectors of ``digests`` for ``backbone``; missing ones are absent."""
    wanted = list(dict.fromkeys(digests))
    found: dict[str, bytes] = {}
    for start in range(0, len(wanted), _CHUNK):
        rows = session.execute(
            select(Embedding.sha256, Embedding.vector).where(
                Embedding.backbone == backbone,
                Embedding.sha256.in_(wanted[start : start + _CHUNK]),
            )
        )
        found.update({sha: bytes(vector) for sha, vector in rows})
    return found


def store(session: Session, backbone: str, dim: int, vectors: Mapping[str, bytes]) -> int:
    """Add ``vectors`` (sha256 -> float32 bytes of ``dim`` values); returns how many."""
    for sha, vector in vectors.items():
        if len(vector) != 4 * dim:
            raise ValueError(
                f"the embedding of {sha} has {len(vector)} bytes, not {4 * dim}; "
                "store float32 vectors of the backbone's size"
            )
    items = list(vectors.items())
    for start in range(0, len(items), _CHUNK):
        session.execute(
            insert(Embedding).on_conflict_do_nothing(),
            [
                {"sha256": sha, "backbone": backbone, "dim": dim, "vector": vector}
                for sha, vector in items[start : start + _CHUNK]
            ],
        )
    return len(items)
