"""Scoring the corpus in chunks: complete, incremental, idempotent, optionally int8."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.critic.score import score_triples, unscored_ids
from app.db import session_scope
from app.models import CriticState, CriticVersion, Score
from tests.conftest import add_triples


def version_at(path: Path) -> int:
    with session_scope(write=True) as session:
        version = CriticVersion(base_model="tiny", path=str(path), state=CriticState.ready)
        session.add(version)
        session.flush()
        return version.id


def scores_of(version_id: int) -> dict[int, float]:
    with session_scope() as session:
        return dict(
            session.execute(
                select(Score.triple_id, Score.p_accept).where(Score.critic_version_id == version_id)
            ).all()
        )


def test_chunks_score_everything_once_and_resume(engine, tiny_base: Path) -> None:  # type: ignore[no-untyped-def]
    ids = add_triples(50, head="PersonX plants tree {i}", tail="to water it {i}")
    version = version_at(tiny_base)
    with session_scope() as session:
        pending = unscored_ids(session, version)
    assert pending == ids
    with session_scope(write=True) as session:  # the first chunk only: an interrupted run
        assert score_triples(session, version, pending[:20]) == 20
    with session_scope() as session:
        assert unscored_ids(session, version) == ids[20:]  # resumes after finished chunks
    with session_scope(write=True) as session:
        score_triples(session, version, pending[20:])
    with session_scope(write=True) as session:  # a chunk delivered twice changes nothing
        score_triples(session, version, pending[:20])
    scores = scores_of(version)
    assert set(scores) == set(ids) and all(0 <= p <= 1 for p in scores.values())
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Score)) == 50
    new = add_triples(3, head="PersonX waters tree {i}", tail="to help {i}")
    with session_scope() as session:
        assert unscored_ids(session, version) == new  # newly imported triples are picked up


def test_int8_scores_stay_close(engine, tiny_base: Path) -> None:  # type: ignore[no-untyped-def]
    ids = add_triples(20)
    plain, quantized = version_at(tiny_base), version_at(tiny_base)
    with session_scope(write=True) as session:
        score_triples(session, plain, ids)
        score_triples(session, quantized, ids, quantize=True)
    a, b = scores_of(plain), scores_of(quantized)
    assert max(abs(a[i] - b[i]) for i in ids) < 0.05


def test_version_without_model_is_refused(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(write=True) as session:
        version = CriticVersion(base_model="tiny", state=CriticState.training)
        session.add(version)
        session.flush()
        with pytest.raises(LookupError, match="no trained model"):
            score_triples(session, version.id, [1])
