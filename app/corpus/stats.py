"""Corpus counts for the staff pages and the CLI."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.models import Rating, RatingOrigin, Triple


def corpus_counts(session: Session) -> dict[str, Any]:
    by_relation = dict(
        session.execute(
            select(Triple.relation, func.count())
            .group_by(Triple.relation)
            .order_by(Triple.relation)
        ).all()
    )
    by_source = dict(
        session.execute(
            select(Triple.source, func.count()).group_by(Triple.source).order_by(Triple.source)
        ).all()
    )
    ratings = dict(
        session.execute(select(Rating.origin, func.count()).group_by(Rating.origin)).all()
    )
    return {
        "triples": sum(by_relation.values()),
        "by_relation": by_relation,
        "by_source": by_source,
        "imported_labels": ratings.get(RatingOrigin.imported, 0),
        "ratings": ratings.get(RatingOrigin.campaign, 0),
    }
