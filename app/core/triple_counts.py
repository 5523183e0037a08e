"""The corpus's size by source and relation, read from ``triple_counts`` (kept by triggers).

Counting a million triples costs about 100 ms on PostgreSQL, and the home page, the corpus
API, the campaign form, the exports page and the teacher's pages each counted them (or listed
their distinct sources) on every load; at ATOMIC-10X's 6.5 million that is seconds per page.
Triggers on ``triples`` (migration 0010) keep the counts instead, whatever writes: these
functions read them. On PostgreSQL each writing statement adds rows of differences, so every
reader sums by key and ``compact`` folds the rows together from time to time (the job sweep
does, every minute); on SQLite each key has one row and ``compact`` has nothing to do.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.core.models import TripleCount

# Above this many rows the sweep folds them together (a few hundred rows sum in well under a
# millisecond; an import adds one per relation per statement, a teacher chunk as many).
COMPACT_ABOVE = 200


def counts(session: Session) -> dict[tuple[str, str], int]:
    """``{(source, relation): triples}``, keys with no triple left out."""
    total = func.sum(TripleCount.n)
    rows = session.execute(
        select(TripleCount.source, TripleCount.relation, total)
        .group_by(TripleCount.source, TripleCount.relation)
        .having(total > 0)
        .order_by(TripleCount.source, TripleCount.relation)
    )
    return {(source, relation): int(n) for source, relation, n in rows}


def per_source(
    session: Session,
    relations: Iterable[str] = (),
    sources: Iterable[str] = (),
    kept: dict[tuple[str, str], int] | None = None,
) -> dict[str, int]:
    """Triples per source among the given relations and sources (all, where none are given),
    sources in name order: what a campaign's relation and source filters select, without
    reading them. ``kept``: the ``counts`` already read, to read them once per request."""
    relations, sources = set(relations), set(sources)
    out: dict[str, int] = {}
    for (source, relation), n in (counts(session) if kept is None else kept).items():
        if (not relations or relation in relations) and (not sources or source in sources):
            out[source] = out.get(source, 0) + n
    return out


def by_source(session: Session, kept: dict[tuple[str, str], int] | None = None) -> dict[str, int]:
    """Triples per source, sources in name order."""
    return per_source(session, kept=kept)


def by_relation(session: Session, kept: dict[tuple[str, str], int] | None = None) -> dict[str, int]:
    """Triples per relation, relations in name order."""
    out: dict[str, int] = {}
    for (_, relation), n in (counts(session) if kept is None else kept).items():
        out[relation] = out.get(relation, 0) + n
    return dict(sorted(out.items()))


def sources(session: Session) -> list[str]:
    """Every source that has a triple, in name order (what the forms offer)."""
    return list(by_source(session))


def known_sources(session: Session, wanted: Iterable[str]) -> set[str]:
    """Which of ``wanted`` are sources with triples (to refuse a misspelled one by name)."""
    wanted = set(wanted)
    return set(per_source(session, sources=wanted)) if wanted else set()


def source_count(session: Session, source: str) -> int:
    """How many triples one source has (a teacher run's ``teacher-run-N``, an import)."""
    return per_source(session, sources=[source]).get(source, 0)


def total(session: Session) -> int:
    """How many triples the corpus holds."""
    return int(session.scalar(select(func.sum(TripleCount.n))) or 0)


def compact(session: Session, above: int = COMPACT_ABOVE) -> int:
    """Fold PostgreSQL's rows of differences into one row per key, when there are more than
    ``above``; returns how many rows were folded (0: nothing to do). One statement: the rows it
    deletes are exactly the rows it sums, and rows that writers commit meanwhile stay as they
    are, so a concurrent import, teacher chunk or second ``compact`` never loses a count."""
    if session.get_bind().dialect.name != "postgresql":
        return 0  # one row per key already
    rows = session.scalar(select(func.count()).select_from(TripleCount)) or 0
    if rows <= above:
        return 0
    folded = session.execute(
        text(
            "WITH gone AS (DELETE FROM triple_counts RETURNING source, relation, n)"
            " INSERT INTO triple_counts (source, relation, n)"
            " SELECT source, relation, sum(n) FROM gone GROUP BY source, relation"
            " HAVING sum(n) <> 0"
        )
    )
    return max(int(rows) - int(folded.rowcount or 0), 0)


def tidy() -> int:
    """``compact`` in a transaction of its own: what the periodic sweeps (the web server's and
    beat's) and the end of an import call. Nothing to do, and no lock taken, on SQLite."""
    from app.core.db import get_engine, is_postgres, session_scope

    if not is_postgres(get_engine()):
        return 0
    with session_scope(write=True) as session:
        return compact(session)
