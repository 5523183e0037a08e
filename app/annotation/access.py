"""Which campaigns an annotator may open: the ones they entered by link or were invited to.

A campaign id is a small guessable number, so it opens nothing by itself. An annotator is
admitted to a campaign when they arrive through its share link (``/c/<token>``) or when staff
invite them to it; the hot path (``app.annotation.assign.campaign_rules``) and every annotate
route check the admission, and anything else answers 404 as if the campaign did not exist.
"""

from __future__ import annotations

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.models import AnnotatorCampaign, Assignment, AssignmentState, Campaign, CampaignItem


def admit(session: Session, campaign_id: int, annotator_id: int, via: str) -> None:
    """Record that the annotator may rate in the campaign (idempotent; safe under races)."""
    if is_admitted(session, campaign_id, annotator_id):
        return
    try:
        with session.begin_nested():
            session.add(
                AnnotatorCampaign(campaign_id=campaign_id, annotator_id=annotator_id, via=via)
            )
    except IntegrityError:
        pass  # a concurrent first visit admitted them already


def is_admitted(session: Session, campaign_id: int, annotator_id: int) -> bool:
    return bool(
        session.scalar(
            select(
                exists().where(
                    AnnotatorCampaign.campaign_id == campaign_id,
                    AnnotatorCampaign.annotator_id == annotator_id,
                )
            )
        )
    )


def admitted_campaign_ids(session: Session, annotator_id: int) -> list[int]:
    return list(
        session.scalars(
            select(AnnotatorCampaign.campaign_id).where(
                AnnotatorCampaign.annotator_id == annotator_id
            )
        )
    )


def finish_state(session: Session, campaign_id: int, annotator_id: int) -> str:
    """What an annotator with nothing more to rate is told (only ``done`` shows the code):

    - ``done``: they answered their quota, or answered items and nothing is left for them;
    - ``waiting``: items they have not seen still need ratings but are leased to others now;
    - ``full``: the campaign was complete before they answered anything.
    """
    answered, submitted = session.execute(
        select(
            func.count().filter(
                Assignment.state.in_([AssignmentState.submitted, AssignmentState.skipped])
            ),
            func.count().filter(Assignment.state == AssignmentState.submitted),
        ).where(Assignment.campaign_id == campaign_id, Assignment.annotator_id == annotator_id)
    ).one()
    quota = session.scalar(select(Campaign.quota_per_annotator).where(Campaign.id == campaign_id))
    if quota is not None and submitted >= quota:  # skips do not count toward the quota
        return "done"
    unseen_open = session.scalar(
        select(
            exists().where(
                CampaignItem.campaign_id == campaign_id,
                CampaignItem.ratings_done < CampaignItem.ratings_needed,
                ~exists().where(
                    Assignment.item_id == CampaignItem.id,
                    Assignment.annotator_id == annotator_id,
                ),
            )
        )
    )
    if unseen_open:
        return "waiting"
    return "done" if submitted else "full"
