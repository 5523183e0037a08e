"""How much raters agree on a campaign: Krippendorff's alpha (nominal on accept/reject, ordinal on
the scale) and raw pairwise agreement."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import krippendorff
import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.annotation.acceptability import (
    _campaign,
    _not_excluded,
    acceptability,
    is_acceptable,
)
from app.core.models import CampaignItem, Rating, User


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
