"""The rows of the ratings download (one per rating, gold and excluded annotators flagged)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.annotation.acceptability import (
    _campaign,
    acceptability,
    answer_labels,
    is_acceptable,
)
from app.annotation.annotators import user_label
from app.annotation.crowd import visit_finder
from app.core.models import CampaignItem, Rating, Triple, User

RATING_FIELDS = [
    "rating_id",
    "item_id",
    "triple_id",
    "head",
    "relation",
    "tail",
    "annotator",
    "annotator_id",
    "platform",
    "external_id",
    "study_id",  # Prolific's STUDY_ID / SESSION_ID, MTurk's assignmentId / hitId
    "session_id",
    "assignment_id",
    "hit_id",
    "answer",
    "answer_label",
    "acceptable",
    "seconds",
    "is_gold",
    "excluded",
    "created_at",
]


def iter_campaign_ratings(
    session: Session, campaign_id: int, yield_per: int = 5000
) -> Iterator[dict[str, Any]]:
    """Every rating of a campaign (excluded annotators and gold included, flagged), by id."""
    campaign = _campaign(session, campaign_id)
    mapping = acceptability(campaign.answer_scale)
    wording = answer_labels(campaign.answer_scale)
    query = (
        select(
            Rating.id,
            Rating.item_id,
            Rating.triple_id,
            Triple.head,
            Triple.relation,
            Triple.tail,
            Rating.annotator_id,
            User.username,
            User.display_name,
            User.platform,
            User.external_id,
            User.excluded,
            Rating.answer,
            Rating.seconds,
            CampaignItem.is_gold,
            Rating.created_at,
        )
        .join(CampaignItem, CampaignItem.id == Rating.item_id)
        .join(Triple, Triple.id == Rating.triple_id)
        .outerjoin(User, User.id == Rating.annotator_id)
        .where(CampaignItem.campaign_id == campaign_id)
        .order_by(Rating.id)
    )
    names: dict[int | None, str] = {}  # annotator label, computed once per annotator
    visit_of = visit_finder(session, campaign_id)
    answers = {
        value: (wording.get(value), is_acceptable(value, mapping)) for value in {*mapping, *wording}
    }
    rows = session.connection().execute(query, execution_options={"yield_per": yield_per})
    for (
        rating_id,
        item_id,
        triple_id,
        head,
        relation,
        tail,
        annotator_id,
        username,
        display_name,
        platform,
        external_id,
        excluded,
        answer,
        seconds,
        is_gold,
        created_at,
    ) in rows:
        name = names.get(annotator_id)
        if name is None:
            name = names[annotator_id] = user_label(
                annotator_id, username, display_name, platform, external_id
            )
        answer_label, acceptable = answers.get(answer) or (None, is_acceptable(answer, mapping))
        yield {
            "rating_id": rating_id,
            "item_id": item_id,
            "triple_id": triple_id,
            "head": head,
            "relation": relation,
            "tail": tail,
            "annotator": name,
            "annotator_id": annotator_id,
            "platform": platform,
            "external_id": external_id,
            **visit_of(annotator_id, created_at),
            "answer": answer,
            "answer_label": answer_label,
            "acceptable": acceptable,
            "seconds": seconds,
            "is_gold": bool(is_gold),
            "excluded": bool(excluded),
            "created_at": created_at,
        }
