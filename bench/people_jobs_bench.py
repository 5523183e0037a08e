"""Jobs page and people page benchmark: do the two admin pages stay quick on a busy deployment?

Why: ``/jobs`` lists the newest jobs with a filter (``app.core.job_list.list_jobs``) and the
people page lists annotators with their ratings, campaigns and quality flags
(``app.annotation.people.annotator_rows``, which runs the per-campaign quality query for every
campaign those annotators rated in). Targets on PostgreSQL with 100,000 jobs and 2,000
annotators who gave 60,000 ratings in 3 campaigns: the jobs list under 100 ms with any filter,
the annotator list under 1 s (its quality flags re-run each campaign's quality query, the one
the campaign page shows, so they cost what those queries cost).

What: a scratch PostgreSQL database (``skd_bench_people_<random>``, dropped at the end) gets the
schema from the Alembic chain and rows generated inside the database (``generate_series``):
jobs of four kinds in five states, 20,000 triples, 3 campaigns of 5,000 items each, 2,000
prolific annotators admitted to one campaign each, 30 ratings per annotator. Then the functions
behind the pages are timed: the median of 7 runs after one warm-up. The page's own query count
is constant in the number of rows shown (one query for jobs; four plus one per campaign for
annotators).

How to run (PostgreSQL at 127.0.0.1:5432, user postgres, trust auth)::

    .venv/bin/python bench/people_jobs_bench.py --jobs 100000 --annotators 2000
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scratch_pg import scratch_database  # noqa: E402 - after the path is set


def load(libpq: str, jobs: int, annotators: int) -> None:
    import psycopg

    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO jobs (kind, state, done, total, message, params, started_by, created_at,
                              started_at, finished_at)
            SELECT (ARRAY['import','export','critic_score','critic_train'])[g %% 4 + 1],
                   (ARRAY['queued','running','succeeded','failed','cancelled'])[g %% 5 + 1],
                   g %% 1000, 1000, 'work',
                   json_build_object('version_id', g %% 9, 'export_id', g,
                                     'names', json_build_array('file' || g || '.tsv')),
                   (ARRAY['web','api','cli (bench)','beat'])[g %% 4 + 1],
                   now() - make_interval(secs => %(n)s - g), now() - make_interval(secs => 60),
                   CASE WHEN g %% 5 >= 2 THEN now() END
            FROM generate_series(1, %(n)s) g
            """,
            {"n": jobs},
        )
        conn.execute(
            """
            INSERT INTO triples (head, relation, tail, norm_hash, source, created_at)
            SELECT 'PersonX does ' || g, 'xWant', 'to rest ' || g, md5(g::text), 'bench', now()
            FROM generate_series(1, 20000) g
            """
        )
        conn.execute(
            """
            INSERT INTO users (role, platform, external_id, is_active, excluded, created_at,
                               last_seen_at, session_epoch)
            SELECT 'annotator', 'prolific', 'w' || g, true, false, now(),
                   now() - make_interval(secs => g), 0
            FROM generate_series(1, %(n)s) g
            """,
            {"n": annotators},
        )
        campaign_ids = []
        for c in range(3):
            campaign_ids.append(
                conn.execute(
                    """
                    INSERT INTO campaigns (name, purpose, state, ratings_per_item, lease_seconds,
                        guidelines, answer_scale, selection, gold_rate, min_gold_accuracy,
                        speeder_seconds, share_token, created_at)
                    VALUES (%(name)s, 'calibration', 'open', 50, 600, '', '[]', '{}', 0, 0.7,
                            2.0, %(token)s, now())
                    RETURNING id
                    """,
                    {"name": f"bench campaign {c + 1}", "token": secrets.token_hex(16)},
                ).fetchone()[0]
            )
            conn.execute(
                """
                INSERT INTO campaign_items (campaign_id, triple_id, ratings_needed, ratings_done,
                                            leases_active, sort_key, is_gold)
                SELECT %(c)s, id, 50, 0, 0, random(), false
                FROM triples WHERE id %% 4 = %(mod)s LIMIT 5000
                """,
                {"c": campaign_ids[-1], "mod": c},
            )
        conn.execute(
            """
            WITH items AS (
                SELECT id, triple_id, campaign_id,
                       row_number() OVER (PARTITION BY campaign_id ORDER BY id) AS rn
                FROM campaign_items),
            people AS (
                SELECT id, row_number() OVER (ORDER BY id) AS rk FROM users
                WHERE role = 'annotator')
            INSERT INTO ratings (triple_id, item_id, annotator_id, origin, answer, seconds,
                                 submission_id, created_at)
            SELECT i.triple_id, i.id, p.id, 'campaign',
                   CASE WHEN (i.id + p.id) %% 3 = 0 THEN -2 ELSE 2 END,
                   CASE WHEN p.rk %% 10 = 0 THEN 0.8 ELSE 4.0 END,
                   md5(i.id || ':' || p.id), now()
            FROM people p
            JOIN items i ON i.campaign_id = (%(ids)s::bigint[])[p.rk %% 3 + 1]
                        AND i.rn BETWEEN (p.rk * 7) %% 4900 + 1 AND (p.rk * 7) %% 4900 + 30
            """,
            {"ids": campaign_ids},
        )
        conn.execute(
            """
            INSERT INTO annotator_campaigns (campaign_id, annotator_id, via, entered_at)
            SELECT DISTINCT i.campaign_id, r.annotator_id, 'link', now()
            FROM ratings r JOIN campaign_items i ON i.id = r.item_id
            """
        )
        conn.execute("ANALYZE")


def timed(work) -> float:  # type: ignore[no-untyped-def]
    work()
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        work()
        runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--annotators", type=int, default=2_000)
    args = parser.parse_args()
    with scratch_database("people") as scratch:
        libpq, url = scratch.libpq, scratch.url
        from sqlalchemy import func, select

        from app.annotation.agreement import campaign_agreement
        from app.annotation.annotators import annotator_quality
        from app.annotation.people import annotator_rows, quality_flags
        from app.core import db
        from app.core.config import get_settings
        from app.core.job_list import list_jobs
        from app.core.migrate import upgrade
        from app.core.models import Rating
        from app.core.people import list_invitations

        upgrade(url)
        start = time.perf_counter()
        load(libpq, args.jobs, args.annotators)
        db.configure(get_settings())
        with db.session_scope() as session:
            ratings = session.scalar(select(func.count()).select_from(Rating))
        print(
            f"loaded {args.jobs:,} jobs, {args.annotators:,} annotators, {ratings:,} ratings "
            f"in {time.perf_counter() - start:.0f} s"
        )
        cases = [
            ("/jobs: newest 100", lambda s: list_jobs(s, limit=100)),
            ("/jobs?kind=export", lambda s: list_jobs(s, kind="export", limit=100)),
            ("/jobs?state=failed", lambda s: list_jobs(s, state="failed", limit=100)),
            (
                "/jobs?kind=import&state=running",
                lambda s: list_jobs(s, kind="import", state="running", limit=100),
            ),
            ("people: 500 annotators with flags", lambda s: annotator_rows(s, 500)),
            ("people: invitations", lambda s: list_invitations(s)),
            ("  of which the quality flags (3 campaigns)", lambda s: quality_flags(s, {1, 2, 3})),
            ("a campaign page's annotator table (campaign 1)", lambda s: annotator_quality(s, 1)),
            ("a campaign page's agreement (campaign 1)", lambda s: campaign_agreement(s, 1)),
        ]
        print("| what | ms (median of 7) |")
        print("|---|---:|")
        with db.session_scope() as session:
            rows, _total = annotator_rows(session, 500)
            flagged = sum(1 for row in rows if row.flags)
            for title, work in cases:
                print(f"| {title} | {timed(lambda w=work: w(session)):.1f} |")
        print(f"({flagged} of the 500 annotators shown carry a quality flag)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
