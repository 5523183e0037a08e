"""Every page and JSON GET on a million triples: which one makes a researcher wait?

Why: the hot path and the corpus browser have their own benches, but a researcher also opens
the home page, the teacher's runs, the campaign form, the critic page and the student page, and
each of those reads the corpus somewhere (its sources, its counts). A query that scans every
triple costs nothing on the demo's 900 and seconds on a real corpus. Target: every staff page
and JSON GET under 200 ms on PostgreSQL with a million triples.

What: a scratch PostgreSQL database (``skd_bench_pages_<random>``, dropped at the end) gets the
schema from the Alembic chain and the corpus browser bench's data (1,000,000 triples, an active
critic version with a score for each, an imported label on every 50th, a campaign over 2,000),
plus three finished teacher runs that wrote 100,000 of the triples. Then every GET route of the
app (path parameters filled with the ids above) is requested in-process through FastAPI's test
client, signed in as an admin: the median of 5 after one warm-up, and the status code.

How to run (PostgreSQL at 127.0.0.1:5432, user postgres, trust auth)::

    .venv/bin/python bench/pages_bench.py -n 1000000
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scratch_pg import scratch_database  # noqa: E402 - after the path is set

PASSWORD = "bench password 1"
# What each path parameter is filled with; a route with any other parameter is left out.
PARAMS = {
    "campaign_id": "1",
    "run_id": "1",
    "version_id": "1",
    "fmt": "csv",
    "share_token": "bench",
}
SKIP = (
    "/healthz",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/login",
    "/logout",
    "/static",
    "/vendor",
)


def add_runs(libpq: str) -> None:
    """Three finished teacher runs; run 1 wrote triples 1..100,000 (as ``teacher-run-1``)."""
    import psycopg

    with psycopg.connect(libpq) as conn:
        conn.execute(
            "INSERT INTO teacher_runs (id, backend, model, params, state, counts, created_at,"
            " kind, templates, finished_at) SELECT i, 'openai', 'bench-model', '{}', 'succeeded',"
            " '{}', now(), 'events', '{}', now() FROM generate_series(1, 3) AS i"
        )
        conn.execute("SELECT setval('teacher_runs_id_seq', 3)")
        conn.execute(
            "UPDATE triples SET teacher_run_id = 1, source = 'teacher-run-1' WHERE id <= 100000"
        )
        conn.commit()
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def get_routes(app) -> list[str]:  # type: ignore[no-untyped-def]
    """Every GET route whose parameters ``PARAMS`` can fill, filled."""
    from fastapi.routing import APIRoute

    def walk(routes):  # type: ignore[no-untyped-def]
        for route in routes:  # FastAPI wraps an included router; ours have no prefix
            if isinstance(route, APIRoute):
                yield route
            elif hasattr(route, "original_router"):
                yield from walk(route.original_router.routes)

    paths = []
    for route in walk(app.routes):
        if "GET" not in route.methods:
            continue
        if route.path.startswith(SKIP):
            continue
        names = re.findall(r"{(\w+)(?::\w+)?}", route.path)
        if any(name not in PARAMS for name in names):
            continue
        path = re.sub(r"{(\w+)(?::\w+)?}", lambda m: PARAMS[m.group(1)], route.path)
        paths.append(path)
    return sorted(set(paths))


def watch_statements(engine, slow_ms: float, found: list[tuple[float, str]]) -> None:  # type: ignore[no-untyped-def]
    """Record each statement that took longer than ``slow_ms`` (to name a slow page's query)."""
    from sqlalchemy import event

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        conn.info["bench_started"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _end(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        ms = (time.perf_counter() - conn.info.pop("bench_started")) * 1000
        if ms > slow_ms:
            found.append((round(ms), statement))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--slow-ms",
        type=float,
        default=0,
        help="also print each SQL statement of a route that took longer than this (0: none)",
    )
    args = parser.parse_args()
    from browse_bench import load

    with scratch_database("pages") as scratch:
        libpq, url = scratch.libpq, scratch.url
        os.environ["SKD_BROKER_URL"] = "redis://127.0.0.1:6379/9"
        os.environ["SKD_RESULT_BACKEND"] = "redis://127.0.0.1:6379/9"
        from fastapi.testclient import TestClient

        from app.core import db
        from app.core.accounts import create_staff
        from app.core.config import get_settings
        from app.core.migrate import upgrade
        from app.core.models import Role
        from app.main import create_app

        upgrade(url)
        start = time.perf_counter()
        import psycopg

        load(libpq, args.n)
        add_runs(libpq)
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute("ANALYZE")  # as autovacuum would have, on a database in use
        took = time.perf_counter() - start
        print(f"loaded {args.n:,} triples, scores, labels, runs in {took:.0f} s")
        settings = get_settings()
        db.configure(settings)
        with db.session_scope(write=True) as session:
            create_staff(session, "bench", PASSWORD, Role.admin)
        app = create_app(settings)
        slow: list[tuple[float, str]] = []
        if args.slow_ms:
            watch_statements(db.get_engine(), args.slow_ms, slow)
        with TestClient(app) as client:
            page = client.get("/login")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            answer = client.post(
                "/login",
                data={"username": "bench", "password": PASSWORD, "csrf_token": csrf, "next": "/"},
                follow_redirects=False,
            )
            assert answer.status_code == 303, answer.text
            print(f"\n| GET | status | median ms (of {args.runs}) |")
            print("|---|---:|---:|")
            for path in get_routes(app):
                first = client.get(path)
                samples = []
                for _ in range(args.runs):
                    start = time.perf_counter()
                    client.get(path)
                    samples.append((time.perf_counter() - start) * 1000)
                print(f"| `{path}` | {first.status_code} | {statistics.median(samples):.1f} |")
                for ms, statement in sorted(set(slow), reverse=True)[:5]:
                    print(f"|   {ms:.0f} ms: `{' '.join(statement.split())[:160]}` | | |")
                slow.clear()
        print_active_learning_plan(args.runs)
    return 0


def print_active_learning_plan(runs: int) -> None:
    """The campaign form's plan for an active-learning campaign split equally per source:
    how many unlabelled triples each source has (a POST, so not among the GETs above)."""
    from app.annotation.campaigns import CampaignSpec, source_shares
    from app.core import db
    from app.core.models import CampaignPurpose

    spec = CampaignSpec(
        name="plan", purpose=CampaignPurpose.training, sample_size=500, source_balance="equal"
    )
    samples = []
    with db.session_scope() as session:
        for _ in range(runs + 1):
            start = time.perf_counter()
            shares = source_shares(session, spec, unlabelled_only=True)
            samples.append((time.perf_counter() - start) * 1000)
    median = statistics.median(samples[1:])
    print(f"| active-learning plan, unlabelled per source {shares} | – | {median:.1f} |")


if __name__ == "__main__":
    raise SystemExit(main())
