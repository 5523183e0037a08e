"""A scratch PostgreSQL database for a benchmark: created, pointed at, and dropped at the end.

The benches that need a big corpus or many people (browse, pages, people and jobs) load it
into a database of their own, so a bench never touches a real one and leaves nothing behind.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Scratch:
    name: str
    libpq: str  # for psycopg
    url: str  # for SQLAlchemy (SKD_DATABASE_URL)


@contextmanager
def scratch_database(kind: str) -> Iterator[Scratch]:
    """``skd_bench_<kind>_<random>`` on the local server, with ``SKD_DATABASE_URL`` (and a
    data dir and secret key, where unset) pointing at it for the app's code; dropped on the way
    out, whatever happened."""
    import psycopg

    name = f"skd_bench_{kind}_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    libpq = ADMIN.rsplit("/", 1)[0] + "/" + name
    scratch = Scratch(name, libpq, libpq.replace("postgresql://", "postgresql+psycopg://"))
    os.environ["SKD_DATABASE_URL"] = scratch.url
    os.environ.setdefault("SKD_DATA_DIR", f"/tmp/{name}")
    os.environ.setdefault("SKD_SECRET_KEY", secrets.token_urlsafe(48))
    try:
        yield scratch
    finally:
        from app.core import db

        db.dispose()
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"dropped {name}")
