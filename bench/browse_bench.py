"""Corpus browser benchmark: does a deep page cost what the first page costs on 1M triples?

Why: the browser (``app.annotation.browse``) pages by keyset, never by OFFSET, so page 20,000 should
be as fast as page 1. Target: first page and a deep page under 200 ms on PostgreSQL with a
million triples.

What: a scratch PostgreSQL database (``skd_bench_browse_<random>``, dropped at the end) gets the
schema from the Alembic chain, then N triples generated inside the database with
``generate_series`` (seven relations, two sources), an active critic version with a score for
every triple, an imported human label on every 50th triple, and a campaign over 2,000 triples.
Then ``browse_triples`` (the function behind ``/corpus/browse`` and ``/api/corpus/triples``,
rows and their details: scores, ratings, campaigns) is timed for a first page and a page 90% of
the way through, under several filters and orders: the median of 7 runs after one warm-up.
The deep cursor is made from the row at that position (found once with OFFSET, not timed).

How to run (PostgreSQL at 127.0.0.1:5432, user postgres, trust auth)::

    .venv/bin/python bench/browse_bench.py -n 1000000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scratch_pg import scratch_database  # noqa: E402 - after the path is set

RELATIONS = ("xAttr", "xEffect", "xIntent", "xNeed", "xReact", "xWant", "HinderedBy")


def load(libpq: str, n: int) -> None:
    import psycopg

    relations = "ARRAY[" + ",".join(f"'{r}'" for r in RELATIONS) + "]"
    with psycopg.connect(libpq) as conn:
        conn.execute(
            f"""
            INSERT INTO triples (id, head, relation, tail, norm_hash, source, source_file,
                                 source_line, created_at)
            SELECT i, 'PersonX does thing ' || (i / 5), ({relations})[1 + i %% 7],
                   'tail number ' || i, md5(i::text), CASE WHEN i %% 3 = 0 THEN 'human'
                   ELSE 'gpt3' END, 'gen.jsonl', i, now()
            FROM generate_series(1, %s) AS i
            """,
            (n,),
        )
        conn.execute("SELECT setval('triples_id_seq', %s)", (n,))
        conn.execute(
            "INSERT INTO critic_versions (id, base_model, state, label_snapshot, hyperparameters,"
            " metrics, created_at) VALUES (1, 'all-MiniLM-L6-v2', 'active', '{}', '{}', '{}',"
            " now())"
        )
        # a deterministic, evenly spread score per triple
        conn.execute(
            "INSERT INTO scores (critic_version_id, triple_id, p_accept) "
            "SELECT 1, id, ((id * 2654435761) % 1000003) / 1000003.0 FROM triples"
        )
        conn.execute(
            "INSERT INTO ratings (triple_id, origin, answer, submission_id, created_at) "
            "SELECT id, 'imported', CASE WHEN id % 100 = 0 THEN -2 ELSE 2 END, 'imp-' || id, "
            "now() FROM triples WHERE id % 50 = 0"
        )
        conn.execute(
            "INSERT INTO campaigns (id, name, purpose, state, ratings_per_item, lease_seconds,"
            " guidelines, answer_scale, selection, gold_rate, min_gold_accuracy,"
            " speeder_seconds, share_token, created_at) VALUES (1, 'bench', 'calibration',"
            " 'open', 3, 600, '', '[]', '{}', 0, 0.7, 2, 'bench', now())"
        )
        conn.execute(
            "INSERT INTO campaign_items (campaign_id, triple_id, ratings_needed, ratings_done,"
            " leases_active, sort_key, is_gold) SELECT 1, id, 3, 0, 0, 0, false FROM triples"
            " WHERE id % 500 = 7"
        )
        conn.commit()
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def timed(fn, runs: int = 7) -> float:  # type: ignore[no-untyped-def]
    fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=1_000_000)
    args = parser.parse_args()
    import psycopg

    with scratch_database("browse") as scratch:
        libpq, url = scratch.libpq, scratch.url
        from app.annotation.browse import BrowseFilters, browse_triples, encode_cursor
        from app.core import db
        from app.core.config import get_settings
        from app.core.migrate import upgrade

        upgrade(url)
        start = time.perf_counter()
        load(libpq, args.n)
        print(f"loaded {args.n:,} triples, scores, labels in {time.perf_counter() - start:.0f} s")
        db.configure(get_settings())
        cases = [
            ("all, by id", BrowseFilters(), "id"),
            ("all, newest first", BrowseFilters(sort="-id"), "-id"),
            ("all, highest score first", BrowseFilters(sort="-score"), "-score"),
            ("xWant from gpt3, by id", BrowseFilters(relations=["xWant"], sources=["gpt3"]), "id"),
            ("score 0.4-0.6, by id", BrowseFilters(score_min=0.4, score_max=0.6), "id"),
            ("accepted by people, by id", BrowseFilters(label="accepted"), "id"),
            ("in a campaign, by id", BrowseFilters(campaign="in"), "id"),
            ("text 'thing 1234', by id", BrowseFilters(text="thing 1234"), "id"),
            ("text 'number 99999' (tails), by id", BrowseFilters(text="number 99999"), "id"),
            ("text 'Thing 7', newest first", BrowseFilters(text="Thing 7", sort="-id"), "-id"),
            ("text 'does' (every row), by id", BrowseFilters(text="does"), "id"),
        ]
        print("| query | rows | first page (ms) | page at 90% (ms) |")
        print("|---|---:|---:|---:|")

        def run(cases) -> None:  # type: ignore[no-untyped-def]
            with db.session_scope() as session:
                for title, filters, sort in cases:
                    first = browse_triples(session, filters, limit=50)
                    total = _count(session, filters)
                    deep_cursor = _cursor_at(
                        session, filters, sort, int(total * 0.9), encode_cursor
                    )
                    first_ms = timed(lambda f=filters: browse_triples(session, f, limit=50))
                    deep = browse_triples(session, filters, after=deep_cursor, limit=50)
                    assert deep.rows and deep.rows[0].id != first.rows[0].id
                    deep_ms = timed(
                        lambda f=filters, c=deep_cursor: browse_triples(
                            session, f, after=c, limit=50
                        )
                    )
                    print(f"| {title} | {total:,} | {first_ms:.1f} | {deep_ms:.1f} |")

        run(cases)
        # The same text searches with the opt-in trigram indexes (`skd db text-index`).
        from app.core.text_index import create_text_indexes

        start = time.perf_counter()
        create_text_indexes(db.get_engine())
        print(f"\n`skd db text-index` built in {time.perf_counter() - start:.1f} s; with it:\n")
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute("ANALYZE triples")
        print("| query | rows | first page (ms) | page at 90% (ms) |")
        print("|---|---:|---:|---:|")
        run([case for case in cases if case[1].text])
    return 0


def _filtered_ids(session, filters):  # type: ignore[no-untyped-def]
    """The ids (and scores) the filters keep, in the filters' order (untimed, once per case)."""
    from sqlalchemy import text

    where = ["true"]
    if filters.relations:
        where.append("t.relation = ANY(:relations)")
    if filters.sources:
        where.append("t.source = ANY(:sources)")
    if filters.score_min is not None:
        where.append("s.p_accept >= :score_min")
    if filters.score_max is not None:
        where.append("s.p_accept <= :score_max")
    if filters.label == "accepted":
        where.append("EXISTS (SELECT 1 FROM ratings r WHERE r.triple_id = t.id AND r.answer > 0)")
    if filters.campaign == "in":
        where.append("EXISTS (SELECT 1 FROM campaign_items c WHERE c.triple_id = t.id)")
    if filters.text:
        where.append("(t.head ILIKE :pattern OR t.tail ILIKE :pattern)")
    order = {
        "id": "t.id",
        "-id": "t.id DESC",
        "-score": "s.p_accept DESC, t.id DESC",
        "score": "s.p_accept, t.id",
    }[filters.sort]
    sql = (
        "FROM triples t LEFT JOIN scores s ON s.triple_id = t.id AND s.critic_version_id = 1 "
        f"WHERE {' AND '.join(where)}"
    )
    params = {
        "relations": filters.relations,
        "sources": filters.sources,
        "score_min": filters.score_min,
        "score_max": filters.score_max,
        "pattern": f"%{filters.text}%",
    }
    return text(sql), text(order), params


def _count(session, filters) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    sql, _order, params = _filtered_ids(session, filters)
    return int(session.execute(text(f"SELECT count(*) {sql.text}"), params).scalar_one())


def _cursor_at(session, filters, sort, position, encode):  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    sql, order, params = _filtered_ids(session, filters)
    row = session.execute(
        text(f"SELECT t.id, s.p_accept {sql.text} ORDER BY {order.text} OFFSET :pos LIMIT 1"),
        {**params, "pos": position},
    ).one()
    return encode([row[1], row[0]] if "score" in sort else [row[0]])


if __name__ == "__main__":
    raise SystemExit(main())
