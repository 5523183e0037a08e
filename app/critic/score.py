"""Scoring the corpus with a critic version, in chunks that any worker can take.

``unscored_ids`` finds what a version has not scored yet (so a re-score resumes where it
stopped and newly imported triples are picked up), ``score_triples`` scores one chunk and
writes its scores idempotently. A Celery group of chunks spreads the work over the workers.

torch and transformers are imported when a model is first needed, so the commands and pages
that only read scores start fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session

from app.core import triple_counts
from app.core.db import insert_ignoring_duplicates, session_scope
from app.core.models import CriticVersion, Score, Triple


def _unscored(version_id: int) -> Select[tuple[int]]:
    scored = select(Score.triple_id).where(
        Score.critic_version_id == version_id, Score.triple_id == Triple.id
    )
    return select(Triple.id).where(~scored.exists()).order_by(Triple.id)


def unscored_ids(session: Session, version_id: int, limit: int | None = None) -> list[int]:
    """Triple ids without a score from ``version_id``, in id order."""
    query = _unscored(version_id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


@dataclass(frozen=True)
class Chunk:
    """A range of triple ids (inclusive) holding ``size`` triples this version has not scored."""

    first_id: int
    last_id: int
    size: int


def plan_chunks(session: Session, version_id: int, chunk_size: int) -> list[Chunk]:
    """Split what ``version_id`` has not scored yet into id ranges of ``chunk_size`` triples.

    Ranges, not id lists, travel in task messages (small whatever the chunk size), and a
    range is re-read when its task runs, so work finished in the meantime is not redone.
    """
    if chunk_size < 1:
        raise ValueError("chunk size: must be at least 1")
    chunks: list[Chunk] = []
    batch: list[int] = []
    for triple_id in session.scalars(_unscored(version_id).execution_options(yield_per=50_000)):
        batch.append(triple_id)
        if len(batch) == chunk_size:
            chunks.append(Chunk(batch[0], batch[-1], len(batch)))
            batch = []
    if batch:
        chunks.append(Chunk(batch[0], batch[-1], len(batch)))
    return chunks


def unscored_count(session: Session, version_id: int) -> int:
    """How many triples the version has not scored. Scores exist only for live triples (they
    are deleted with their triple), so two counts do it, without an anti-join over the corpus."""
    triples = triple_counts.total(session)
    scored = session.scalar(
        select(func.count()).select_from(Score).where(Score.critic_version_id == version_id)
    )
    return triples - (scored or 0)


def score_histogram(session: Session, version_id: int, bins: int = 20) -> list[int]:
    """Counts of the version's corpus scores in ``bins`` equal bins over [0, 1].

    One range count per bin, all in one statement: each is a range of the (version, p_accept)
    index, so the scores are read once in index order and no per-row expression or grouping
    is evaluated (about 4x faster than GROUP BY floor(p * bins) on SQLite at a million)."""
    ranged = Score.critic_version_id == version_id

    def in_bin(k: int) -> Any:
        low = Score.p_accept >= k / bins if k else Score.p_accept >= 0
        # p = 1.0 belongs in the last bin
        return low if k == bins - 1 else and_(low, Score.p_accept < (k + 1) / bins)

    counts = [
        select(func.count()).select_from(Score).where(ranged, in_bin(k)).scalar_subquery()
        for k in range(bins)
    ]
    return [int(n or 0) for n in session.execute(select(*counts)).one()]


@lru_cache(maxsize=2)
def load_scorer(path: str, quantize: bool = False):  # type: ignore[no-untyped-def]
    """A loaded critic, kept per worker process (loading costs more than scoring a chunk)."""
    from app.critic.train import load_critic

    model, tokenizer = load_critic(path)
    if quantize:
        model = int8_weights(model)
    return model, tokenizer


def int8_weights(model: Any) -> Any:
    """The linear layers' weights as int8 (one scale per output channel), with torchao's
    ``quantize_``, the supported successor of the deprecated ``torch.ao.quantization``.

    Weight-only: activations stay float, so scores move by about 0.001 (the test holds them
    within 0.01). It makes the linear weights 4x smaller (a worker holds mpnet in ~1/3 of the
    memory) but is not faster on CPU: measured in ``bench/README.md``. torchao's dynamic
    activation config was 3x slower than float32 on CPU without ``torch.compile``."""
    import logging

    quiet = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:  # optional GPU kernels it cannot load here, and notes for torch.compile
        logger.setLevel(logging.ERROR)
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    quantize_(model, Int8WeightOnlyConfig())
    return model


def _read(
    session: Session, version_id: int, triple_ids: Sequence[int]
) -> tuple[str, dict[str, Any], list[Any]]:
    """The version's model folder and training settings, and the triples' texts."""
    version = session.get(CriticVersion, version_id)
    if version is None or not version.path:
        raise LookupError(f"critic version {version_id} has no trained model")
    rows = session.execute(
        select(Triple.id, Triple.head, Triple.relation, Triple.tail).where(
            Triple.id.in_(list(triple_ids))
        )
    ).all()
    return version.path, dict(version.hyperparameters or {}), list(rows)


def _predict(
    version_id: int,
    path: str,
    hyper: dict[str, Any],
    rows: list[Any],
    batch_size: int,
    quantize: bool,
) -> list[dict[str, Any]]:
    """Scores as rows for the scores table. The input is built as in training (names)."""
    if not rows:
        return []
    model, tokenizer = load_scorer(path, quantize)
    names = bool(hyper.get("names", True))
    from app.critic.train import critic_input, score_pairs

    pairs = [critic_input(r.head, r.relation, r.tail, names=names) for r in rows]
    max_length = int(hyper.get("max_length", 64))
    scores = score_pairs(model, tokenizer, pairs, batch_size=batch_size, max_length=max_length)
    return [
        {"critic_version_id": version_id, "triple_id": r.id, "p_accept": float(s)}
        for r, s in zip(rows, scores, strict=True)
    ]


def score_chunk(
    version_id: int,
    first_id: int,
    last_id: int,
    *,
    batch_size: int = 64,
    quantize: bool = False,
    on_stored: Callable[[Session, int], None] | None = None,
) -> int:
    """One chunk task's work: read the range's unscored triples, score them outside any
    write transaction (on SQLite the write lock is held only for the insert), then store the
    scores and call ``on_stored(session, new)`` in the same transaction (the job counter)."""
    with session_scope() as session:
        ids = list(
            session.scalars(
                _unscored(version_id).where(Triple.id >= first_id, Triple.id <= last_id)
            )
        )
        path, hyper, rows = _read(session, version_id, ids) if ids else ("", {}, [])
    scored = _predict(version_id, path, hyper, rows, batch_size, quantize)
    with session_scope(write=True) as session:
        new = insert_ignoring_duplicates(session, Score.__table__, scored)
        if on_stored is not None:
            on_stored(session, new)
    return new


def score_triples(
    session: Session,
    version_id: int,
    triple_ids: Sequence[int],
    *,
    batch_size: int = 64,
    quantize: bool = False,
) -> int:
    """Score these triples with the version's model and store the scores.

    Returns how many scores were new: a triple another run already scored keeps its score
    and is not counted, so progress counters stay exact when a task runs twice.
    """
    path, hyper, rows = _read(session, version_id, triple_ids)
    scored = _predict(version_id, path, hyper, rows, batch_size, quantize)
    return insert_ignoring_duplicates(session, Score.__table__, scored)
