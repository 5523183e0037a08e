"""student: trained student models, and which system wrote each triple of an evaluation

``student_models``: one row per student training (export, base model, arguments, state, folder,
dev loss per epoch, wall time). ``evaluation_outputs``: for an ``evaluation`` campaign, the
systems (student models, the teacher, human references) that wrote each of its triples, so a
triple written by several systems is rated once and credited to each.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.models

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "student_models",
        sa.Column("id", _ID, nullable=False),
        sa.Column("export_id", _ID, nullable=True),
        sa.Column("base_model", sa.String(length=500), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "queued",
                "training",
                "ready",
                "failed",
                "cancelled",
                name="student_state",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("path", sa.String(length=1000), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("wall_seconds", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("job_id", _ID, nullable=True),
        sa.Column("created_by_id", _ID, nullable=True),
        sa.Column("created_at", app.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", app.core.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["export_id"],
            ["exports.id"],
            name=op.f("fk_student_models_export_id_exports"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_student_models_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_student_models_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_student_models")),
    )
    op.create_table(
        "evaluation_outputs",
        sa.Column("id", _ID, nullable=False),
        sa.Column("campaign_id", _ID, nullable=False),
        sa.Column("triple_id", _ID, nullable=False),
        sa.Column("system", sa.String(length=100), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_evaluation_outputs_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["triple_id"],
            ["triples.id"],
            name=op.f("fk_evaluation_outputs_triple_id_triples"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_outputs")),
        sa.UniqueConstraint(
            "campaign_id",
            "system",
            "triple_id",
            name=op.f("uq_evaluation_outputs_campaign_id_system_triple_id"),
        ),
    )
    with op.batch_alter_table("evaluation_outputs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_evaluation_outputs_triple_id"), ["triple_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("evaluation_outputs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evaluation_outputs_triple_id"))
    op.drop_table("evaluation_outputs")
    op.drop_table("student_models")
