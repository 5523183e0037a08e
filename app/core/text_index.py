"""Trigram indexes for the corpus browser's text search (PostgreSQL, opt in).

The browser's text filter is a case-insensitive substring (``ILIKE '%word%'``). No B-tree
serves it, so on a million triples a rare word reads the table until a page of matches is
found (0.2-1.1 s). GIN indexes with ``gin_trgm_ops`` (the ``pg_trgm`` extension) answer it
from the index in about 30 ms (bench/README.md, "Corpus browser").

They are not part of the schema migrations because they cost every import: keeping them up to
date while a million triples go in took an import from 17 s to 55 s, while building them
afterwards takes about 10 s. So a team that searches a large corpus turns them on once with
``skd db text-index`` (``CREATE INDEX CONCURRENTLY``: the corpus stays readable and writable
while it builds) and off again with ``--drop`` before a very large import if it wants.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, text

# index name -> column of ``triples``
TEXT_INDEXES = {"ix_triples_head_trgm": "head", "ix_triples_tail_trgm": "tail"}
# database URL -> (when asked, whether both indexes were valid); see text_indexes_ready
_READY: dict[str, tuple[float, bool]] = {}
READY_TTL_SECONDS = 60.0


class TextIndexError(RuntimeError):
    """The database cannot hold trigram indexes (SQLite, or no pg_trgm on the server)."""


def require_postgres(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        raise TextIndexError(
            "trigram text indexes are a PostgreSQL feature; on SQLite the corpus browser's "
            "text search reads the table (fine for small corpora)"
        )


def text_index_state(engine: Engine) -> dict[str, str]:
    """Each text index's state: ``valid``, ``invalid`` (a build that was interrupted) or
    ``missing``. Always ``missing`` on SQLite."""
    state = dict.fromkeys(TEXT_INDEXES, "missing")
    if engine.dialect.name != "postgresql":
        return state
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.relname, i.indisvalid FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = ANY(:names)"
            ),
            {"names": list(TEXT_INDEXES)},
        )
        for name, valid in rows:
            state[name] = "valid" if valid else "invalid"
    return state


def text_indexes_ready(engine: Engine) -> bool:
    """Whether both indexes are there and valid, asked of the catalog at most once a minute
    per database (the browser asks on every text search). A build or drop in this process is
    seen at once; one from another process (`skd db text-index`) within a minute."""
    if engine.dialect.name != "postgresql":
        return False
    url = str(engine.url)
    now = time.monotonic()
    seen = _READY.get(url)
    if seen is None or now - seen[0] > READY_TTL_SECONDS:
        ready = all(state == "valid" for state in text_index_state(engine).values())
        seen = _READY[url] = (now, ready)
    return seen[1]


def _watch_progress(
    engine: Engine, report: Callable[[str, int, int], None], stop: threading.Event
) -> None:
    """Poll ``pg_stat_progress_create_index`` (the build's own connection is busy)."""
    with engine.connect() as conn:
        while not stop.wait(0.5):
            row = conn.execute(
                text(
                    "SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total "
                    "FROM pg_stat_progress_create_index WHERE relid = 'triples'::regclass"
                )
            ).first()
            conn.rollback()  # a fresh snapshot on the next poll
            if row is not None:
                phase, blocks_done, blocks_total, tuples_done, tuples_total = row
                if blocks_total:
                    report(str(phase), int(blocks_done), int(blocks_total))
                elif tuples_total:
                    report(str(phase), int(tuples_done), int(tuples_total))


def create_text_indexes(
    engine: Engine, report: Callable[[str, int, int], None] | None = None
) -> list[str]:
    """Create the missing trigram indexes without blocking reads or writes; an index left
    invalid by an interrupted build is dropped and built again. Returns the names built.
    ``report(phase, done, total)`` is called about twice a second while an index builds."""
    require_postgres(engine)
    built: list[str] = []
    state = text_index_state(engine)
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as conn:
        try:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        except Exception as exc:  # noqa: BLE001 - the server's words are the useful part
            raise TextIndexError(
                f"could not enable the pg_trgm extension ({exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0]}); ask the database owner to run "
                "CREATE EXTENSION pg_trgm"
            ) from None
        for name, column in TEXT_INDEXES.items():
            if state[name] == "valid":
                continue
            if state[name] == "invalid":
                conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
            stop = threading.Event()
            watcher = None
            if report is not None:
                watcher = threading.Thread(
                    target=_watch_progress, args=(engine, report, stop), daemon=True
                )
                watcher.start()
            started = time.monotonic()
            try:
                conn.execute(
                    text(
                        f"CREATE INDEX CONCURRENTLY {name} ON triples "
                        f"USING gin ({column} gin_trgm_ops)"
                    )
                )
            finally:
                stop.set()
                if watcher is not None:
                    watcher.join(timeout=5)
            if report is not None:
                report(f"built in {time.monotonic() - started:.1f} s", 1, 1)
            built.append(name)
    _READY.pop(str(engine.url), None)
    return built


def drop_text_indexes(engine: Engine) -> list[str]:
    """Drop the trigram indexes (without blocking the corpus); returns the names dropped."""
    require_postgres(engine)
    present = [name for name, state in text_index_state(engine).items() if state != "missing"]
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as conn:
        for name in present:
            conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
    _READY.pop(str(engine.url), None)
    return present
