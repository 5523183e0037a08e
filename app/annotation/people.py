"""Annotators at a glance for admins: where they come from, what they rated, what looks wrong.

One row per annotator: platform and worker id, the campaigns they took part in, their number
of ratings, the quality flags any campaign raised about them (``app.annotation.annotators``:
low gold accuracy, speeder), whether their ratings are excluded, and whether the account is
active. A few grouped queries, not one per person.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.annotation.annotators import annotator_flags, user_label
from app.core.models import AnnotatorCampaign, Assignment, Campaign, Rating, Role, User


@dataclass
class AnnotatorRow:
    user_id: int
    label: str
    platform: str | None
    external_id: str | None
    ratings: int
    campaigns: list[dict[str, Any]] = field(default_factory=list)  # [{"id", "name"}]
    flags: list[str] = field(default_factory=list)  # "speeder in Pilot 1"
    excluded: bool = False
    is_active: bool = True
    deactivated_at: str | None = None
    last_seen_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def annotator_rows(session: Session, limit: int = 500) -> tuple[list[AnnotatorRow], int]:
    """The most recently seen annotators (at most ``limit``) and how many there are in all."""
    total = int(session.scalar(select(func.count()).where(User.role == Role.annotator)) or 0)
    users = list(
        session.scalars(
            select(User)
            .where(User.role == Role.annotator)
            .order_by(User.last_seen_at.desc().nulls_last(), User.id.desc())
            .limit(limit)
        )
    )
    ids = [user.id for user in users]
    if not ids:
        return [], total
    ratings = dict(
        session.execute(
            select(Rating.annotator_id, func.count())
            .where(Rating.annotator_id.in_(ids))
            .group_by(Rating.annotator_id)
        ).all()
    )
    # Campaigns they were admitted to (by link or invitation) or were handed items of.
    pairs: set[tuple[int, int]] = set()
    for table in (AnnotatorCampaign, Assignment):
        pairs.update(
            session.execute(
                select(table.annotator_id, table.campaign_id)
                .where(table.annotator_id.in_(ids))
                .distinct()
            ).all()
        )
    names = dict(
        session.execute(
            select(Campaign.id, Campaign.name).where(Campaign.id.in_({c for _u, c in pairs}))
        ).all()
    )
    campaigns: dict[int, list[dict[str, Any]]] = {}
    for user_id, campaign_id in sorted(pairs):
        if campaign_id in names:
            campaigns.setdefault(user_id, []).append(
                {"id": campaign_id, "name": names[campaign_id]}
            )
    flags = quality_flags(session, {c["id"] for rows in campaigns.values() for c in rows})
    rows = [
        AnnotatorRow(
            user_id=user.id,
            label=user_label(
                user.id, user.username, user.display_name, user.platform, user.external_id
            ),
            platform=user.platform,
            external_id=user.external_id,
            ratings=int(ratings.get(user.id, 0)),
            campaigns=campaigns.get(user.id, []),
            flags=flags.get(user.id, []),
            excluded=user.excluded,
            is_active=user.is_active,
            deactivated_at=user.deactivated_at.isoformat() if user.deactivated_at else None,
            last_seen_at=user.last_seen_at.isoformat() if user.last_seen_at else None,
        )
        for user in users
    ]
    return rows, total


def quality_flags(session: Session, campaign_ids: set[int]) -> dict[int, list[str]]:
    """Each annotator's flags over these campaigns, as "flag in campaign name"."""
    flags: dict[int, list[str]] = {}
    names = dict(
        session.execute(
            select(Campaign.id, Campaign.name).where(Campaign.id.in_(campaign_ids))
        ).all()
    )
    for campaign_id, name in sorted(names.items()):
        for user_id, found in annotator_flags(session, campaign_id).items():
            flags.setdefault(user_id, []).extend(f"{flag} in {name}" for flag in found)
    return flags
