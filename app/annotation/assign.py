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

from sqlalchemy import Integer, Row, and_, bindparam, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session

from app.core.models import (
    AnnotatorCampaign,
    Assignment,
    AssignmentState,
    Campaign,
    CampaignItem,
    CampaignState,
    Rating,
    RatingOrigin,
    Triple,
    User,
    utcnow,
)
from app.corpus.relations import relation_phrase

# A door that knows the signed-in session's epoch puts it in ``session.info`` under this key;
# the rules query then also checks it (see ``campaign_rules``).
SESSION_EPOCH = "skd_session_epoch"


class AssignmentError(Exception):
    """A request the rules refuse; ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str, *, keep_changes: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        # True: the transaction made a change worth keeping anyway (a released lease), so
        # the caller should commit it before answering with the error.
        self.keep_changes = keep_changes


# The hot path's statements, built once with bind parameters. Building a statement and its
# cache key costs more CPU than executing it against a local PostgreSQL; SQLAlchemy's compiled
# cache then reuses the SQL and psycopg prepares it on the server.
_P = bindparam

_EPOCH = _P("epoch", type_=Integer)

_RULES = select(
    Campaign.id,
    Campaign.state,
    Campaign.lease_seconds,
    Campaign.quota_per_annotator,
    Campaign.gold_rate,
    Campaign.answer_scale,
    # Active, and (when the door says which) signed in under the account's current session
    # epoch: a session ended by logging out does not rate on through a copied cookie.
    select(User.is_active)
    .where(
        User.id == _P("annotator_id"),
        or_(_EPOCH.is_(None), User.session_epoch == _EPOCH),
    )
    .scalar_subquery()
    .label("active"),
    exists()
    .where(
        AnnotatorCampaign.campaign_id == Campaign.id,
        AnnotatorCampaign.annotator_id == _P("annotator_id"),
    )
    .label("admitted"),
).where(Campaign.id == _P("campaign_id"))

# Answers given (a skip is no answer: it neither counts toward the quota nor moves "Item n").
_MY_PROGRESS = select(
    func.count().filter(Assignment.state == AssignmentState.submitted),
    func.min(Assignment.id).filter(Assignment.state == AssignmentState.leased),
).where(Assignment.campaign_id == _P("campaign_id"), Assignment.annotator_id == _P("annotator_id"))

_HELD = (
    select(Assignment.item_id, Assignment.leased_until, Triple.head, Triple.relation, Triple.tail)
    .join(CampaignItem, CampaignItem.id == Assignment.item_id)
    .join(Triple, Triple.id == CampaignItem.triple_id)
    .where(Assignment.id == _P("assignment_id"))
)

_RENEW = (
    update(Assignment)
    .where(Assignment.id == _P("assignment_id"))
    .values(leased_until=_P("leased_until"))
)

_PICK = (
    select(CampaignItem.id, Triple.head, Triple.relation, Triple.tail)
    .join(Triple, Triple.id == CampaignItem.triple_id)
    .where(
        CampaignItem.campaign_id == _P("campaign_id"),
        CampaignItem.is_gold == _P("gold"),
        CampaignItem.ratings_done + CampaignItem.leases_active < CampaignItem.ratings_needed,
        ~exists().where(
            Assignment.item_id == CampaignItem.id, Assignment.annotator_id == _P("annotator_id")
        ),
    )
    # Closest to done first (data becomes usable early), then the sampling order. The
    # partial index ix_campaign_items_open serves exactly this order.
    .order_by(CampaignItem.ratings_done.desc(), CampaignItem.sort_key)
    .limit(1)
    .with_for_update(skip_locked=True, of=CampaignItem)
)

_LEASE_COUNT = (
    update(CampaignItem)
    .where(CampaignItem.id == _P("item_id"))
    .values(leases_active=CampaignItem.leases_active + _P("delta"))
)

_NEW_LEASE = insert(Assignment).values(
    item_id=_P("item_id"),
    annotator_id=_P("annotator_id"),
    campaign_id=_P("campaign_id"),
    state=AssignmentState.leased,
    leased_at=_P("now"),
    leased_until=_P("leased_until"),
)

# The annotator's own assignment row, locked; with the item's triple and whether it still
# has room (read, not locked: the counter update at the end re-checks it).
_ASSIGNMENT_FOR_UPDATE = (
    select(
        Assignment.id,
        Assignment.state,
        CampaignItem.triple_id,
        (CampaignItem.ratings_done < CampaignItem.ratings_needed).label("has_room"),
    )
    .join(CampaignItem, CampaignItem.id == Assignment.item_id)
    .where(
        Assignment.item_id == _P("item_id"),
        Assignment.annotator_id == _P("annotator_id"),
        Assignment.campaign_id == _P("campaign_id"),
    )
    .with_for_update(of=Assignment)
)

_RATINGS_SEEN = select(
    Rating.id, Rating.submission_id, Rating.item_id, Rating.annotator_id, Rating.session_nonce
).where(
    or_(
        Rating.submission_id == _P("submission_id"),
        and_(Rating.item_id == _P("item_id"), Rating.annotator_id == _P("annotator_id")),
    )
)

_NEW_RATING = (
    insert(Rating)
    .values(
        triple_id=_P("triple_id"),
        item_id=_P("item_id"),
        annotator_id=_P("annotator_id"),
        origin=RatingOrigin.campaign,
        answer=_P("answer"),
        seconds=_P("seconds"),
        submission_id=_P("submission_id"),
        created_at=_P("now"),
        session_nonce=_P("session_nonce"),
    )
    .returning(Rating.id)
)

_SET_STATE = (
    update(Assignment).where(Assignment.id == _P("assignment_id")).values(state=_P("state"))
)

_COUNT = (
    update(CampaignItem)
    .where(
        CampaignItem.id == _P("item_id"),
        CampaignItem.ratings_done < CampaignItem.ratings_needed,
    )
    .values(
        ratings_done=CampaignItem.ratings_done + 1,
        leases_active=CampaignItem.leases_active - _P("released"),
    )
)


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
    rules: CampaignRules,
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
        total=rules.quota,
    )


def _pick(session: Session, campaign_id: int, annotator_id: int, gold: bool) -> Row[Any] | None:
    """Lock and return the next open item (with its triple) this annotator has not seen."""
    return (
        session.connection()
        .execute(_PICK, {"campaign_id": campaign_id, "annotator_id": annotator_id, "gold": gold})
        .first()
    )


def _gold_turn(answered: int, rate: float) -> bool:
    """Interleave gold at ``rate``: item n+1 is gold when the running quota crosses a whole."""
    return rate > 0 and math.floor((answered + 1) * rate) > math.floor(answered * rate)


@dataclass(frozen=True)
class CampaignRules:
    """The settings of a campaign the hot path needs, read with one Core query."""

    id: int
    state: CampaignState
    lease_seconds: int
    quota: int | None
    gold_rate: float
    answers: frozenset[int]


def campaign_rules(
    session: Session, campaign_id: int, annotator_id: int, *, must_be_open: bool = True
) -> CampaignRules:
    """The campaign's rules, and a check that the annotator is an active user admitted to the
    campaign (``app.annotation.access``), in one query.

    Cached for the rest of the transaction (a submit and the next item share one).
    """
    cache: dict[tuple[int, int], CampaignRules] = session.info.setdefault("skd_rules", {})
    rules = cache.get((campaign_id, annotator_id))
    if rules is None:
        row = (
            session.connection()
            .execute(
                _RULES,
                {
                    "campaign_id": campaign_id,
                    "annotator_id": annotator_id,
                    "epoch": session.info.get(SESSION_EPOCH),
                },
            )
            .first()
        )
        if row is None:
            raise AssignmentError(404, f"no campaign {campaign_id}")
        if not row.active:
            raise AssignmentError(401, "open your study link first")
        if not row.admitted:  # not entered by its link nor invited: as if it did not exist
            raise AssignmentError(404, f"no campaign {campaign_id}")
        rules = CampaignRules(
            id=row.id,
            state=CampaignState(row.state),
            lease_seconds=row.lease_seconds,
            quota=row.quota_per_annotator,
            gold_rate=row.gold_rate,
            answers=frozenset(int(option["value"]) for option in row.answer_scale),
        )
        cache[(campaign_id, annotator_id)] = rules
    if must_be_open and rules.state != CampaignState.open:
        raise AssignmentError(409, f"campaign is {rules.state.value}")
    return rules


def next_item(session: Session, campaign_id: int, annotator_id: int) -> ServedItem | None:
    """The item this annotator should rate now (leased to them), or None when they are done.

    Five short prebuilt Core statements on the common path (building ORM statements cost
    more CPU than running them); expired leases are swept by beat and, when nothing else is
    open, here.
    """
    conn = session.connection()
    rules = campaign_rules(session, campaign_id, annotator_id)
    now = utcnow()
    lease_until = now + timedelta(seconds=rules.lease_seconds)
    who = {"campaign_id": campaign_id, "annotator_id": annotator_id}
    answered, held_id = conn.execute(_MY_PROGRESS, who).one()
    if held_id is not None:
        # A reload or a second tab gets the same item back; a lapsed (not yet swept) lease
        # of someone still working is simply renewed.
        held = conn.execute(_HELD, {"assignment_id": held_id}).one()
        leased_until = held.leased_until
        if leased_until < now:
            leased_until = lease_until
            conn.execute(_RENEW, {"assignment_id": held_id, "leased_until": leased_until})
        return _serve_row(
            held.item_id, held.head, held.relation, held.tail, leased_until, rules, answered
        )
    if rules.quota is not None and answered >= rules.quota:
        return None
    gold_first = _gold_turn(answered, rules.gold_rate)
    row = _pick(session, campaign_id, annotator_id, gold_first)
    if row is None and rules.gold_rate > 0:
        row = _pick(session, campaign_id, annotator_id, not gold_first)
    if row is None and release_expired_leases(session, campaign_id):
        row = _pick(session, campaign_id, annotator_id, False)
    if row is None:
        return None
    item_id, head, relation, tail = row
    conn.execute(_LEASE_COUNT, {"item_id": item_id, "delta": 1})
    conn.execute(_NEW_LEASE, {**who, "item_id": item_id, "now": now, "leased_until": lease_until})
    return _serve_row(item_id, head, relation, tail, lease_until, rules, answered)


@dataclass
class SubmitResult:
    rating_id: int
    changed: bool  # an earlier answer of this annotator to this item was replaced
    repeated: bool  # the same submission arrived again; nothing new was stored
    # With defer_count: (item_id, lease was live) for count_rating to apply before commit.
    pending: tuple[int, bool] | None = None


def submit_rating(
    session: Session,
    campaign_id: int,
    annotator_id: int,
    item_id: int,
    answer: int,
    submission_id: str,
    seconds: float | None = None,
    *,
    defer_count: bool = False,
    session_nonce: str | None = None,
) -> SubmitResult:
    """Record an answer. Resubmits are idempotent; answering an item again changes the answer.

    ``session_nonce`` names the browser session answering; an earlier answer can be changed
    only with the nonce it was given under (knowing a worker id is not enough).

    The annotator's assignment row is locked first, so concurrent submits for one item (a
    double click, a retry racing the original) queue up and see each other's result.
    """
    conn = session.connection()
    rules = campaign_rules(session, campaign_id, annotator_id, must_be_open=False)
    if answer not in rules.answers:
        raise AssignmentError(422, f"answer: {answer} is not on this campaign's scale")
    if not submission_id or len(submission_id) > 100:
        raise AssignmentError(422, "submission_id: 1 to 100 characters")
    key = {"item_id": item_id, "annotator_id": annotator_id, "campaign_id": campaign_id}
    assignment = conn.execute(_ASSIGNMENT_FOR_UPDATE, key).first()
    if assignment is None:
        raise AssignmentError(409, "this item was not given to you")
    live = assignment.state == AssignmentState.leased
    # A live lease has no rating yet (a rating and the end of its lease are one transaction),
    # so only an answer to an item already answered needs the lookup: a resubmit, or a change.
    if not live:
        ratings = conn.execute(_RATINGS_SEEN, {**key, "submission_id": submission_id}).all()
        same = next((r for r in ratings if r.submission_id == submission_id), None)
        if same is not None:
            if same.annotator_id != annotator_id or same.item_id != item_id:
                raise AssignmentError(409, "submission_id was already used for another rating")
            return SubmitResult(same.id, changed=False, repeated=True)
        if ratings:  # going back to change an answer: still one rating, with the new value
            if ratings[0].session_nonce != session_nonce:
                raise AssignmentError(
                    403, "an earlier answer can be changed only in the browser that gave it"
                )
            existing_id = ratings[0].id
            values: dict[str, Any] = {"answer": answer}
            if seconds is not None:
                values["seconds"] = seconds
            conn.execute(update(Rating).where(Rating.id == existing_id).values(**values))
            return SubmitResult(existing_id, changed=True, repeated=False)
    triple_id, has_room = assignment.triple_id, assignment.has_room
    if not has_room:
        if live:
            _release_lease(session, assignment.id, item_id)
        raise AssignmentError(
            409, "this item already has all the ratings it needs", keep_changes=True
        )
    rating_id = conn.execute(
        _NEW_RATING,
        {
            **key,
            "triple_id": triple_id,
            "answer": answer,
            "seconds": seconds,
            "submission_id": submission_id,
            "now": utcnow(),
            "session_nonce": session_nonce,
        },
    ).scalar_one()
    conn.execute(_SET_STATE, {"assignment_id": assignment.id, "state": AssignmentState.submitted})
    if defer_count:
        return SubmitResult(rating_id, changed=False, repeated=False, pending=(item_id, live))
    count_rating(session, (item_id, live))
    return SubmitResult(rating_id, changed=False, repeated=False)


def count_rating(session: Session, pending: tuple[int, bool] | None) -> None:
    """Add a stored rating to its item's counter; the last statement before the commit.

    The shared counter row is touched last so that its lock is held only until the commit:
    the other raters of the item (closest-to-done-first sends them together) wait least.
    A caller that also leases the next item in the same transaction does that first.
    """
    if pending is None:
        return
    item_id, live = pending
    counted = (
        session.connection()
        .execute(_COUNT, {"item_id": item_id, "released": 1 if live else 0})
        .rowcount
    )
    if not counted:  # filled by a concurrent submit since it was checked: undo everything
        raise AssignmentError(409, "this item already has all the ratings it needs")


def _release_lease(session: Session, assignment_id: int, item_id: int) -> None:
    conn = session.connection()
    conn.execute(_SET_STATE, {"assignment_id": assignment_id, "state": AssignmentState.released})
    conn.execute(_LEASE_COUNT, {"item_id": item_id, "delta": -1})


def skip_item(session: Session, campaign_id: int, annotator_id: int, item_id: int) -> None:
    """ "I can't judge this one": the item goes to others, never back to this annotator."""
    campaign_rules(session, campaign_id, annotator_id, must_be_open=False)  # an active user
    conn = session.connection()
    assignment = conn.execute(
        _ASSIGNMENT_FOR_UPDATE,
        {"item_id": item_id, "annotator_id": annotator_id, "campaign_id": campaign_id},
    ).first()
    if assignment is None:
        raise AssignmentError(409, "this item was not given to you")
    if assignment.state == AssignmentState.leased:
        _release_lease(session, assignment.id, item_id)
    if assignment.state != AssignmentState.submitted:
        conn.execute(_SET_STATE, {"assignment_id": assignment.id, "state": AssignmentState.skipped})


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
    session: Session,
    campaign_id: int,
    annotator_id: int,
    before: int | None = None,
    *,
    session_nonce: str | None = None,
) -> RatedItem | None:
    """The annotator's latest rating in the campaign (or the latest one older than ``before``)
    given in the browser session ``session_nonce``: answers from elsewhere stay hidden."""
    query = (
        select(Rating.id, Rating.item_id, Rating.answer, Triple.head, Triple.relation, Triple.tail)
        .join(CampaignItem, CampaignItem.id == Rating.item_id)
        .join(Triple, Triple.id == Rating.triple_id)
        .where(
            CampaignItem.campaign_id == campaign_id,
            Rating.annotator_id == annotator_id,
            Rating.session_nonce.is_not_distinct_from(session_nonce),
        )
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
