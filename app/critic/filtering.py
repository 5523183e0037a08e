"""Choosing a threshold and previewing what it keeps, before anything is exported.

A threshold can be chosen three ways: by target recall (the paper's rec_X filters), by target
precision, both from the version's held-out precision-recall curve, or by the fraction of the
corpus to keep, from the version's corpus scores. The preview counts what the threshold keeps
per relation and estimates the precision of the kept set from the labels of ``calibration``
campaigns: a uniform random sample, so the estimate is unbiased, with a 95% interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.annotation.quality import item_labels
from app.core.models import Campaign, CampaignPurpose, CriticVersion, Score, Triple
from app.critic.metrics import wilson_interval

ThresholdRule = Literal["recall", "precision", "kept"]


def choose_threshold(session: Session, version_id: int, rule: ThresholdRule, value: float) -> float:
    """The threshold meeting ``rule = value`` for this version (see the module docstring)."""
    if not 0 < value <= 1:
        raise ValueError(f"{rule}: must be a fraction in (0, 1]")
    version = session.get(CriticVersion, version_id)
    if version is None:
        raise LookupError(f"no critic version {version_id}")
    if rule == "kept":
        total = session.scalar(
            select(func.count()).select_from(Score).where(Score.critic_version_id == version_id)
        )
        if not total:
            raise ValueError("this version has not scored the corpus yet")
        rank = max(0, min(total - 1, round(value * total) - 1))
        threshold = session.scalar(
            select(Score.p_accept)
            .where(Score.critic_version_id == version_id)
            .order_by(Score.p_accept.desc())
            .offset(rank)
            .limit(1)
        )
        assert threshold is not None
        return float(threshold)
    curve = version.metrics.get("pr_curve")
    if not curve:
        raise ValueError("this version has no held-out precision-recall curve")
    points = list(zip(curve["threshold"], curve["precision"], curve["recall"], strict=True))
    if rule == "recall":
        # Thresholds decrease along the curve: the first to reach the recall is the highest.
        for threshold, _precision, recall in points:
            if recall >= value - 1e-12:
                return float(threshold)
        raise ValueError(f"recall {value} is not reached at any threshold")
    if rule == "precision":
        # The lowest threshold (most kept) whose precision still meets the target.
        meeting = [threshold for threshold, precision, _recall in points if precision >= value]
        if not meeting:
            raise ValueError(f"precision {value} is not reached at any threshold")
        return float(min(meeting))
    raise ValueError(f"unknown rule {rule!r}; use recall, precision or kept")


@dataclass
class FilterPreview:
    threshold: float
    scored: int
    kept: int
    kept_by_relation: dict[str, int]
    # From calibration-campaign labels of triples this version scored:
    sample_kept: int
    sample_kept_acceptable: int
    estimated_precision: float | None
    interval: tuple[float, float] | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def preview(session: Session, version_id: int, threshold: float) -> FilterPreview:
    kept_by_relation = dict(
        session.execute(
            select(Triple.relation, func.count())
            .join(Score, Score.triple_id == Triple.id)
            .where(Score.critic_version_id == version_id, Score.p_accept >= threshold)
            .group_by(Triple.relation)
            .order_by(Triple.relation)
        ).all()
    )
    scored = session.scalar(
        select(func.count()).select_from(Score).where(Score.critic_version_id == version_id)
    )
    calibration = session.scalars(
        select(Campaign.id).where(Campaign.purpose == CampaignPurpose.calibration)
    ).all()
    labels = {
        row.triple_id: row.label
        for campaign_id in calibration
        for row in item_labels(session, campaign_id)
        if row.label is not None
    }
    sample_scores = dict(
        session.execute(
            select(Score.triple_id, Score.p_accept).where(
                Score.critic_version_id == version_id, Score.triple_id.in_(list(labels))
            )
        ).all()
    )
    kept_labels = [labels[t] for t, p in sample_scores.items() if p >= threshold]
    good = sum(kept_labels)
    return FilterPreview(
        threshold=threshold,
        scored=scored or 0,
        kept=sum(kept_by_relation.values()),
        kept_by_relation=kept_by_relation,
        sample_kept=len(kept_labels),
        sample_kept_acceptable=good,
        estimated_precision=good / len(kept_labels) if kept_labels else None,
        interval=wilson_interval(good, len(kept_labels)) if kept_labels else None,
    )
