"""Per-annotator quality: gold accuracy, agreement with the leave-one-out majority, speed, and the
flags and exclusion that follow."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from app.annotation.acceptability import (
    Acceptability,
    _acceptable_sql,
    _campaign,
    _not_excluded,
    acceptability,
)
from app.core.models import CampaignItem, Rating, User


def user_label(
    user_id: int | None,
    username: str | None,
    display_name: str | None,
    platform: str | None,
    external_id: str | None,
) -> str:
    """How an annotator is named in tables and downloads."""
    if username:
        return username
    if display_name:
        return display_name
    if platform or external_id:
        return f"{platform}:{external_id}"
    return f"user {user_id}" if user_id is not None else ""


@dataclass
class AnnotatorQuality:
    user_id: int
    label: str  # username or display_name or f"{platform}:{external_id}"
    platform: str | None
    ratings: int  # ratings in this campaign (gold included)
    median_seconds: float | None
    gold_answered: int  # gold items answered acceptable or not ("too unfamiliar" is no answer)
    gold_accuracy: float | None  # share of those whose acceptability equals the gold answer's
    # Share of their non-gold accept/reject ratings that match the majority of the OTHER
    # (non-excluded) annotators of the item; items where the others have no majority (no
    # decisive vote, or a tie) don't count.
    agreement: float | None
    excluded: bool
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _median_seconds(session: Session, campaign_id: int) -> dict[int, float]:
    """Each annotator's median seconds per rating in the campaign, computed in the database.

    Portable median: number each annotator's times in order (row_number) next to their count
    (n); the middle row(s) satisfy n <= 2*rn <= n + 2 (one row for odd n, two for even n), and
    their average is the median.
    """
    ranked = (
        select(
            Rating.annotator_id.label("annotator_id"),
            Rating.seconds.label("seconds"),
            func.row_number()
            .over(partition_by=Rating.annotator_id, order_by=Rating.seconds)
            .label("rn"),
            func.count().over(partition_by=Rating.annotator_id).label("n"),
        )
        .join(CampaignItem, CampaignItem.id == Rating.item_id)
        .where(
            CampaignItem.campaign_id == campaign_id,
            Rating.seconds.is_not(None),
            Rating.annotator_id.is_not(None),
        )
        .subquery()
    )
    query = (
        select(ranked.c.annotator_id, func.avg(ranked.c.seconds))
        .where(ranked.c.rn * 2 >= ranked.c.n, ranked.c.rn * 2 <= ranked.c.n + 2)
        .group_by(ranked.c.annotator_id)
    )
    return {int(user_id): float(median) for user_id, median in session.execute(query)}


def annotator_quality(session: Session, campaign_id: int) -> list[AnnotatorQuality]:
    """Per-annotator figures for one campaign, most ratings first.

    Flags: ``"low gold accuracy"`` when gold_accuracy < the campaign's ``min_gold_accuracy``
    after at least 3 gold answers; ``"speeder"`` when the median time per rating is below the
    campaign's ``speeder_seconds`` after at least 5 ratings.
    """
    campaign = _campaign(session, campaign_id)
    mapping = acceptability(campaign.answer_scale)

    # Accept/reject tallies of every non-gold item, counting non-excluded annotators only.
    vote, voter, vote_item = aliased(Rating), aliased(User), aliased(CampaignItem)
    vote_acc = _acceptable_sql(vote.answer, mapping)
    counted = _not_excluded(voter)
    tally = (
        select(
            vote.item_id.label("item_id"),
            func.sum(case((and_(vote_acc == 1, counted), 1), else_=0)).label("acc"),
            func.sum(case((and_(vote_acc == 0, counted), 1), else_=0)).label("rej"),
        )
        .join(vote_item, vote_item.id == vote.item_id)
        .outerjoin(voter, voter.id == vote.annotator_id)
        .where(vote_item.campaign_id == campaign_id, vote_item.is_gold.is_(False))
        .group_by(vote.item_id)
        .subquery()
    )

    acc = _acceptable_sql(Rating.answer, mapping)
    # Leave one out: take this rating's own vote back out of the item's tally (it is only in
    # the tally when its annotator is not excluded).
    mine_counted = _not_excluded(User)
    others_acc = tally.c.acc - case((and_(acc == 1, mine_counted), 1), else_=0)
    others_rej = tally.c.rej - case((and_(acc == 0, mine_counted), 1), else_=0)
    agrees = case(
        (or_(acc.is_(None), tally.c.item_id.is_(None)), None),  # "unfamiliar", or a gold item
        (others_acc > others_rej, case((acc == 1, 1), else_=0)),
        (others_rej > others_acc, case((acc == 0, 1), else_=0)),
        else_=None,  # the others have no majority: this rating does not count
    )
    gold_answered, gold_ok = _gold_tallies(mapping)
    query = (
        select(
            User.id,
            User.username,
            User.display_name,
            User.platform,
            User.external_id,
            User.excluded,
            func.count(Rating.id).label("ratings"),
            gold_answered.label("gold_answered"),
            gold_ok.label("gold_ok"),
            func.count(agrees).label("agree_n"),
            func.sum(agrees).label("agree_yes"),
        )
        .join(Rating, Rating.annotator_id == User.id)
        .join(CampaignItem, CampaignItem.id == Rating.item_id)
        .outerjoin(tally, tally.c.item_id == Rating.item_id)
        .where(CampaignItem.campaign_id == campaign_id)
        .group_by(
            User.id,
            User.username,
            User.display_name,
            User.platform,
            User.external_id,
            User.excluded,
        )
    )
    medians = _median_seconds(session, campaign_id)
    result: list[AnnotatorQuality] = []
    for row in session.execute(query):
        gold_answered = int(row.gold_answered or 0)
        agree_n = int(row.agree_n or 0)
        quality = AnnotatorQuality(
            user_id=row.id,
            label=user_label(row.id, row.username, row.display_name, row.platform, row.external_id),
            platform=row.platform,
            ratings=int(row.ratings),
            median_seconds=medians.get(row.id),
            gold_answered=gold_answered,
            gold_accuracy=int(row.gold_ok or 0) / gold_answered if gold_answered else None,
            agreement=int(row.agree_yes or 0) / agree_n if agree_n else None,
            excluded=bool(row.excluded),
        )
        quality.flags = _flags(
            campaign, quality.ratings, gold_answered, int(row.gold_ok or 0), quality.median_seconds
        )
        result.append(quality)
    result.sort(key=lambda q: (-q.ratings, q.user_id))
    return result


def _gold_tallies(mapping: Acceptability) -> tuple[Any, Any]:
    """Per annotator (in a query over ``Rating`` joined to ``CampaignItem``): the gold items
    answered acceptable or not, and those whose acceptability is the gold answer's."""
    acc = _acceptable_sql(Rating.answer, mapping)
    gold_acc = _acceptable_sql(CampaignItem.gold_answer, mapping)
    decided = and_(CampaignItem.is_gold.is_(True), acc.is_not(None), gold_acc.is_not(None))
    answered = func.sum(case((decided, 1), else_=0))
    return answered, func.sum(case((and_(decided, acc == gold_acc), 1), else_=0))


def _flags(
    campaign: Any, ratings: int, gold_answered: int, gold_ok: int, median_seconds: float | None
) -> list[str]:
    """The campaign's rules: too few gold answers right, or too fast."""
    flags = []
    if gold_answered >= 3 and gold_ok / gold_answered < campaign.min_gold_accuracy:
        flags.append("low gold accuracy")
    if median_seconds is not None and ratings >= 5 and median_seconds < campaign.speeder_seconds:
        flags.append("speeder")
    return flags


def annotator_flags(session: Session, campaign_id: int) -> dict[int, list[str]]:
    """Each flagged annotator's flags in one campaign: what ``annotator_quality`` flags, without
    its agreement with the others (the leave-one-out tally of every item, nearly all of its
    cost), for pages that list people over many campaigns."""
    campaign = _campaign(session, campaign_id)
    mapping = acceptability(campaign.answer_scale)
    gold_answered, gold_ok = _gold_tallies(mapping)
    query = (
        select(Rating.annotator_id, func.count(Rating.id), gold_answered, gold_ok)
        .join(CampaignItem, CampaignItem.id == Rating.item_id)
        .where(CampaignItem.campaign_id == campaign_id, Rating.annotator_id.is_not(None))
        .group_by(Rating.annotator_id)
    )
    medians = _median_seconds(session, campaign_id)
    found: dict[int, list[str]] = {}
    for user_id, ratings, gold_answered, gold_ok in session.execute(query):
        flags = _flags(
            campaign, int(ratings), int(gold_answered or 0), int(gold_ok or 0), medians.get(user_id)
        )
        if flags:
            found[int(user_id)] = flags
    return found


def set_excluded(session: Session, user_id: int, excluded: bool) -> None:
    """Leave a user's ratings out of (or back in) every aggregate; the ratings themselves stay."""
    changed = session.execute(
        update(User).where(User.id == user_id).values(excluded=excluded)
    ).rowcount
    if not changed:
        raise LookupError(f"no user {user_id}")
