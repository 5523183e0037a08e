"""What the critic learns from: binary human labels, split into train and held-out by head.

The labels are the aggregated item labels of ``app.annotation.quality`` (majority of acceptable vs
not
over usable ratings, excluded annotators left out, imported labels included; ties and items
rated only "too unfamiliar" give no label and are left out). Ratings of gold items are left
out too: they exist to check annotators, not to teach the critic.

The split is by head, as in the paper: every triple of an event lands on the same side, so
the held-out score measures generalization to new events, not memorized heads. A head's side
is a hash of its normalized text, so it never changes as labels grow: a triple that was
held out stays held out for every later critic version.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.annotation.quality import iter_item_labels
from app.core.models import CampaignItem, Rating, User


@dataclass(frozen=True)
class LabelledTriple:
    triple_id: int
    head: str
    relation: str
    tail: str
    acceptable: bool


def training_labels(session: Session) -> list[LabelledTriple]:
    """Every triple with a decisive aggregated human label, in triple id order."""
    return [
        LabelledTriple(row.triple_id, row.head, row.relation, row.tail, row.label)
        for row in iter_item_labels(session, include_gold=False)
        if row.label is not None
    ]


def latest_rating_id(session: Session) -> int:
    """Ratings only grow, with increasing ids: the newest id marks what a snapshot saw."""
    return session.scalar(select(func.max(Rating.id))) or 0


def fresh_label_count(session: Session, since_rating_id: int) -> int:
    """Human ratings usable for training that arrived after ``since_rating_id``.

    Counted like the training labels: gold items and excluded annotators do not count.
    """
    query = (
        select(func.count())
        .select_from(Rating)
        .outerjoin(CampaignItem, CampaignItem.id == Rating.item_id)
        .outerjoin(User, User.id == Rating.annotator_id)
        .where(
            Rating.id > since_rating_id,
            or_(Rating.item_id.is_(None), CampaignItem.is_gold.is_(False)),
            or_(Rating.annotator_id.is_(None), User.excluded.is_(False)),
        )
    )
    return session.scalar(query) or 0


def is_held_out(head: str, fraction: float = 0.2, salt: str = "skd-critic-split") -> bool:
    """Whether ``head`` belongs to the held-out side (stable: depends on the text only)."""
    if not 0 <= fraction <= 1:
        raise ValueError("fraction: must be between 0 and 1")
    key = f"{salt}\x1f{' '.join(head.casefold().split())}".encode()
    bucket = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64
    return bucket < fraction


def split_by_head(
    labels: list[LabelledTriple], fraction: float = 0.2
) -> tuple[list[LabelledTriple], list[LabelledTriple]]:
    """(train, held_out); no head appears on both sides."""
    train: list[LabelledTriple] = []
    held_out: list[LabelledTriple] = []
    for label in labels:
        (held_out if is_held_out(label.head, fraction) else train).append(label)
    return train, held_out


def rated_since(session: Session, since_rating_id: int) -> set[int]:
    """Triples with a rating newer than ``since_rating_id``: the labels a warm start trains
    on as new (their label may have changed, or be new), the rest being replayed."""
    return set(session.scalars(select(Rating.triple_id).where(Rating.id > since_rating_id)))
