"""What a campaign will ask of people, before it opens: how many triples its filters select,
how many items and ratings it needs, how many annotators its quota implies, and how long
that takes at the pace annotators have been rating here.

A crowdsourcing platform asks for exactly these numbers when a study is set up (Prolific:
places and the estimated completion time, which sets the pay), so the researcher reads them
beside the form (the page), before a script creates the campaign (``POST /api/campaigns/plan``)
and from ``skd campaign create ... --dry-run``. The spec is checked exactly as
``create_campaign`` checks it; nothing is written.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.annotation.campaigns import (
    ALL_LABELLED,
    NO_GOLD_TO_DRAW,
    CampaignSpec,
    CampaignSpecError,
    selection_conditions,
    source_shares,
    validate_spec,
)
from app.core import triple_counts
from app.core.models import (
    CampaignPurpose,
    CriticState,
    CriticVersion,
    Rating,
    RatingOrigin,
    Triple,
)

# The pace is the median of this many of the newest ratings made here: recent enough to
# reflect today's guidelines and crowd, many enough that a few slow answers do not move it.
PACE_SAMPLE = 2000


@dataclass
class Pace:
    seconds_per_rating: float  # the median
    ratings: int  # how many ratings it is the median of


@dataclass
class CampaignPlan:
    matched: int  # triples that pass the relation and source filters
    items: int  # items to rate (without gold), ``ratings_per_item`` ratings each
    ratings_per_item: int
    gold_items: int  # at most: drawn ones are capped by the imported labels there are
    gold_rate: float
    quota_per_annotator: int | None
    pace: Pace | None
    # Items per source when the sample is split equally over several sources, else None.
    per_source: dict[str, int] | None = None

    @property
    def ratings(self) -> int:
        """Ratings the campaign needs to finish its items."""
        return self.items * self.ratings_per_item

    @property
    def served(self) -> int | None:
        """Answers annotators give in all, gold included (gold is ``gold_rate`` of what each
        one sees); None when every answer would be gold."""
        if self.gold_rate >= 1:
            return None
        return math.ceil(self.ratings / (1 - self.gold_rate))

    @property
    def annotators(self) -> int | None:
        """People needed with a quota: every answer divided by the quota, and never fewer
        than the ratings one item needs (no one rates an item twice)."""
        if self.quota_per_annotator is None or self.served is None:
            return None
        return max(self.ratings_per_item, math.ceil(self.served / self.quota_per_annotator))

    @property
    def minutes_per_annotator(self) -> float | None:
        if self.pace is None or self.quota_per_annotator is None:
            return None
        return self.quota_per_annotator * self.pace.seconds_per_rating / 60

    @property
    def person_hours(self) -> float | None:
        if self.pace is None or self.served is None:
            return None
        return self.served * self.pace.seconds_per_rating / 3600

    def as_dict(self) -> dict[str, Any]:
        """The JSON the API answers: every number the page shows."""
        return {
            **{k: v for k, v in asdict(self).items() if k != "pace"},
            "ratings": self.ratings,
            "served": self.served,
            "annotators": self.annotators,
            "pace": asdict(self.pace) if self.pace else None,
            "minutes_per_annotator": self.minutes_per_annotator,
            "person_hours": self.person_hours,
        }


def rating_pace(session: Session, sample: int = PACE_SAMPLE) -> Pace | None:
    """The median seconds per rating over the newest ratings made here (imported labels have
    no time). The median, not the mean: a rater who leaves the tab open for an hour is one
    answer, not the pace."""
    seconds = list(
        session.scalars(
            select(Rating.seconds)
            .where(
                Rating.origin == RatingOrigin.campaign,
                Rating.seconds.is_not(None),
                Rating.seconds > 0,
            )
            .order_by(Rating.id.desc())
            .limit(sample)
        )
    )
    if not seconds:
        return None
    return Pace(seconds_per_rating=statistics.median(seconds), ratings=len(seconds))


def plan_campaign(session: Session, spec: CampaignSpec) -> CampaignPlan:
    """The plan of ``spec``; ``CampaignSpecError`` for what ``create_campaign`` would refuse
    (the name aside: a plan is asked for while the form is still being filled in)."""
    errors = validate_spec(session, spec)
    errors.pop("name", None)
    if errors:
        raise CampaignSpecError(errors)
    query = select(func.count()).select_from(Triple).where(*selection_conditions(spec))
    matched = sum(triple_counts.per_source(session, spec.relations, spec.sources).values())
    if matched == 0:
        raise CampaignSpecError({"filters": "the relation and source filters select no triples"})
    candidates = matched
    uncertainty = spec.purpose == CampaignPurpose.training and session.scalar(
        select(CriticVersion.id).where(
            CriticVersion.state == CriticState.active, CriticVersion.threshold.is_not(None)
        )
    )
    if uncertainty:
        # Active learning draws only triples nobody has labelled yet (``uncertainty_order``).
        labelled = select(Rating.id).where(Rating.triple_id == Triple.id).exists()
        candidates = session.scalar(query.where(~labelled)) or 0
        if candidates == 0:
            raise CampaignSpecError({"filters": ALL_LABELLED})
    items = min(spec.sample_size, candidates) if spec.sample_size is not None else candidates
    per_source = source_shares(session, spec, unlabelled_only=bool(uncertainty))
    gold = len(spec.gold_items)
    if spec.gold_fraction > 0:
        labelled = session.scalar(
            select(func.count(Rating.triple_id.distinct())).where(
                Rating.item_id.is_(None), Rating.answer != -9
            )
        )
        if not labelled:
            raise CampaignSpecError({"gold_fraction": NO_GOLD_TO_DRAW})
        gold += min(max(1, round(spec.gold_fraction * items)), labelled)
    return CampaignPlan(
        matched=matched,
        items=items,
        ratings_per_item=spec.ratings_per_item,
        gold_items=gold,
        gold_rate=spec.gold_rate,
        quota_per_annotator=spec.quota_per_annotator,
        pace=rating_pace(session),
        per_source=per_source,
    )
