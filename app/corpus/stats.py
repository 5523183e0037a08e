"""Corpus counts for the staff pages and the CLI."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core import triple_counts
from app.core.models import Rating, RatingOrigin


def corpus_counts(session: Session) -> dict[str, Any]:
    """The corpus's size, by relation and by source (from the counts the database keeps: the
    same figures as counting the triples, at any size), and its labels."""
    kept = triple_counts.counts(session)  # read once, summed both ways
    by_relation = triple_counts.by_relation(session, kept)
    ratings = dict(
        session.execute(select(Rating.origin, func.count()).group_by(Rating.origin)).all()
    )
    return {
        "triples": sum(by_relation.values()),
        "by_relation": by_relation,
        "by_source": triple_counts.by_source(session, kept),
        "imported_labels": ratings.get(RatingOrigin.imported, 0),
        "ratings": ratings.get(RatingOrigin.campaign, 0),
    }
