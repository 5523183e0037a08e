"""Scoring the corpus in chunks: complete, incremental, idempotent, optionally int8."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.core.models import CriticState, CriticVersion, Score
from app.critic.score import score_triples, unscored_ids
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
    """int8 through torchao (not the deprecated torch.ao.quantization): the linear weights
    really are int8, the scores stay within 0.05 of float32, and nothing warns."""
    import warnings

    import torch

    from app.critic.score import load_scorer

    ids = add_triples(20)
    plain, quantized = version_at(tiny_base), version_at(tiny_base)
    load_scorer.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a deprecation warning fails the test
        with session_scope(write=True) as session:
            score_triples(session, plain, ids)
            score_triples(session, quantized, ids, quantize=True)
    a, b = scores_of(plain), scores_of(quantized)
    assert max(abs(a[i] - b[i]) for i in ids) < 0.05
    assert a != b  # the int8 model is a different model, not the float one again
    model, _ = load_scorer(str(tiny_base), True)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.weight.qdata.dtype == torch.int8 for m in linears)


def test_version_without_model_is_refused(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(write=True) as session:
        version = CriticVersion(base_model="tiny", state=CriticState.training)
        session.add(version)
        session.flush()
        with pytest.raises(LookupError, match="no trained model"):
            score_triples(session, version.id, [1])


def test_the_histogram_counts_each_score_in_its_bin(engine, tiny_base: Path) -> None:  # type: ignore[no-untyped-def]
    """Edges belong to the bin above them, 1.0 to the last bin; other versions don't count."""
    from app.critic.score import score_histogram

    values = [0.0, 0.05, 0.0499, 0.1, 0.5, 0.95, 0.9999, 1.0, 0.33, 0.33, 0.7]
    ids = add_triples(len(values))
    version, other = version_at(tiny_base), version_at(tiny_base)
    with session_scope(write=True) as session:
        session.add_all(
            Score(critic_version_id=version, triple_id=i, p_accept=p)
            for i, p in zip(ids, values, strict=True)
        )
        session.add_all(Score(critic_version_id=other, triple_id=i, p_accept=0.5) for i in ids)
    with session_scope() as session:
        counts = score_histogram(session, version, bins=20)
        empty = score_histogram(session, version_at(tiny_base), bins=4)
    # bin k holds k/20 <= p < (k+1)/20; the edge 0.05 is bin 1's, 0.7 bin 14's, 1.0 bin 19's
    expected = [0] * 20
    for p in values:
        expected[max(k for k in range(20) if p >= k / 20)] += 1
    assert counts == expected
    assert counts[0] == 2 and counts[1] == 1 and counts[14] == 1 and counts[19] == 3
    assert empty == [0, 0, 0, 0]
