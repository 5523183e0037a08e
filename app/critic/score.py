"""Scoring the corpus with a critic version, in chunks that any worker can take.

``unscored_ids`` finds what a version has not scored yet (so a re-score resumes where it
stopped and newly imported triples are picked up), ``score_triples`` scores one chunk and
writes its scores idempotently. A Celery group of chunks spreads the work over the workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.critic.train import critic_input, load_critic, score_pairs
from app.db import insert_ignoring_duplicates
from app.models import CriticVersion, Score, Triple


def unscored_ids(session: Session, version_id: int, limit: int | None = None) -> list[int]:
    """Triple ids without a score from ``version_id``, in id order."""
    scored = select(Score.triple_id).where(Score.critic_version_id == version_id)
    query = select(Triple.id).where(Triple.id.not_in(scored)).order_by(Triple.id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


@lru_cache(maxsize=2)
def _model(path: str, quantize: bool):  # type: ignore[no-untyped-def]
    """A loaded critic, kept per worker process (loading costs more than scoring a chunk)."""
    model, tokenizer = load_critic(path)
    if quantize:
        # int8 weights for the linear layers, for CPU scoring. torch marks torch.ao.quantization
        # deprecated in favour of the torchao package; it still works on the pinned torch, and
        # moving to torchao is a follow-up (it is not on these machines yet).
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model, tokenizer


def score_triples(
    session: Session,
    version_id: int,
    triple_ids: Sequence[int],
    *,
    batch_size: int = 64,
    names: bool = True,
    quantize: bool = False,
) -> int:
    """Score one chunk with the version's model and store the scores; returns how many."""
    version = session.get(CriticVersion, version_id)
    if version is None or not version.path:
        raise LookupError(f"critic version {version_id} has no trained model")
    rows = session.execute(
        select(Triple.id, Triple.head, Triple.relation, Triple.tail).where(
            Triple.id.in_(list(triple_ids))
        )
    ).all()
    if not rows:
        return 0
    model, tokenizer = _model(version.path, quantize)
    pairs = [critic_input(r.head, r.relation, r.tail, names=names) for r in rows]
    scores = score_pairs(model, tokenizer, pairs, batch_size=batch_size)
    insert_ignoring_duplicates(
        session,
        Score.__table__,
        [
            {"critic_version_id": version_id, "triple_id": r.id, "p_accept": float(s)}
            for r, s in zip(rows, scores, strict=True)
        ],
    )
    return len(rows)
