"""How far campaigns have come: progress, pace and people, for the list page, the API and the CLI.

Progress reads the counters kept in ``campaign_items`` (no count of ratings per item). Gold
items are left out of progress: they are shown to everyone and never "finish".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.core.models import CampaignItem, Rating, utcnow


@dataclass
class CampaignProgress:
    items: int = 0  # non-gold items
    gold_items: int = 0
    ratings_done: int = 0  # over non-gold items
    ratings_needed: int = 0
    gold_ratings: int = 0
    ratings_last_hour: int = 0  # every rating, gold included: the pace of the crowd
    annotators: int = 0

    @property
    def fraction(self) -> float:
        return self.ratings_done / self.ratings_needed if self.ratings_needed else 0.0

    @property
    def percent(self) -> int:
        """Whole percent, rounded down: 100 only when every rating is in."""
        return int(self.fraction * 100)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fraction": round(self.fraction, 4)}


def campaign_progress(session: Session, campaign_ids: list[int]) -> dict[int, CampaignProgress]:
    """Progress of each campaign in ``campaign_ids`` (three grouped queries, whatever the count)."""
    progress = {campaign_id: CampaignProgress() for campaign_id in campaign_ids}
    if not campaign_ids:
        return progress
    items = session.execute(
        select(
            CampaignItem.campaign_id,
            CampaignItem.is_gold,
            func.count(),
            func.coalesce(func.sum(CampaignItem.ratings_done), 0),
            func.coalesce(func.sum(CampaignItem.ratings_needed), 0),
        )
        .where(CampaignItem.campaign_id.in_(campaign_ids))
        .group_by(CampaignItem.campaign_id, CampaignItem.is_gold)
    )
    for campaign_id, is_gold, count, done, needed in items:
        row = progress[campaign_id]
        if is_gold:
            row.gold_items, row.gold_ratings = int(count), int(done)
        else:
            row.items, row.ratings_done, row.ratings_needed = int(count), int(done), int(needed)
    rated = (
        select(CampaignItem.campaign_id, Rating.annotator_id, Rating.created_at)
        .join(CampaignItem, CampaignItem.id == Rating.item_id)
        .where(CampaignItem.campaign_id.in_(campaign_ids))
        .subquery()
    )
    since = utcnow() - timedelta(hours=1)
    pace = session.execute(
        select(
            rated.c.campaign_id,
            func.count(func.distinct(rated.c.annotator_id)),
            func.sum(case((rated.c.created_at >= since, 1), else_=0)),
        ).group_by(rated.c.campaign_id)
    )
    for campaign_id, annotators, last_hour in pace:
        progress[campaign_id].annotators = int(annotators)
        progress[campaign_id].ratings_last_hour = int(last_hour or 0)
    return progress
