"""Test set-up: a real database and a real Celery worker for each backend.

``SKD_TEST_BACKEND=sqlite`` (default): a SQLite file and Celery's SQLAlchemy transport.
``SKD_TEST_BACKEND=postgres``: a fresh PostgreSQL database (created here, dropped at the end)
and Redis as the broker. ``SKD_TEST_REQUIRE_SERVICES=1`` (set by the test script and CI) turns
"PostgreSQL/Redis unreachable" into a failure instead of a skip.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Models load from local folders only (the packaged MiniLM, tiny models built in tests).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BACKEND = os.environ.get("SKD_TEST_BACKEND", "sqlite")
PG_ADMIN_URL = os.environ.get("SKD_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("SKD_TEST_REDIS", "redis://127.0.0.1:6379")
REQUIRE = os.environ.get("SKD_TEST_REQUIRE_SERVICES") == "1"
ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
OUTPUT = ROOT / "test-output"

assert BACKEND in ("sqlite", "postgres"), f"SKD_TEST_BACKEND={BACKEND!r}: use sqlite or postgres"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def pytest_report_header(config: pytest.Config) -> str:
    return f"SKD backend: {BACKEND}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On PostgreSQL, leave out the tests marked ``one_backend``: what they check (a real
    model's output, how a page looks and behaves in the browser, the embedded demo) is the
    same whatever database is underneath, and the SQLite pass has already run them. The
    database and queue under every door keep their tests on both backends."""
    if BACKEND != "postgres":
        return
    once = [item for item in items if item.get_closest_marker("one_backend")]
    if once:
        config.hook.pytest_deselected(items=once)
        items[:] = [item for item in items if not item.get_closest_marker("one_backend")]


def shared_file(name: str) -> Path:
    """A file of ../shared/data, or skip the test cleanly where it is absent."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(scope="session")
def test_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment of this test session: also exported, so subprocesses (the CLI) see it too."""
    data_dir = tmp_path_factory.mktemp("skd-data")
    env = {
        "SKD_DATA_DIR": str(data_dir),
        "SKD_SECRET_KEY": "test-secret-" + secrets.token_hex(16),
        "SKD_DEMO": "0",
        # The tests train tiny models or the packaged MiniLM, never the quality preset's mpnet.
        "SKD_CRITIC_PRESET": "fast",
        # A queue of its own: workers of other sessions on the same broker never take its tasks.
        "SKD_CELERY_QUEUE": f"skd-test-{uuid.uuid4().hex[:8]}",
    }
    dropper = None
    if BACKEND == "postgres":
        if not (_reachable("127.0.0.1", 5432) and _reachable("127.0.0.1", 6379)):
            if REQUIRE:
                pytest.fail("PostgreSQL (5432) or Redis (6379) is not reachable on 127.0.0.1")
            pytest.skip("PostgreSQL or Redis not reachable")
        import psycopg

        name = f"skd_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

        def dropper() -> None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        env["SKD_DATABASE_URL"] = f"{base}/{name}"
        env["SKD_BROKER_URL"] = f"{REDIS_URL}/2"
        env["SKD_RESULT_BACKEND"] = f"{REDIS_URL}/3"
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    from app.core.config import get_settings

    get_settings.cache_clear()
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        from app.core import db

        if db._engine is not None:
            db._engine.dispose()
        if dropper is not None:
            dropper()


@pytest.fixture(scope="session")
def settings(test_env: dict[str, str]):  # type: ignore[no-untyped-def]
    from app.core import db, migrate, queue
    from app.core.config import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    migrate.upgrade(settings.database)
    db.configure(settings)
    queue.configure(settings)
    return settings


@pytest.fixture
def engine(settings):  # type: ignore[no-untyped-def]
    from app.core.db import get_engine

    engine = get_engine()
    yield engine
    _wipe(engine)


def _wipe(engine) -> None:  # type: ignore[no-untyped-def]
    """Empty every table between tests (much faster than re-creating the database).

    A test may end with a job still queued or running (it only checked the 202). Its message
    is dropped and a job already running in the worker thread is waited for first: with
    ``RESTART IDENTITY`` a stale message for job 3 would otherwise run the next test's job 3,
    and a job's transaction racing the TRUNCATE's table locks ends in a deadlock."""
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from app.core.db import is_postgres
    from app.core.models import Base

    _quiesce_queue()
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    for attempt in range(20):
        try:
            with engine.begin() as conn:
                if is_postgres(engine):
                    conn.execute(text("SET LOCAL lock_timeout = '5s'"))
                    conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
                else:
                    for table in tables:
                        conn.execute(text(f"DELETE FROM {table}"))
            return
        except OperationalError:  # deadlock / lock timeout with a straggling job: again
            if attempt == 19:
                raise
            _quiesce_queue()
            time.sleep(0.5)


def _quiesce_queue(timeout: float = 60.0) -> None:
    """Drop this session's pending messages and wait for the in-process worker to go idle."""
    import time

    from celery.worker import state

    from app.core.queue import celery_app

    with celery_app.connection_for_write() as connection:
        connection.default_channel.queue_purge(celery_app.conf.task_default_queue)
    deadline = time.monotonic() + timeout
    while (state.active_requests or state.reserved_requests) and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture(scope="session")
def celery_app_for_tests(settings):  # type: ignore[no-untyped-def]
    """The one Celery app (``app.core.queue``), on this backend's broker and this session's
    queue (SKD_CELERY_QUEUE), with the worker's tasks loaded."""
    from app.core import queue
    from workers.celery_app import celery_app

    assert celery_app is queue.celery_app
    return queue.configure(settings)


@pytest.fixture(scope="session")
def celery_worker(celery_app_for_tests):  # type: ignore[no-untyped-def]
    """A real Celery worker (in a thread) consuming this session's queue."""
    from celery.contrib.testing.worker import start_worker

    with start_worker(
        celery_app_for_tests,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        shutdown_timeout=20,
    ) as worker:
        yield worker


@pytest.fixture
def db_session(engine):  # type: ignore[no-untyped-def]
    from app.core.db import session_factory

    session = session_factory()()
    yield session
    session.rollback()
    session.close()


@pytest.fixture
def app(settings, engine):  # type: ignore[no-untyped-def]
    from app.main import create_app

    return create_app(settings)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        yield client


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(client) -> str:  # type: ignore[no-untyped-def]
    page = client.get("/login")
    match = _CSRF.search(page.text)
    assert match, "login page has no CSRF field"
    return match.group(1)


def make_staff(username: str = "ada", password: str = "correct horse", role: str = "researcher"):  # type: ignore[no-untyped-def]
    from app.core.accounts import create_staff
    from app.core.db import session_scope
    from app.core.models import Role

    with session_scope(write=True) as session:
        return create_staff(session, username, password, Role(role)).id


def login(client, username: str = "ada", password: str = "correct horse") -> str:  # type: ignore[no-untyped-def]
    """Log ``client`` in through the real form; returns the session's CSRF token."""
    token = csrf_of(client)
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return csrf_of(client)


@pytest.fixture
def staff_client(client):  # type: ignore[no-untyped-def]
    make_staff()
    client.headers["X-CSRF-Token"] = login(client)
    return client


ADMIN_PASSWORD = "a long password"


@pytest.fixture
def admin_client(client):  # type: ignore[no-untyped-def]
    """``client`` signed in as the admin ``root`` (password ``ADMIN_PASSWORD``)."""
    make_staff("root", ADMIN_PASSWORD, "admin")
    client.headers["X-CSRF-Token"] = login(client, "root", ADMIN_PASSWORD)
    return client


def add_triples(
    n: int,
    head: str = "PersonX does thing {i}",
    tail: str = "to rest {i}",
    relation: str = "xWant",
    source: str = "t",
) -> list[int]:
    """``n`` distinct triples written straight to the database; returns their ids."""
    from app.core.db import session_scope
    from app.core.models import Triple

    with session_scope(write=True) as session:
        triples = [
            Triple(
                head=head.format(i=i),
                relation=relation,
                tail=tail.format(i=i),
                norm_hash=uuid.uuid4().hex,
                source=source,
            )
            for i in range(n)
        ]
        session.add_all(triples)
        session.flush()
        return [t.id for t in triples]


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT with the packaged MiniLM's tokenizer, saved like a hub model."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from app.core.config import packaged_minilm_path

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=2,
    )
    # The same starting weights in every session, whatever ran before: a training test that
    # fails does so on every run, not once in forty.
    with torch.random.fork_rng():
        torch.manual_seed(20221)
        model = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
