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

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from app.annotation.acceptability import (
    Acceptability,
    _campaign,
    acceptability,
    is_acceptable,
)
from app.core.models import Campaign, CampaignItem, Rating, Triple, User

# --- per annotator ----------------------------------------------------------------------------


# --- agreement --------------------------------------------------------------------------------


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
