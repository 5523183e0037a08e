"""Which triples an export keeps, as SQL: the critic's score, the filters, the human labels.

The human-label rule needs each triple's aggregated label, and the aggregation rules live in
Python (``app.annotation.quality.iter_item_labels``: per-campaign answer scales, excluded
annotators,
imported labels). So the decided labels are streamed once into a temporary table, and from
then on everything is a join that the database does: counting, grouping heads, and the one
ordered stream the files are written from. A temporary table belongs to its connection and
disappears with it (and, on PostgreSQL, at commit), so concurrent exports never see each
other's labels.

A triple is a candidate when it is in the relation and source filters. It is kept when:

- ``override``: its label is "accepted", or it has no label and its score >= the threshold;
- ``drop-rejected``: its score >= the threshold and its label is not "rejected";
- ``ignore``: its score >= the threshold;
- ``accepted-only``: its label is "accepted" (the score plays no part).

Triples the critic version did not score have no score: only ``override`` and
``accepted-only`` can keep them (when humans accepted them).

Without a critic (``version_id`` None) there is no score and no threshold: every candidate
counts as "reaching the threshold", so ``override`` and ``drop-rejected`` keep everything but
the rejected, ``ignore`` everything, ``accepted-only`` the accepted. The scores table is then
not joined at all, and the score column is a NULL cast to a float.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Float,
    MetaData,
    Select,
    Table,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    true,
    type_coerce,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.annotation.quality import iter_item_labels
from app.core.db import is_postgres
from app.core.models import Score, Triple, UTCDateTime

LABELS = Table(
    "skd_export_labels",
    MetaData(),
    Column("triple_id", BigInteger, primary_key=True),
    Column("accepted", Boolean, nullable=False),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
_INSERT_BATCH = 50_000  # labels per write into the table


@dataclass
class LabelTotals:
    """Decided (majority) human labels in the whole corpus; ties and "unfamiliar" don't count."""

    accepted: int = 0
    rejected: int = 0


@contextmanager
def labels_table(session: Session) -> Iterator[LabelTotals]:
    """Fill the temporary label table for the duration of the block (same connection)."""
    connection = session.connection()
    LABELS.drop(connection, checkfirst=True)
    LABELS.create(connection)
    totals = LabelTotals()

    def decided() -> Iterator[tuple[int, bool]]:
        for item in iter_item_labels(session):
            if item.label is None:
                continue
            if item.label:
                totals.accepted += 1
            else:
                totals.rejected += 1
            yield item.triple_id, item.label

    try:
        _fill(connection, decided())
        yield totals
    finally:
        # If the transaction failed, the drop fails too; the rollback removes the table then.
        with suppress(SQLAlchemyError):
            LABELS.drop(connection, checkfirst=True)


def _fill(connection: Connection, rows: Iterator[tuple[int, bool]]) -> None:
    """In batches: COPY on PostgreSQL (an INSERT per row took a second per 20,000 labels), the
    driver's executemany on SQLite (a loop in C). The rows come from a cursor on this same
    connection, so each batch is read completely before it is written."""
    postgres = is_postgres(connection.engine)
    while batch := list(islice(rows, _INSERT_BATCH)):
        if not postgres:
            connection.exec_driver_sql(
                f"INSERT INTO {LABELS.name} (triple_id, accepted) VALUES (?, ?)", batch
            )
            continue
        driver = connection.connection.driver_connection
        assert driver is not None
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY {LABELS.name} (triple_id, accepted) FROM STDIN") as copy,
        ):
            for row in batch:
                copy.write_row(row)


@dataclass(frozen=True)
class Selection:
    """The filters and the rule, as the queries need them. ``version_id`` None: no critic."""

    version_id: int | None
    threshold: float | None
    relations: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    human_labels: str = "override"

    # --- SQL pieces -----------------------------------------------------------------------

    @property
    def no_critic(self) -> bool:
        return self.version_id is None

    @property
    def score(self) -> ColumnElement[Any]:
        """The critic's score of a candidate (a typed NULL without a critic)."""
        if self.version_id is None:
            return cast(null(), Float)  # typed in SQL: PostgreSQL would send a text NULL
        return Score.p_accept  # type: ignore[return-value]

    def above(self) -> ColumnElement[bool]:
        if self.version_id is None or self.threshold is None:
            return true()  # no critic: nothing is below a threshold
        return Score.p_accept >= self.threshold

    def below_or_unscored(self) -> ColumnElement[bool]:
        """Not reaching the threshold (no critic: nothing is, there is no threshold)."""
        if self.version_id is None or self.threshold is None:
            return literal(False)
        return or_(Score.p_accept.is_(None), Score.p_accept < self.threshold)

    def keep(self) -> ColumnElement[bool]:
        accepted = LABELS.c.accepted
        if self.human_labels == "accepted-only":
            return accepted.is_(True)
        if self.human_labels == "override":
            return or_(accepted.is_(True), and_(accepted.is_(None), self.above()))
        if self.human_labels == "drop-rejected":
            return and_(self.above(), or_(accepted.is_(None), accepted.is_(True)))
        return self.above()

    def candidates(self, *columns: Any) -> Select[Any]:
        """SELECT columns FROM the candidates (filters applied) with score and label joined."""
        query = select(*columns).select_from(Triple)
        if self.version_id is not None:
            query = query.outerjoin(
                Score,
                and_(Score.triple_id == Triple.id, Score.critic_version_id == self.version_id),
            )
        query = query.outerjoin(LABELS, LABELS.c.triple_id == Triple.id)
        if self.relations:
            query = query.where(Triple.relation.in_(self.relations))
        if self.sources:
            query = query.where(Triple.source.in_(self.sources))
        return query

    def scored(self) -> Select[Any]:
        """The scored candidates only, for thresholds by kept fraction (no label join)."""
        query = select(Score.p_accept).join(Triple, Triple.id == Score.triple_id)
        query = query.where(Score.critic_version_id == self.version_id)
        if self.relations:
            query = query.where(Triple.relation.in_(self.relations))
        if self.sources:
            query = query.where(Triple.source.in_(self.sources))
        return query


@dataclass
class SelectionCounts:
    """What the selection keeps and why, in one pass over the candidates."""

    candidates: int  # triples in the relation and source filters
    scored: int  # ... that this critic version scored
    above_threshold: int  # ... whose score reaches the threshold
    kept: int
    kept_accepted: int  # kept triples with a majority-accepted human label
    kept_rejected: int  # kept triples with a majority-rejected label (only with "ignore")
    kept_unlabelled: int  # kept triples without a decided human label
    kept_by_label: int  # kept although below the threshold or unscored (human-accepted)
    dropped_by_label: int  # dropped although above the threshold (human-rejected)
    newest_triple: datetime | None  # created_at of the newest kept triple
    kept_by_relation: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["newest_triple"] = self.newest_triple.isoformat() if self.newest_triple else None
        return data


def count_selection(session: Session, selection: Selection) -> SelectionCounts:
    """Every count of the card's "why" in one grouped scan of the candidates (per relation,
    summed here): on a million triples each scan costs about a second."""
    keep = selection.keep()
    above = selection.above()
    accepted = LABELS.c.accepted

    def n(condition: ColumnElement[bool]) -> Any:  # how many candidates meet the condition
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    query = selection.candidates(
        Triple.relation,
        func.count(),
        func.count(selection.score),
        n(above),
        n(keep),
        n(and_(keep, accepted.is_(True))),
        n(and_(keep, accepted.is_(False))),
        n(and_(keep, accepted.is_(None))),
        n(and_(keep, selection.below_or_unscored())),
        n(and_(above, accepted.is_(False))) if selection.human_labels != "ignore" else literal(0),
        type_coerce(func.max(case((keep, Triple.created_at))), UTCDateTime()),
    )
    totals = [0] * 9
    newest: datetime | None = None
    by_relation: dict[str, int] = {}
    for relation, *numbers, latest in session.execute(query.group_by(Triple.relation)):
        for index, value in enumerate(numbers):
            totals[index] += int(value)
        if int(numbers[3]):
            by_relation[relation] = int(numbers[3])
        if latest is not None and (newest is None or latest > newest):
            newest = latest
    return SelectionCounts(
        *totals, newest_triple=newest, kept_by_relation=dict(sorted(by_relation.items()))
    )


def keeps_anything(session: Session, selection: Selection) -> bool:
    """Whether at least one triple is kept (stops at the first: the refusal of an empty
    export must not cost a scan of the corpus)."""
    query = selection.candidates(Triple.id).where(selection.keep()).limit(1)
    return session.execute(query).first() is not None


def threshold_for_kept_fraction(session: Session, selection: Selection, fraction: float) -> float:
    """The score that keeps ``fraction`` of the *scored candidates* (the filters applied).

    ``app.critic.filtering.choose_threshold(..., "kept", x)`` answers the same question for the
    whole corpus; an export with relation or source filters means "x of what I asked for".
    The rank rule is the same: the score at rank round(x * n), ties kept together.
    """
    total = session.scalar(select(func.count()).select_from(selection.scored().subquery()))
    if not total:
        raise ValueError("no triple in the filters has a score from this version")
    rank = max(0, min(total - 1, round(fraction * total) - 1))
    threshold = session.scalar(
        selection.scored().order_by(Score.p_accept.desc()).offset(rank).limit(1)
    )
    assert threshold is not None
    return float(threshold)


def head_counts(session: Session, selection: Selection, yield_per: int = 20000) -> Iterator[Any]:
    """(head, kept triples) for every head of the kept set, streamed."""
    query = selection.candidates(Triple.head, func.count()).where(selection.keep())
    query = query.group_by(Triple.head)
    yield from session.connection().execute(query, execution_options={"yield_per": yield_per})


@dataclass
class CorpusSplit:
    """One of the corpus's own splits among the kept triples (``split_by="corpus"``)."""

    name: str | None  # None: kept triples that have no split of their own
    triples: int
    heads: int


def corpus_splits(session: Session, selection: Selection) -> list[CorpusSplit]:
    """The kept triples grouped by their imported split, with distinct heads per split."""
    query = (
        selection.candidates(Triple.split, func.count(), func.count(func.distinct(Triple.head)))
        .where(selection.keep())
        .group_by(Triple.split)
    )
    return [CorpusSplit(name, int(n), int(heads)) for name, n, heads in session.execute(query)]


def first_without_split(session: Session, selection: Selection) -> Any:
    """(head, relation, tail) of the first kept triple with no split, to name in an error."""
    query = selection.candidates(Triple.head, Triple.relation, Triple.tail)
    query = query.where(selection.keep(), Triple.split.is_(None)).order_by(Triple.id).limit(1)
    return session.execute(query).first()


def heads_in_several_splits(session: Session, selection: Selection) -> int:
    """Kept heads (as stored) whose triples are in more than one of the corpus's splits."""
    shared = (
        selection.candidates(Triple.head)
        .where(selection.keep())
        .group_by(Triple.head)
        .having(func.count(func.distinct(Triple.split)) > 1)
        .subquery()
    )
    return int(session.scalar(select(func.count()).select_from(shared)) or 0)


def kept_rows(session: Session, selection: Selection, yield_per: int = 10000) -> Iterator[Any]:
    """(head, relation, tail, source, p_accept, accepted, split) of the kept triples, by id
    (``split`` is the triple's own, imported split: used when the corpus's splits are kept).

    Streamed with ``yield_per``: a server-side cursor on PostgreSQL, SQLite's own stepping
    cursor, so memory stays flat however many triples there are. Core rows, not ORM objects:
    this loop runs once per exported triple.
    """
    query = selection.candidates(
        Triple.head,
        Triple.relation,
        Triple.tail,
        Triple.source,
        selection.score,
        LABELS.c.accepted,
        Triple.split,
    )
    query = query.where(selection.keep()).order_by(Triple.id)
    result = session.connection().execute(query, execution_options={"yield_per": yield_per})
    for partition in result.partitions():  # a batch at a time: less per-row overhead
        yield from partition
