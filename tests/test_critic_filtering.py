"""Choosing a threshold three ways, and the preview of what it keeps."""

from __future__ import annotations

import uuid

import pytest

from app.annotation.access import admit
from app.annotation.assign import next_item, submit_rating
from app.annotation.campaigns import CampaignSpec, create_campaign
from app.core.db import session_scope
from app.core.models import CampaignPurpose, CriticState, CriticVersion, Role, Score, User
from app.critic.filtering import choose_threshold, preview
from tests.conftest import add_triples


def scored_version(scores: dict[int, float]) -> int:
    with session_scope(write=True) as session:
        version = CriticVersion(
            base_model="m",
            state=CriticState.ready,
            metrics={
                "pr_curve": {
                    "threshold": [0.9, 0.7, 0.5, 0.3],
                    "precision": [0.95, 0.9, 0.8, 0.7],
                    "recall": [0.2, 0.5, 0.8, 1.0],
                }
            },
        )
        session.add(version)
        session.flush()
        session.add_all(
            Score(critic_version_id=version.id, triple_id=t, p_accept=p) for t, p in scores.items()
        )
        return version.id


def test_threshold_by_recall_precision_and_kept_fraction(engine) -> None:  # type: ignore[no-untyped-def]
    ids = add_triples(10)
    version = scored_version({t: i / 10 for i, t in enumerate(ids)})  # 0.0 ... 0.9
    with session_scope() as session:
        assert choose_threshold(session, version, "recall", 0.5) == 0.7
        assert choose_threshold(session, version, "recall", 0.8) == 0.5
        assert choose_threshold(session, version, "precision", 0.8) == 0.5
        assert choose_threshold(session, version, "kept", 0.3) == pytest.approx(0.7)
        with pytest.raises(ValueError, match="not reached"):
            choose_threshold(session, version, "precision", 0.97)
        with pytest.raises(ValueError, match="fraction"):
            choose_threshold(session, version, "kept", 0)


def test_preview_counts_by_relation_and_estimates_precision_from_calibration(engine) -> None:  # type: ignore[no-untyped-def]
    wants = add_triples(6, relation="xWant")
    needs = add_triples(4, head="PersonX needs {i}", relation="xNeed")
    scores = {t: 0.8 for t in wants[:4]} | {t: 0.2 for t in wants[4:]} | {t: 0.6 for t in needs}
    version = scored_version(scores)
    with session_scope(write=True) as session:
        campaign = create_campaign(
            session,
            CampaignSpec(name="cal", purpose=CampaignPurpose.calibration, ratings_per_item=1),
        ).id
        rater = User(role=Role.annotator, platform="prolific", external_id="r1")
        session.add(rater)
        session.flush()
        rater_id = rater.id
    # The rater accepts the xWant triples and rejects the xNeed ones.
    while True:
        with session_scope(write=True) as session:
            admit(session, campaign, rater_id, "link")  # entered by its link
            item = next_item(session, campaign, rater_id)
            if item is None:
                break
            answer = 2 if item.relation == "xWant" else -1
            submit_rating(session, campaign, rater_id, item.item_id, answer, uuid.uuid4().hex)
    with session_scope() as session:
        result = preview(session, version, 0.5)
    assert result.kept_by_relation == {"xNeed": 4, "xWant": 4}
    assert (result.scored, result.kept) == (10, 8)
    assert (result.sample_kept, result.sample_kept_acceptable) == (8, 4)
    assert result.estimated_precision == 0.5
    low, high = result.interval
    assert low < 0.5 < high
