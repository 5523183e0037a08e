"""Who rates what next: the hot path of the rating loop.

One function hands out items (``next_item``), one records answers (``submit_rating``), one
records skips (``skip_item``). Each runs inside the caller's write transaction: on PostgreSQL
the item is picked with ``FOR UPDATE SKIP LOCKED`` so concurrent annotators never wait on each
other; on SQLite the transaction begins IMMEDIATE, so the single writer serializes them.

The invariants hold under any concurrency, retry or double submit:
- no annotator rates an item twice (UNIQUE(item, annotator) on ratings and on assignments);
- no item gets more ratings than it needs (a guarded counter update, backed by a CHECK);
- a rating acknowledged once is never lost or counted twice (the client's submission id is
  UNIQUE; a resubmit returns the stored rating).
Live leases count against an item's open slots (``leases_active``); an expired lease is
released on the next request to the campaign, so an abandoned item returns to the pool.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session

from app.corpus.relations import relation_phrase
from app.models import (
    Assignment,
    AssignmentState,
    Campaign,
    CampaignItem,
    CampaignState,
    Rating,
    RatingOrigin,
    Triple,
    utcnow,
)


class AssignmentError(Exception):
    """A request the rules refuse; ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ServedItem:
    item_id: int
    head: str
    relation: str
    relation_phrase: str
    tail: str
    leased_until: str
    position: int  # 1-based number of this item for this annotator
    total: int | None  # the annotator's quota, if the campaign sets one

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def release_expired_leases(session: Session, campaign_id: int) -> int:
    """Return items whose lease ran out to the pool. Each lease is released exactly once, even
    when several requests sweep at the same time (the state change is the guard)."""
    released = session.execute(
        update(Assignment)
        .where(
            Assignment.campaign_id == campaign_id,
            Assignment.state == AssignmentState.leased,
            Assignment.leased_until < utcnow(),
        )
        .values(state=AssignmentState.released)
        .returning(Assignment.item_id)
    ).scalars()
    item_ids = sorted(released)
    for item_id in item_ids:  # sorted: concurrent sweeps lock items in one order (no deadlock)
        session.execute(
            update(CampaignItem)
            .where(CampaignItem.id == item_id)
            .values(leases_active=CampaignItem.leases_active - 1)
        )
    return len(item_ids)


def _serve_row(
    item_id: int,
    head: str,
    relation: str,
    tail: str,
    leased_until: datetime,
    campaign: Campaign,
    answered: int,
) -> ServedItem:
    return ServedItem(
        item_id=item_id,
        head=head,
        relation=relation,
        relation_phrase=relation_phrase(relation),
        tail=tail,
        leased_until=leased_until.isoformat(),
        position=answered + 1,
        total=campaign.quota_per_annotator,
    )


def _pick(session: Session, campaign_id: int, annotator_id: int, gold: bool) -> Row[Any] | None:
    """Lock and return the next open item (with its triple) this annotator has not seen."""
    seen = exists().where(
        Assignment.item_id == CampaignItem.id, Assignment.annotator_id == annotator_id
    )
    query = (
        select(CampaignItem.id, Triple.head, Triple.relation, Triple.tail)
        .join(Triple, Triple.id == CampaignItem.triple_id)
        .where(
            CampaignItem.campaign_id == campaign_id,
            CampaignItem.is_gold == gold,
            CampaignItem.ratings_done + CampaignItem.leases_active < CampaignItem.ratings_needed,
            ~seen,
        )
        # Closest to done first (data becomes usable early), then the sampling order. The
        # partial index ix_campaign_items_open serves exactly this order.
        .order_by(CampaignItem.ratings_done.desc(), CampaignItem.sort_key)
        .limit(1)
        .with_for_update(skip_locked=True, of=CampaignItem)
    )
    return session.execute(query).first()


def _gold_turn(answered: int, rate: float) -> bool:
    """Interleave gold at ``rate``: item n+1 is gold when the running quota crosses a whole."""
    return rate > 0 and math.floor((answered + 1) * rate) > math.floor(answered * rate)


def open_campaign(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise AssignmentError(404, f"no campaign {campaign_id}")
    if campaign.state != CampaignState.open:
        raise AssignmentError(409, f"campaign is {campaign.state.value}")
    return campaign


def next_item(session: Session, campaign_id: int, annotator_id: int) -> ServedItem | None:
    """The item this annotator should rate now (leased to them), or None when they are done.

    Five short statements on the common path; expired leases are swept by beat and, when
    nothing else is open, here.
    """
    campaign = open_campaign(session, campaign_id)
    now = utcnow()
    lease_until = now + timedelta(seconds=campaign.lease_seconds)
    answered, held_id = session.execute(
        select(
            func.count().filter(
                Assignment.state.in_([AssignmentState.submitted, AssignmentState.skipped])
            ),
            func.min(Assignment.id).filter(Assignment.state == AssignmentState.leased),
        ).where(Assignment.campaign_id == campaign_id, Assignment.annotator_id == annotator_id)
    ).one()
    if held_id is not None:
        # A reload or a second tab gets the same item back; a lapsed (not yet swept) lease
        # of someone still working is simply renewed.
        held = session.get(Assignment, held_id)
        assert held is not None
        if held.leased_until < now:
            held.leased_until = lease_until
        triple = session.execute(
            select(Triple.head, Triple.relation, Triple.tail)
            .join(CampaignItem, CampaignItem.triple_id == Triple.id)
            .where(CampaignItem.id == held.item_id)
        ).one()
        return _serve_row(held.item_id, *triple, held.leased_until, campaign, answered)
    if campaign.quota_per_annotator is not None and answered >= campaign.quota_per_annotator:
        return None
    gold_first = _gold_turn(answered, campaign.gold_rate)
    row = _pick(session, campaign_id, annotator_id, gold_first)
    if row is None and campaign.gold_rate > 0:
        row = _pick(session, campaign_id, annotator_id, not gold_first)
    if row is None and release_expired_leases(session, campaign_id):
        row = _pick(session, campaign_id, annotator_id, False)
    if row is None:
        return None
    item_id, head, relation, tail = row
    session.execute(
        update(CampaignItem)
        .where(CampaignItem.id == item_id)
        .values(leases_active=CampaignItem.leases_active + 1)
    )
    session.execute(
        insert(Assignment).values(
            item_id=item_id,
            annotator_id=annotator_id,
            campaign_id=campaign_id,
            state=AssignmentState.leased,
            leased_at=now,
            leased_until=lease_until,
        )
    )
    return _serve_row(item_id, head, relation, tail, lease_until, campaign, answered)


@dataclass
class SubmitResult:
    rating_id: int
    changed: bool  # an earlier answer of this annotator to this item was replaced
    repeated: bool  # the same submission arrived again; nothing new was stored


def _valid_answers(campaign: Campaign) -> set[int]:
    return {int(option["value"]) for option in campaign.answer_scale}


def submit_rating(
    session: Session,
    campaign_id: int,
    annotator_id: int,
    item_id: int,
    answer: int,
    submission_id: str,
    seconds: float | None = None,
) -> SubmitResult:
    """Record an answer. Resubmits are idempotent; answering an item again changes the answer.

    The annotator's assignment row is locked first, so concurrent submits for one item (a
    double click, a retry racing the original) queue up and see each other's result.
    """
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise AssignmentError(404, f"no campaign {campaign_id}")
    if answer not in _valid_answers(campaign):
        raise AssignmentError(422, f"answer: {answer} is not on this campaign's scale")
    if not submission_id or len(submission_id) > 100:
        raise AssignmentError(422, "submission_id: 1 to 100 characters")
    assignment = session.scalar(
        select(Assignment)
        .where(
            Assignment.item_id == item_id,
            Assignment.annotator_id == annotator_id,
            Assignment.campaign_id == campaign_id,
        )
        .with_for_update()
    )
    ratings = session.scalars(
        select(Rating).where(
            or_(
                Rating.submission_id == submission_id,
                and_(Rating.item_id == item_id, Rating.annotator_id == annotator_id),
            )
        )
    ).all()
    same = next((r for r in ratings if r.submission_id == submission_id), None)
    if same is not None:
        if same.annotator_id != annotator_id or same.item_id != item_id:
            raise AssignmentError(409, "submission_id was already used for another rating")
        return SubmitResult(same.id, changed=False, repeated=True)
    if assignment is None:
        raise AssignmentError(409, "this item was not given to you")
    if ratings:  # going back to change an answer: still one rating, with the new value
        existing = ratings[0]
        existing.answer = answer
        existing.seconds = seconds if seconds is not None else existing.seconds
        return SubmitResult(existing.id, changed=True, repeated=False)
    live = assignment.state == AssignmentState.leased
    triple_id = session.scalar(
        update(CampaignItem)
        .where(
            CampaignItem.id == item_id,
            CampaignItem.ratings_done < CampaignItem.ratings_needed,
        )
        .values(
            ratings_done=CampaignItem.ratings_done + 1,
            leases_active=CampaignItem.leases_active - (1 if live else 0),
        )
        .returning(CampaignItem.triple_id)
    )
    if triple_id is None:
        if live:
            _release(session, assignment)
        raise AssignmentError(409, "this item already has all the ratings it needs")
    rating_id = session.scalar(
        insert(Rating)
        .values(
            triple_id=triple_id,
            item_id=item_id,
            annotator_id=annotator_id,
            origin=RatingOrigin.campaign,
            answer=answer,
            seconds=seconds,
            submission_id=submission_id,
            created_at=utcnow(),
        )
        .returning(Rating.id)
    )
    assignment.state = AssignmentState.submitted
    return SubmitResult(rating_id, changed=False, repeated=False)


def _release(session: Session, assignment: Assignment) -> None:
    assignment.state = AssignmentState.released
    session.execute(
        update(CampaignItem)
        .where(CampaignItem.id == assignment.item_id)
        .values(leases_active=CampaignItem.leases_active - 1)
    )


def skip_item(session: Session, campaign_id: int, annotator_id: int, item_id: int) -> None:
    """ "I can't judge this one": the item goes to others, never back to this annotator."""
    assignment = session.scalar(
        select(Assignment)
        .where(
            and_(
                Assignment.item_id == item_id,
                Assignment.annotator_id == annotator_id,
                Assignment.campaign_id == campaign_id,
            )
        )
        .with_for_update()
    )
    if assignment is None:
        raise AssignmentError(409, "this item was not given to you")
    if assignment.state == AssignmentState.leased:
        _release(session, assignment)
    if assignment.state != AssignmentState.submitted:
        assignment.state = AssignmentState.skipped


@dataclass
class RatedItem:
    """An item this annotator already answered, for going back to change the answer."""

    rating_id: int
    item_id: int
    head: str
    relation: str
    tail: str
    answer: int


def previous_rating(
    session: Session, campaign_id: int, annotator_id: int, before: int | None = None
) -> RatedItem | None:
    """The annotator's latest rating in the campaign (or the latest one older than ``before``)."""
    query = (
        select(Rating.id, Rating.item_id, Rating.answer, Triple.head, Triple.relation, Triple.tail)
        .join(CampaignItem, CampaignItem.id == Rating.item_id)
        .join(Triple, Triple.id == Rating.triple_id)
        .where(CampaignItem.campaign_id == campaign_id, Rating.annotator_id == annotator_id)
        .order_by(Rating.id.desc())
        .limit(1)
    )
    if before is not None:
        query = query.where(Rating.id < before)
    row = session.execute(query).first()
    if row is None:
        return None
    return RatedItem(row.id, row.item_id, row.head, row.relation, row.tail, row.answer)


def lease_started(session: Session, item_id: int, annotator_id: int) -> float | None:
    """Seconds since this annotator was handed the item (the no-JavaScript timing fallback)."""
    leased_at = session.scalar(
        select(Assignment.leased_at).where(
            Assignment.item_id == item_id, Assignment.annotator_id == annotator_id
        )
    )
    return None if leased_at is None else (utcnow() - leased_at).total_seconds()
