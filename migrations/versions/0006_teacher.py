"""teacher runs: what a run is, its events and its finished chunks

- ``teacher_runs``: ``kind`` (events, or inferences for picked heads), the ``templates`` as
  run, ``error`` and ``finished_at`` (the table itself came with the initial schema, as did
  ``triples.teacher_run_id``, the provenance link of every generated triple).
- ``teacher_events``: the events a run wrote (unique per run on the corpus's normalized key),
  with their mean log-probability, chunk and few-shot examples.
- ``teacher_chunks``: one row per finished chunk, written with the chunk's output, so a
  re-delivered chunk task is skipped and an unfinished one runs again without duplicates.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("teacher_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=20), server_default="events", nullable=False)
        )
        batch_op.add_column(
            sa.Column("templates", sa.JSON(), server_default=sa.text("'{}'"), nullable=False)
        )
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("finished_at", app.core.models.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "teacher_events",
        sa.Column("id", _ID, nullable=False),
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("norm_key", sa.String(length=32), nullable=False),
        sa.Column("logprob", sa.Float(), nullable=True),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("examples", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["teacher_runs.id"],
            name=op.f("fk_teacher_events_run_id_teacher_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teacher_events")),
        sa.UniqueConstraint("run_id", "norm_key", name=op.f("uq_teacher_events_run_id_norm_key")),
    )
    op.create_table(
        "teacher_chunks",
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("phase", sa.String(length=20), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("finished_at", app.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["teacher_runs.id"],
            name=op.f("fk_teacher_chunks_run_id_teacher_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "phase", "index", name=op.f("pk_teacher_chunks")),
    )


def downgrade() -> None:
    op.drop_table("teacher_chunks")
    op.drop_table("teacher_events")
    with op.batch_alter_table("teacher_runs", schema=None) as batch_op:
        batch_op.drop_column("finished_at")
        batch_op.drop_column("error")
        batch_op.drop_column("templates")
        batch_op.drop_column("kind")
