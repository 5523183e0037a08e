"""Campaigns: choosing which triples a rating job covers, and the answer scale it asks with.

``create_campaign`` draws the items once, when the campaign is made, and stores each item's
place in the campaign's sampling order (``sort_key``), so the hot path only reads an index.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from app.models import Campaign, CampaignItem, CampaignPurpose, CampaignState, Rating, Triple

# The paper's human evaluation scale; values > 0 are acceptable. ``key`` is the shortcut.
DEFAULT_SCALE: list[dict[str, Any]] = [
    {"value": 2, "label": "always/often", "acceptable": True, "key": "1"},
    {"value": 1, "label": "sometimes/likely", "acceptable": True, "key": "2"},
    {"value": -1, "label": "farfetched/never", "acceptable": False, "key": "3"},
    {"value": -2, "label": "invalid", "acceptable": False, "key": "4"},
    {"value": -9, "label": "too unfamiliar to judge", "acceptable": None, "key": "5"},
]


@dataclass
class CampaignSpec:
    name: str
    purpose: CampaignPurpose = CampaignPurpose.calibration
    sample_size: int | None = None  # None: every triple that passes the filters
    relations: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    ratings_per_item: int = 3
    lease_seconds: int = 600
    gold_fraction: float = 0.0  # share of items drawn from triples with known answers
    gold_rate: float = 0.0  # share of served items that are gold
    guidelines: str = ""
    answer_scale: list[dict[str, Any]] = field(default_factory=lambda: list(DEFAULT_SCALE))
    quota_per_annotator: int | None = None
    completion_code: str | None = None
    redirect_url: str | None = None
    seed: int = 0
    open: bool = True


def create_campaign(
    session: Session, spec: CampaignSpec, created_by_id: int | None = None
) -> Campaign:
    """Create a campaign and its items in the caller's transaction."""
    if spec.ratings_per_item < 1:
        raise ValueError("ratings_per_item: must be at least 1")
    if not 0 <= spec.gold_rate <= 1 or not 0 <= spec.gold_fraction <= 1:
        raise ValueError("gold_rate and gold_fraction: must be between 0 and 1")
    query = select(Triple.id)
    if spec.relations:
        query = query.where(Triple.relation.in_(spec.relations))
    if spec.sources:
        query = query.where(Triple.source.in_(spec.sources))
    ids = list(session.scalars(query.order_by(Triple.id)))
    if not ids:
        raise ValueError("the filters select no triples")
    rng = random.Random(spec.seed)
    if spec.sample_size is not None and spec.sample_size < len(ids):
        ids = rng.sample(ids, spec.sample_size)
    gold: dict[int, int] = {}
    if spec.gold_fraction > 0:
        # Gold answers come from imported human labels (the first label of each triple).
        labelled = dict(
            session.execute(
                select(Rating.triple_id, func.max(Rating.answer))
                .where(Rating.item_id.is_(None), Rating.answer != -9)
                .group_by(Rating.triple_id)
            ).all()
        )
        candidates = sorted(labelled)
        wanted = max(1, round(spec.gold_fraction * len(ids)))
        for triple_id in rng.sample(candidates, min(wanted, len(candidates))):
            gold[triple_id] = labelled[triple_id]
    campaign = Campaign(
        name=spec.name,
        purpose=spec.purpose,
        state=CampaignState.open if spec.open else CampaignState.draft,
        ratings_per_item=spec.ratings_per_item,
        lease_seconds=spec.lease_seconds,
        guidelines=spec.guidelines,
        answer_scale=spec.answer_scale,
        selection={
            "sample_size": spec.sample_size,
            "relations": spec.relations,
            "sources": spec.sources,
            "seed": spec.seed,
            "gold_fraction": spec.gold_fraction,
        },
        gold_rate=spec.gold_rate,
        quota_per_annotator=spec.quota_per_annotator,
        completion_code=spec.completion_code or secrets.token_hex(4).upper(),
        redirect_url=spec.redirect_url,
        share_token=secrets.token_urlsafe(12),
        created_by_id=created_by_id,
    )
    session.add(campaign)
    session.flush()
    rows = [
        {
            "campaign_id": campaign.id,
            "triple_id": triple_id,
            "ratings_needed": spec.ratings_per_item,
            "ratings_done": 0,
            "leases_active": 0,
            "sort_key": rng.random(),
            "is_gold": False,
            "gold_answer": None,
        }
        for triple_id in ids
        if triple_id not in gold
    ]
    # Gold items are shown to everyone (ratings_needed large enough never to close them).
    rows += [
        {
            "campaign_id": campaign.id,
            "triple_id": triple_id,
            "ratings_needed": 32000,
            "ratings_done": 0,
            "leases_active": 0,
            "sort_key": rng.random(),
            "is_gold": True,
            "gold_answer": answer,
        }
        for triple_id, answer in gold.items()
    ]
    for start in range(0, len(rows), 10_000):
        session.execute(insert(CampaignItem), rows[start : start + 10_000])
    return campaign
