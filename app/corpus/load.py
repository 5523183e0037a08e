"""Bulk loading of parsed triples: the one place where PostgreSQL and SQLite take different roads.

PostgreSQL: COPY into a temporary staging table, then one ``INSERT ... SELECT ... ON CONFLICT
DO NOTHING`` (the unique normalized hash decides what is new). SQLite: ``executemany`` into a
temporary staging table and the same ON CONFLICT insert from it, a batch at a time, inside the
import's one transaction. Either way the caller's
transaction decides whether anything becomes visible: a failure leaves the corpus untouched.

Into an empty corpus (the first import, typically the big one) PostgreSQL gets a plain INSERT
inside a savepoint instead: ON CONFLICT looks each row up in the unique index once more before
inserting it and inserts it speculatively, about a quarter of the time of a 1M-triple import,
and with nothing in the corpus there is nothing to conflict with. Should another transaction
commit some of the same triples meanwhile, the plain insert fails on the unique index, the
savepoint is rolled back and the ON CONFLICT insert runs as always: the outcome, and the order
of the new ids, are the same either way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.db import is_postgres
from app.core.jobs import NullProgress, Progress


class Row(NamedTuple):
    """One validated, cleaned triple ready for the database."""

    head: str
    relation: str
    tail: str
    norm_hash: str
    line: int
    split: str | None
    meta: str | None  # JSON text
    label: int | None


class LoadResult(NamedTuple):
    inserted: int
    labels: int


_TRIPLE_COLUMNS = (
    "head, relation, tail, norm_hash, source, source_file, source_line, split, meta, created_at"
)


def load_rows(
    session: Session,
    rows: Sequence[Row],
    *,
    source: str,
    source_file: str,
    batch_size: int = 50_000,
    progress: Progress | None = None,
    done_before: int = 0,
) -> LoadResult:
    """Insert ``rows`` (already de-duplicated among themselves); existing triples are skipped.

    Rows carrying a human label also get an imported rating, keyed by the triple's hash so a
    re-import never adds it twice. Returns how many triples and labels were new.
    """
    progress = progress or NullProgress()
    if is_postgres(session.get_bind()):  # type: ignore[arg-type]
        return _load_postgres(session, rows, source, source_file, batch_size, progress, done_before)
    return _load_sqlite(session, rows, source, source_file, batch_size, progress, done_before)


def _copy_text(value: Any) -> str:
    """A value in COPY's text format (rows are cleaned: no tabs or newlines remain)."""
    if value is None:
        return "\\N"
    text = str(value)
    return text.replace("\\", "\\\\") if "\\" in text else text


def _copy_payload(rows: Sequence[Row]) -> bytes:
    """The staging table's COPY text for ``rows``: head, relation, tail, norm_hash, source_line,
    split, meta, label. Written out for the common row (no split, meta or label, no backslash)
    because a 1M-triple import spends a second or more here."""
    lines: list[str] = []
    add = lines.append
    for head, relation, tail, norm_hash, line, split, meta, label in rows:
        if "\\" in head:
            head = head.replace("\\", "\\\\")
        if "\\" in tail:
            tail = tail.replace("\\", "\\\\")
        if split is None and meta is None and label is None:
            add(f"{head}\t{relation}\t{tail}\t{norm_hash}\t{line}\t\\N\t\\N\t\\N\n")
        else:
            add(
                f"{head}\t{relation}\t{tail}\t{norm_hash}\t{line}\t{_copy_text(split)}\t"
                f"{_copy_text(meta)}\t{_copy_text(label)}\n"
            )
    return "".join(lines).encode("utf-8")


def _load_postgres(
    session: Session,
    rows: Sequence[Row],
    source: str,
    source_file: str,
    batch_size: int,
    progress: Progress,
    done_before: int,
) -> LoadResult:
    connection = session.connection()
    connection.exec_driver_sql(
        "CREATE TEMP TABLE IF NOT EXISTS skd_import_staging ("
        " head text, relation text, tail text, norm_hash text, source_line int,"
        " split text, meta json, label smallint) ON COMMIT DROP"
    )
    connection.exec_driver_sql("TRUNCATE skd_import_staging")
    driver = connection.connection.driver_connection
    copy_sql = (
        "COPY skd_import_staging (head, relation, tail, norm_hash, source_line, split, meta, label)"
        " FROM STDIN"
    )
    with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:  # type: ignore[union-attr]
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            copy.write(_copy_payload(chunk))
            progress.update(done_before + start + len(chunk) // 2)
    progress.update(done_before + len(rows) // 2, message=f"{source_file}: inserting")
    insert_sql = (
        f"INSERT INTO triples ({_TRIPLE_COLUMNS})"
        " SELECT head, relation, tail, norm_hash, %(source)s, %(source_file)s, source_line,"
        " split, meta, now() FROM skd_import_staging"
    )
    params = {"source": source, "source_file": source_file}
    inserted: int | None = None
    if connection.exec_driver_sql("SELECT NOT EXISTS (SELECT FROM triples)").scalar():
        try:
            # A savepoint, so a failure undoes only this statement. It is emitted when the
            # session hands out its connection inside the block, hence session.connection().
            with session.begin_nested():
                inserted = session.connection().exec_driver_sql(insert_sql, params).rowcount
        except IntegrityError:
            inserted = None  # another transaction committed some of these triples meanwhile
    if inserted is None:
        inserted = connection.exec_driver_sql(
            insert_sql + " ON CONFLICT (norm_hash) DO NOTHING", params
        ).rowcount
    labels = connection.exec_driver_sql(
        "INSERT INTO ratings (triple_id, origin, answer, submission_id, created_at)"
        " SELECT t.id, 'imported', s.label, 'import:' || s.norm_hash, now()"
        " FROM skd_import_staging s JOIN triples t ON t.norm_hash = s.norm_hash"
        " WHERE s.label IS NOT NULL"
        " ON CONFLICT (submission_id) DO NOTHING"
    ).rowcount
    connection.exec_driver_sql("TRUNCATE skd_import_staging")
    progress.update(done_before + len(rows))
    return LoadResult(inserted or 0, labels or 0)


def _sqlite_now() -> str:
    # The storage format SQLAlchemy's SQLite DateTime reads back.
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _load_sqlite(
    session: Session,
    rows: Sequence[Row],
    source: str,
    source_file: str,
    batch_size: int,
    progress: Progress,
    done_before: int,
) -> LoadResult:
    cursor = session.connection().connection.cursor()
    now = _sqlite_now()
    inserted = 0
    labels = 0
    cursor.execute(
        "CREATE TEMP TABLE IF NOT EXISTS skd_import_staging"
        " (head, relation, tail, norm_hash, source_line, split, meta)"
    )
    try:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            # Staged, then one INSERT ... SELECT: with the counting triggers on ``triples``
            # (migration 0010) and foreign keys on, SQLite opens a statement journal for every
            # statement, so executemany straight into ``triples`` paid it for every row (a
            # million triples took 37 s instead of 17); one statement per batch pays it once.
            cursor.execute("DELETE FROM temp.skd_import_staging")
            cursor.executemany(
                "INSERT INTO temp.skd_import_staging VALUES (?,?,?,?,?,?,?)",
                [(r.head, r.relation, r.tail, r.norm_hash, r.line, r.split, r.meta) for r in chunk],
            )
            cursor.execute(
                f"INSERT INTO triples ({_TRIPLE_COLUMNS})"
                " SELECT head, relation, tail, norm_hash, ?, ?, source_line, split, meta, ?"
                " FROM temp.skd_import_staging WHERE true ORDER BY rowid"
                " ON CONFLICT (norm_hash) DO NOTHING",
                (source, source_file, now),
            )
            inserted += max(cursor.rowcount, 0)
            labelled = [
                (r.label, "import:" + r.norm_hash, now, r.norm_hash)
                for r in chunk
                if r.label is not None
            ]
            if labelled:
                cursor.executemany(
                    "INSERT INTO ratings (triple_id, origin, answer, submission_id, created_at)"
                    " SELECT id, 'imported', ?, ?, ? FROM triples WHERE norm_hash = ?"
                    " ON CONFLICT (submission_id) DO NOTHING",
                    labelled,
                )
                labels += max(cursor.rowcount, 0)
            progress.update(done_before + start + len(chunk))
        cursor.execute("DELETE FROM temp.skd_import_staging")
    finally:
        cursor.close()
    return LoadResult(inserted, labels)


def meta_json(meta: dict[str, Any] | None) -> str | None:
    return None if not meta else json.dumps(meta, ensure_ascii=False, separators=(",", ":"))
