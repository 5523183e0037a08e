"""triple counts: how many triples each (source, relation) has, kept by triggers

- ``triple_counts`` (source, relation, n): the staff pages read the corpus's size, its
  relations and its sources from here instead of counting every triple (about 100 ms per
  million triples on PostgreSQL, per count, per page). Triggers on ``triples`` keep it, so no
  writer (import, teacher, a restore, hand-written SQL) can forget it:
  - PostgreSQL: statement-level triggers with transition tables add one row of differences
    per (source, relation) per statement, and never update a shared row, so concurrent imports
    and teacher runs never wait on each other; ``app.core.triple_counts.compact`` sums the
    rows now and then. Readers sum by key.
  - SQLite (one writer at a time): row-level triggers keep one row per key, updated in place.
- ``ix_triples_teacher_run_id_id``, partial (``teacher_run_id IS NOT NULL``): a run's own
  triples (its sample, its campaign) without scanning the corpus; imported rows, which have no
  run, cost it nothing.

The table is filled from the triples already there, in the same transaction that creates the
triggers (on PostgreSQL ``CREATE TRIGGER`` waits for writers in flight and holds off new ones
until the commit, so no row is counted twice or missed).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

POSTGRES_TRIGGERS = """
CREATE FUNCTION skd_triple_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO triple_counts (source, relation, n)
    SELECT source, relation, count(*) FROM skd_new GROUP BY source, relation;
    RETURN NULL;
END $$;

CREATE FUNCTION skd_triple_counts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO triple_counts (source, relation, n)
    SELECT source, relation, -count(*) FROM skd_old GROUP BY source, relation;
    RETURN NULL;
END $$;

CREATE FUNCTION skd_triple_counts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO triple_counts (source, relation, n)
    SELECT source, relation, sum(d) FROM (
        SELECT o.source, o.relation, -1 AS d FROM skd_old o JOIN skd_new w ON w.id = o.id
        WHERE (o.source, o.relation) IS DISTINCT FROM (w.source, w.relation)
        UNION ALL
        SELECT w.source, w.relation, 1 AS d FROM skd_old o JOIN skd_new w ON w.id = o.id
        WHERE (o.source, o.relation) IS DISTINCT FROM (w.source, w.relation)
    ) AS moved
    GROUP BY source, relation HAVING sum(d) <> 0;
    RETURN NULL;
END $$;

CREATE FUNCTION skd_triple_counts_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM triple_counts;
    RETURN NULL;
END $$;

CREATE TRIGGER triple_counts_inserted AFTER INSERT ON triples
    REFERENCING NEW TABLE AS skd_new FOR EACH STATEMENT
    EXECUTE FUNCTION skd_triple_counts_inserted();
CREATE TRIGGER triple_counts_deleted AFTER DELETE ON triples
    REFERENCING OLD TABLE AS skd_old FOR EACH STATEMENT
    EXECUTE FUNCTION skd_triple_counts_deleted();
CREATE TRIGGER triple_counts_updated AFTER UPDATE ON triples
    REFERENCING OLD TABLE AS skd_old NEW TABLE AS skd_new FOR EACH STATEMENT
    EXECUTE FUNCTION skd_triple_counts_updated();
CREATE TRIGGER triple_counts_truncated AFTER TRUNCATE ON triples
    FOR EACH STATEMENT EXECUTE FUNCTION skd_triple_counts_truncated();
"""

# One row per key, changed in place, made when the update found none (inside a trigger,
# changes() is the count of the trigger's own previous statement).
_SQLITE_ADD = """
    UPDATE triple_counts SET n = n + 1 WHERE source = NEW.source AND relation = NEW.relation;
    INSERT INTO triple_counts (source, relation, n)
    SELECT NEW.source, NEW.relation, 1 WHERE changes() = 0;
"""
_SQLITE_TAKE = """
    UPDATE triple_counts SET n = n - 1 WHERE source = OLD.source AND relation = OLD.relation;
"""
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER triple_counts_inserted AFTER INSERT ON triples BEGIN {_SQLITE_ADD} END",
    f"CREATE TRIGGER triple_counts_deleted AFTER DELETE ON triples BEGIN {_SQLITE_TAKE} END",
    "CREATE TRIGGER triple_counts_updated AFTER UPDATE OF source, relation ON triples"
    " WHEN OLD.source IS NOT NEW.source OR OLD.relation IS NOT NEW.relation"
    f" BEGIN {_SQLITE_TAKE} {_SQLITE_ADD} END",
]
FILL = (
    "INSERT INTO triple_counts (source, relation, n)"
    " SELECT source, relation, count(*) FROM triples GROUP BY source, relation"
)


def upgrade() -> None:
    op.create_table(
        "triple_counts",
        sa.Column("id", BigId, nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("relation", sa.String(length=40), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_triple_counts")),
    )
    op.create_index("ix_triple_counts_source_relation", "triple_counts", ["source", "relation"])
    op.create_index(
        "ix_triples_teacher_run_id_id",
        "triples",
        ["teacher_run_id", "id"],
        postgresql_where=sa.text("teacher_run_id IS NOT NULL"),
        sqlite_where=sa.text("teacher_run_id IS NOT NULL"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_TRIGGERS)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)
    op.execute(FILL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in ("inserted", "deleted", "updated", "truncated"):
            op.execute(f"DROP TRIGGER triple_counts_{name} ON triples")
            op.execute(f"DROP FUNCTION skd_triple_counts_{name}()")
    else:
        for name in ("inserted", "deleted", "updated"):
            op.execute(f"DROP TRIGGER triple_counts_{name}")
    op.drop_index("ix_triples_teacher_run_id_id", table_name="triples")
    op.drop_index("ix_triple_counts_source_relation", table_name="triple_counts")
    op.drop_table("triple_counts")
