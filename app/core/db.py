"""Engine, sessions and the few places where PostgreSQL and SQLite must differ.

Everything else in the code base is dialect-neutral SQLAlchemy. The helpers here are the only
``if postgres`` branches: how to start a write transaction that serializes properly, and how
to bulk load.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings, get_settings

_lock = threading.Lock()
_engine: Engine | None = None
_session_factory: sessionmaker[Session] | None = None


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url if isinstance(engine_or_url, str) else str(engine_or_url.url)
    return make_url(url).get_backend_name() == "sqlite"


def is_postgres(engine_or_url: Engine | str) -> bool:
    url = engine_or_url if isinstance(engine_or_url, str) else str(engine_or_url.url)
    return make_url(url).get_backend_name() == "postgresql"


def _tune_sqlite(engine: Engine) -> None:
    """WAL (readers never block the writer), a generous busy timeout, enforced foreign keys.

    pysqlite's own transaction handling is switched off so that ``BEGIN IMMEDIATE`` can be
    issued for write transactions: taking the write lock up front avoids the deadlock-prone
    upgrade from a read to a write lock when two writers race.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode != ON_FIRST_WRITE:
            conn.exec_driver_sql(f"BEGIN {mode}")

    @event.listens_for(engine, "before_cursor_execute")
    def _write_lock_first(conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        # ON_FIRST_WRITE: reads run on their own (each sees the latest commit) until the first
        # write, which takes the write lock before it (BEGIN IMMEDIATE, waiting up to the busy
        # timeout); a read lock is never upgraded, so a concurrent commit cannot make it fail.
        if conn.get_execution_options().get("sqlite_begin") != ON_FIRST_WRITE:
            return
        raw = conn.connection.dbapi_connection
        if raw is not None and not raw.in_transaction and not _is_read(statement):
            raw.execute("BEGIN IMMEDIATE")


ON_FIRST_WRITE = "ON FIRST WRITE"


def _is_read(statement: str) -> bool:
    return statement.lstrip()[:7].upper() in ("SELECT ", "SELECT\n", "PRAGMA ")


def make_engine(url: str, **kwargs: object) -> Engine:
    """An engine for ``url`` with the settings each dialect needs."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        _tune_sqlite(engine)
        return engine
    return create_engine(
        url, **{"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20, **kwargs}
    )


def configure(settings: Settings | None = None) -> Engine:
    """(Re)build the process-wide engine from settings; tests and forked workers call this."""
    global _engine, _session_factory
    settings = settings or get_settings()
    with _lock:
        if _engine is not None and _same_database(_engine, settings.database):
            # One engine (one pool) per database per process: every app built in a process
            # (the tests build one per test) shares it. Rebuilding it each time left the old
            # pool's checked-out connections open, and PostgreSQL ran out of connections.
            return _engine
        if _engine is not None:
            _engine.dispose()
        _engine = make_engine(settings.database)
        _session_factory = sessionmaker(_engine, expire_on_commit=False)
        return _engine


def _same_database(engine: Engine, url: str) -> bool:
    return engine.url.render_as_string(hide_password=False) == make_url(url).render_as_string(
        hide_password=False
    )


def get_engine() -> Engine:
    if _engine is None:
        configure()
    assert _engine is not None
    return _engine


def dispose() -> None:
    """Drop pooled connections (after a fork they belong to the parent)."""
    if _engine is not None:
        _engine.dispose(close=False)


def session_factory() -> sessionmaker[Session]:
    if _session_factory is None:
        configure()
    assert _session_factory is not None
    return _session_factory


@contextmanager
def session_scope(*, write: bool = False, write_on_demand: bool = False) -> Iterator[Session]:
    """A session committed on success and rolled back on error.

    ``write=True`` marks a transaction that will write: on SQLite it begins IMMEDIATE so the
    single writer lock is taken before any read (no lock-upgrade deadlock); on PostgreSQL it
    makes no difference.

    ``write_on_demand=True`` (a web request, which may or may not write, and may open its own
    write scopes meanwhile): on SQLite, reads run outside a transaction until the first write,
    which begins IMMEDIATE, so concurrent requests wait for the lock instead of failing with
    "database is locked", and a request holds no lock while it only reads.
    """
    factory = session_factory()
    engine = get_engine()
    if write_on_demand and not write and is_sqlite(engine):
        # Bound for the session's life, so it holds after a commit in the middle of a route.
        session = factory(bind=engine.execution_options(sqlite_begin=ON_FIRST_WRITE))
    else:
        session = factory()
    if write and is_sqlite(engine):
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def insert_ignoring_duplicates(session: Session, table: Any, rows: list[dict[str, Any]]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING on either dialect: idempotent writes for tasks that
    may run twice (acks_late) or side by side on overlapping rows.

    Returns how many rows were new (RETURNING the primary key, batched by SQLAlchemy's
    insertmanyvalues on both dialects), so a task run twice does not count its work twice.
    """
    if not rows:
        return 0
    if is_sqlite(session.get_bind()):  # type: ignore[arg-type]
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    statement = dialect_insert(table).on_conflict_do_nothing()
    statement = statement.returning(*table.primary_key.columns)
    return len(session.execute(statement, rows).all())
