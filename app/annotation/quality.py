"""Rating quality: who rates well, how much raters agree, and the label each item ends up with.

Everything the critic learns from passes through here, so the rules are spelled out once:

- **Acceptability.** A campaign's ``answer_scale`` says which values are acceptable (each option's
  ``acceptable`` is true, false or null). Without a scale entry for a value the paper's rule
  applies: > 0 acceptable, -9 "too unfamiliar" (neither), any other negative value not acceptable.
  Imported labels (no campaign) always use the paper's rule.
- **Usable rating.** One whose answer is acceptable or not (so not "too unfamiliar") and whose
  annotator is not excluded. Excluding an annotator keeps their ratings in the database; they
  only stop counting in labels, agreement and other annotators' leave-one-out majorities.
- **Label.** The majority of usable accept/reject votes; a tie, or no usable vote, is no label
  (``None``) — the critic must skip those rather than guess.

The numbers are computed in the database where that is reasonable (a campaign can hold 300,000
ratings): the per-annotator figures are one grouped query, the per-item figures are counts
grouped by (item, answer), and the median is found with window functions that both PostgreSQL
and SQLite have.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import krippendorff
import numpy as np
from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from app.core.models import Campaign, CampaignItem, Rating, Triple, User

UNFAMILIAR = -9  # the paper's "too unfamiliar to judge"

# value -> True (acceptable), False (not acceptable) or None (no judgement: "too unfamiliar")
Acceptability = dict[int, bool | None]


def default_acceptable(answer: int) -> bool | None:
    """The paper's rule, for values a scale does not list and for imported labels."""
    if answer > 0:
        return True
    if answer == UNFAMILIAR or answer == 0:
        return None
    return False


def acceptability(scale: list[Any] | None) -> Acceptability:
    """Which values of a campaign's answer scale count as acceptable (see the module docstring)."""
    mapping: Acceptability = {}
    for option in scale or []:
        if not isinstance(option, Mapping) or "value" not in option:
            continue
        try:
            value = int(option["value"])
        except (TypeError, ValueError):
            continue
        flag = option.get("acceptable", default_acceptable(value))
        mapping[value] = None if flag is None else bool(flag)
    return mapping


def is_acceptable(answer: int, mapping: Acceptability) -> bool | None:
    return mapping[answer] if answer in mapping else default_acceptable(answer)


def answer_labels(scale: list[Any] | None) -> dict[int, str]:
    """value -> the wording annotators saw, for the downloads."""
    labels: dict[int, str] = {}
    for option in scale or []:
        if isinstance(option, Mapping) and "value" in option and "label" in option:
            try:
                labels[int(option["value"])] = str(option["label"])
            except (TypeError, ValueError):
                continue
    return labels


def _acceptable_sql(column: Any, mapping: Acceptability) -> ColumnElement[Any]:
    """SQL for ``is_acceptable``: 1, 0 or NULL, so votes can be summed inside the database."""
    code = {True: 1, False: 0, None: None}
    whens: list[tuple[Any, Any]] = [
        (column == value, code[flag]) for value, flag in sorted(mapping.items())
    ]
    # The paper's rule for anything the scale does not list (and for a NULL gold answer).
    whens += [(column > 0, 1), (column == UNFAMILIAR, None), (column < 0, 0)]
    return case(*whens, else_=None)


def _not_excluded(user: Any) -> ColumnElement[bool]:
    # IS NOT TRUE: a rating whose annotator row is gone (NULL after an outer join) still counts.
    return user.excluded.is_not(True)


def _campaign(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise LookupError(f"no campaign {campaign_id}")
    return campaign


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


# --- per annotator ----------------------------------------------------------------------------


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
    gold_acc = _acceptable_sql(CampaignItem.gold_answer, mapping)
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
    gold_decided = and_(CampaignItem.is_gold.is_(True), acc.is_not(None), gold_acc.is_not(None))
    query = (
        select(
            User.id,
            User.username,
            User.display_name,
            User.platform,
            User.external_id,
            User.excluded,
            func.count(Rating.id).label("ratings"),
            func.sum(case((gold_decided, 1), else_=0)).label("gold_answered"),
            func.sum(case((and_(gold_decided, acc == gold_acc), 1), else_=0)).label("gold_ok"),
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
        if (
            quality.gold_accuracy is not None
            and gold_answered >= 3
            and quality.gold_accuracy < campaign.min_gold_accuracy
        ):
            quality.flags.append("low gold accuracy")
        if (
            quality.median_seconds is not None
            and quality.ratings >= 5
            and quality.median_seconds < campaign.speeder_seconds
        ):
            quality.flags.append("speeder")
        result.append(quality)
    result.sort(key=lambda q: (-q.ratings, q.user_id))
    return result


def set_excluded(session: Session, user_id: int, excluded: bool) -> None:
    """Leave a user's ratings out of (or back in) every aggregate; the ratings themselves stay."""
    changed = session.execute(
        update(User).where(User.id == user_id).values(excluded=excluded)
    ).rowcount
    if not changed:
        raise LookupError(f"no user {user_id}")


# --- agreement --------------------------------------------------------------------------------


@dataclass
class Agreement:
    # Krippendorff's alpha, ordinal, on the scale values (2, 1, -1, -2); "too unfamiliar" is
    # treated as missing.
    alpha_ordinal: float | None
    alpha_nominal: float | None  # nominal, on accept/reject
    items: int  # items with >= 2 usable ratings
    ratings: int  # usable ratings on those items

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _alpha(value_counts: np.ndarray, domain: list[int], level: str) -> float | None:
    """krippendorff.alpha on a units x values count matrix, or None where alpha is undefined
    (fewer than two values in use, or no disagreement possible: everyone always said the same)."""
    used = value_counts.sum(axis=0) > 0
    if used.sum() < 2:
        return None
    try:
        value = krippendorff.alpha(
            value_counts=value_counts, value_domain=domain, level_of_measurement=level
        )
    except (ValueError, ZeroDivisionError):
        return None
    return float(value) if math.isfinite(value) else None


def campaign_agreement(session: Session, campaign_id: int) -> Agreement:
    """Inter-annotator agreement of a campaign (non-gold items, excluded annotators left out).

    The counts per (item, answer) come from the database and feed ``krippendorff.alpha`` as a
    value-count matrix (items x values): the same alpha as on the raters x items matrix, without
    building a matrix of mostly missing cells.
    """
    campaign = _campaign(session, campaign_id)
    mapping = acceptability(campaign.answer_scale)
    query = (
        select(Rating.item_id, Rating.answer, func.count())
        .join(CampaignItem, CampaignItem.id == Rating.item_id)
        .outerjoin(User, User.id == Rating.annotator_id)
        .where(
            CampaignItem.campaign_id == campaign_id,
            CampaignItem.is_gold.is_(False),
            _not_excluded(User),
        )
        .group_by(Rating.item_id, Rating.answer)
    )
    rows = session.connection().execute(query).all()
    item_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    answers = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    counts = np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows))
    # Ordinal domain: every usable value of the scale (and any stray value seen), in order.
    seen = {int(a) for a in np.unique(answers)}
    domain = sorted(
        {v for v, flag in mapping.items() if flag is not None}
        | {a for a in seen if is_acceptable(a, mapping) is not None}
    )
    usable = np.isin(answers, domain)
    item_ids, answers, counts = item_ids[usable], answers[usable], counts[usable]
    units, unit_of_row = np.unique(item_ids, return_inverse=True)
    column_of_row = np.searchsorted(domain, answers)
    accepted = np.array([bool(is_acceptable(v, mapping)) for v in domain], dtype=np.int64)
    ordinal = np.zeros((len(units), len(domain)), dtype=np.int64)
    np.add.at(ordinal, (unit_of_row, column_of_row), counts)
    nominal = np.zeros((len(units), 2), dtype=np.int64)  # columns: reject, accept
    np.add.at(nominal, (unit_of_row, accepted[column_of_row]), counts)
    pairable = ordinal.sum(axis=1) >= 2
    ordinal, nominal = ordinal[pairable], nominal[pairable]
    items, ratings = int(pairable.sum()), int(ordinal.sum())
    if items == 0:
        return Agreement(None, None, 0, 0)
    return Agreement(
        alpha_ordinal=_alpha(ordinal, domain, "ordinal"),
        alpha_nominal=_alpha(nominal, [0, 1], "nominal"),
        items=items,
        ratings=ratings,
    )


# --- per item ---------------------------------------------------------------------------------


@dataclass
class ItemLabel:
    triple_id: int
    item_id: int | None  # None for labels that came with an imported file (see item_labels)
    campaign_id: int | None
    head: str
    relation: str
    tail: str
    n: int  # usable ratings (not "too unfamiliar", not from excluded annotators)
    accept: int
    reject: int
    unfamiliar: int  # "too unfamiliar" answers of non-excluded annotators
    mean_score: float | None  # mean of the scale values of the usable ratings
    label: bool | None  # majority accept/reject; a tie or n == 0 gives None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Tally:
    """Accumulates (answer, count) pairs of one item or triple into an ItemLabel."""

    __slots__ = ("accept", "reject", "unfamiliar", "total", "sources")

    def __init__(self) -> None:
        self.accept = self.reject = self.unfamiliar = 0
        self.total = 0  # sum of the scale values of usable ratings
        self.sources: set[tuple[int | None, int | None]] = set()  # (item_id, campaign_id)

    def add(self, answer: int, n: int, mapping: Acceptability) -> None:
        flag = is_acceptable(answer, mapping)
        if flag is None:
            self.unfamiliar += n
            return
        if flag:
            self.accept += n
        else:
            self.reject += n
        self.total += answer * n

    def label(self, triple: tuple[int, str, str, str]) -> ItemLabel:
        n = self.accept + self.reject
        # One source (one campaign item, or only imported labels): say which; several: None.
        item_id, campaign_id = next(iter(self.sources)) if len(self.sources) == 1 else (None, None)
        triple_id, head, relation, tail = triple
        return ItemLabel(
            triple_id=triple_id,
            item_id=item_id,
            campaign_id=campaign_id,
            head=head,
            relation=relation,
            tail=tail,
            n=n,
            accept=self.accept,
            reject=self.reject,
            unfamiliar=self.unfamiliar,
            mean_score=self.total / n if n else None,
            label=None if self.accept == self.reject else self.accept > self.reject,
        )


def _scales(session: Session) -> dict[int, Acceptability]:
    return {
        campaign_id: acceptability(scale)
        for campaign_id, scale in session.execute(select(Campaign.id, Campaign.answer_scale))
    }


def iter_item_labels(
    session: Session,
    campaign_id: int | None = None,
    yield_per: int = 5000,
    *,
    include_gold: bool = True,
) -> Iterator[ItemLabel]:
    """``item_labels`` as a stream (for downloads of the whole corpus's labels).

    ``include_gold=False`` (all-triples mode) leaves out the ratings of gold items: they were
    collected to check annotators, shown to everyone, and would weigh their triples many
    times over. A gold triple still gets its imported label, if it has one.
    """
    usable_count = func.sum(case((User.excluded.is_(True), 0), else_=1))
    if campaign_id is not None:
        mapping = acceptability(_campaign(session, campaign_id).answer_scale)
        counts = (
            select(
                Rating.item_id.label("item_id"),
                Rating.answer.label("answer"),
                usable_count.label("n"),
            )
            .join(CampaignItem, CampaignItem.id == Rating.item_id)
            .outerjoin(User, User.id == Rating.annotator_id)
            .where(CampaignItem.campaign_id == campaign_id, CampaignItem.is_gold.is_(False))
            .group_by(Rating.item_id, Rating.answer)
            .subquery()
        )
        # Every non-gold item, rated or not (an unrated item is a row with n == 0).
        query = (
            select(
                CampaignItem.id.label("key"),
                CampaignItem.id.label("item_id"),
                CampaignItem.campaign_id,
                Triple.id.label("triple_id"),
                Triple.head,
                Triple.relation,
                Triple.tail,
                counts.c.answer,
                counts.c.n,
            )
            .join(Triple, Triple.id == CampaignItem.triple_id)
            .outerjoin(counts, counts.c.item_id == CampaignItem.id)
            .where(CampaignItem.campaign_id == campaign_id, CampaignItem.is_gold.is_(False))
            .order_by(CampaignItem.id)
        )
        scales: dict[int, Acceptability] = {campaign_id: mapping}
    else:
        counts = (
            select(
                Rating.triple_id.label("triple_id"),
                Rating.item_id.label("item_id"),
                Rating.answer.label("answer"),
                usable_count.label("n"),
            )
            .outerjoin(User, User.id == Rating.annotator_id)
            .group_by(Rating.triple_id, Rating.item_id, Rating.answer)
        )
        if not include_gold:
            counts = counts.outerjoin(CampaignItem, CampaignItem.id == Rating.item_id).where(
                or_(Rating.item_id.is_(None), CampaignItem.is_gold.is_(False))
            )
        counts = counts.subquery()
        query = (
            select(
                counts.c.triple_id.label("key"),
                counts.c.item_id,
                CampaignItem.campaign_id,
                counts.c.triple_id,
                Triple.head,
                Triple.relation,
                Triple.tail,
                counts.c.answer,
                counts.c.n,
            )
            .join(Triple, Triple.id == counts.c.triple_id)
            .outerjoin(CampaignItem, CampaignItem.id == counts.c.item_id)
            .order_by(counts.c.triple_id, counts.c.item_id)
        )
        scales = _scales(session)

    key: int | None = None
    tally = _Tally()
    triple: tuple[int, str, str, str] = (0, "", "", "")
    no_scale: Acceptability = {}  # imported labels (no campaign) follow the paper's rule
    # Core execution and tuple unpacking: this loop sees one row per (item, answer), and the
    # ORM's per-row bookkeeping would cost more than the counting itself.
    rows = session.connection().execute(query, execution_options={"yield_per": yield_per})
    for row_key, item_id, row_campaign, triple_id, head, relation, tail, answer, n in rows:
        if row_key != key:
            if key is not None:
                yield tally.label(triple)
            key, tally = row_key, _Tally()
            triple = (triple_id, head, relation, tail)
        tally.sources.add((item_id, row_campaign))
        if answer is not None and n:  # (no answer: an item nobody rated yet)
            mapping = scales.get(row_campaign, no_scale) if row_campaign is not None else no_scale
            tally.add(int(answer), int(n), mapping)
    if key is not None:
        yield tally.label(triple)


def item_labels(
    session: Session, campaign_id: int | None = None, *, include_gold: bool = True
) -> list[ItemLabel]:
    """The aggregated human label of each item: what the critic trains on.

    ``campaign_id`` given: one row per non-gold item of that campaign (unrated items included,
    with n == 0), ordered by item id. ``None``: one row per triple that has any human rating,
    aggregated over every campaign (gold items included: their ratings are human judgements of
    the triple too) and over imported labels; ``item_id`` and ``campaign_id`` are set when all
    of the triple's ratings come from one campaign item, and are None when they came with an
    imported file or from several sources. Ordered by triple id.

    The rule: count the usable ratings (answer acceptable or not under the rating's campaign
    scale, or the paper's rule for imported labels; annotator not excluded). ``label`` is True
    when accepts outnumber rejects, False when rejects outnumber accepts, and None on a tie or
    with no usable rating. "Too unfamiliar" answers are counted in ``unfamiliar`` and are not
    votes. ``mean_score`` is the mean answer value of the usable ratings.
    """
    return list(iter_item_labels(session, campaign_id, include_gold=include_gold))


# --- downloads --------------------------------------------------------------------------------

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
    "answer",
    "answer_label",
    "acceptable",
    "seconds",
    "is_gold",
    "excluded",
    "created_at",
]

LABEL_FIELDS = [
    "triple_id",
    "item_id",
    "campaign_id",
    "head",
    "relation",
    "tail",
    "n",
    "accept",
    "reject",
    "unfamiliar",
    "mean_score",
    "label",
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
            "answer": answer,
            "answer_label": answer_label,
            "acceptable": acceptable,
            "seconds": seconds,
            "is_gold": bool(is_gold),
            "excluded": bool(excluded),
            "created_at": created_at,
        }
