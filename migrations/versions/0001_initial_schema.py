"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 02:35:10.396305
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.models

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "annotator",
                "researcher",
                "admin",
                name="role",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("username", sa.String(length=150), nullable=True),
        sa.Column("display_name", sa.String(length=200), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("platform", sa.String(length=20), nullable=True),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("excluded", sa.Boolean(), nullable=False),
        sa.Column("created_at", app.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", app.core.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("platform", "external_id", name=op.f("uq_users_platform_external_id")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_users_token_hash")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "purpose",
            sa.Enum(
                "calibration",
                "training",
                "evaluation",
                name="campaign_purpose",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column(
            "state",
            sa.Enum(
                "draft",
                "open",
                "paused",
                "closed",
                name="campaign_state",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("ratings_per_item", sa.SmallInteger(), nullable=False),
        sa.Column("lease_seconds", sa.Integer(), nullable=False),
        sa.Column("guidelines", sa.Text(), nullable=False),
        sa.Column("answer_scale", sa.JSON(), nullable=False),
        sa.Column("selection", sa.JSON(), nullable=False),
        sa.Column("gold_rate", sa.Float(), nullable=False),
        sa.Column("quota_per_annotator", sa.Integer(), nullable=True),
        sa.Column("min_gold_accuracy", sa.Float(), nullable=False),
        sa.Column("speeder_seconds", sa.Float(), nullable=False),
        sa.Column("completion_code", sa.String(length=100), nullable=True),
        sa.Column("redirect_url", sa.String(length=1000), nullable=True),
        sa.Column("share_token", sa.String(length=64), nullable=False),
        sa.Column(
            "created_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", app.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", app.core.models.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "gold_rate >= 0 AND gold_rate <= 1", name=op.f("ck_campaigns_gold_rate_fraction")
        ),
        sa.CheckConstraint(
            "ratings_per_item >= 1", name=op.f("ck_campaigns_ratings_per_item_positive")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_campaigns_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("share_token", name=op.f("uq_campaigns_share_token")),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "queued",
                "running",
                "succeeded",
                "failed",
                "cancelled",
                name="job_state",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("done", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("celery_id", sa.String(length=155), nullable=True),
        sa.Column(
            "created_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", app.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", app.core.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", app.core.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", app.core.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_jobs_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_kind_state"), ["kind", "state"], unique=False)

    op.create_table(
        "critic_versions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("base_model", sa.String(length=500), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "training",
                "ready",
                "active",
                "failed",
                "retired",
                name="critic_state",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("label_snapshot", sa.JSON(), nullable=False),
        sa.Column("hyperparameters", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", app.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("activated_at", app.core.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_critic_versions_job_id_jobs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_critic_versions")),
    )
    with op.batch_alter_table("critic_versions", schema=None) as batch_op:
        batch_op.create_index(
            "uq_critic_versions_one_active",
            ["state"],
            unique=True,
            postgresql_where=sa.text("state = 'active'"),
            sqlite_where=sa.text("state = 'active'"),
        )

    op.create_table(
        "teacher_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("backend", sa.String(length=50), nullable=False),
        sa.Column("model", sa.String(length=500), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "queued",
                "running",
                "succeeded",
                "failed",
                name="teacher_run_state",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "created_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", app.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_teacher_runs_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_teacher_runs_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teacher_runs")),
    )
    op.create_table(
        "exports",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "critic_version_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("split_seed", sa.Integer(), nullable=False),
        sa.Column("formats", sa.JSON(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=True),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "created_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", app.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_exports_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["critic_version_id"],
            ["critic_versions.id"],
            name=op.f("fk_exports_critic_version_id_critic_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_exports_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exports")),
    )
    op.create_table(
        "triples",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("head", sa.Text(), nullable=False),
        sa.Column("relation", sa.String(length=40), nullable=False),
        sa.Column("tail", sa.Text(), nullable=False),
        sa.Column("norm_hash", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("source_file", sa.String(length=500), nullable=True),
        sa.Column("source_line", sa.Integer(), nullable=True),
        sa.Column("split", sa.String(length=20), nullable=True),
        sa.Column(
            "teacher_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("meta", sa.JSON(), nullable=True),
        sa.Column("created_at", app.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["teacher_run_id"],
            ["teacher_runs.id"],
            name=op.f("fk_triples_teacher_run_id_teacher_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_triples")),
        sa.UniqueConstraint("norm_hash", name=op.f("uq_triples_norm_hash")),
    )
    with op.batch_alter_table("triples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_triples_head"), ["head"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_triples_relation_id"), ["relation", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_triples_source_id"), ["source", "id"], unique=False)

    op.create_table(
        "campaign_items",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "triple_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("ratings_needed", sa.SmallInteger(), nullable=False),
        sa.Column("ratings_done", sa.SmallInteger(), nullable=False),
        sa.Column("leases_active", sa.SmallInteger(), nullable=False),
        sa.Column("sort_key", sa.Float(), nullable=False),
        sa.Column("is_gold", sa.Boolean(), nullable=False),
        sa.Column("gold_answer", sa.SmallInteger(), nullable=True),
        sa.CheckConstraint("leases_active >= 0", name=op.f("ck_campaign_items_leases_nonnegative")),
        sa.CheckConstraint(
            "ratings_done <= ratings_needed", name=op.f("ck_campaign_items_not_overfilled")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_items_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["triple_id"],
            ["triples.id"],
            name=op.f("fk_campaign_items_triple_id_triples"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_items")),
        sa.UniqueConstraint(
            "campaign_id", "triple_id", name=op.f("uq_campaign_items_campaign_id_triple_id")
        ),
    )
    with op.batch_alter_table("campaign_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_campaign_items_triple_id"), ["triple_id"], unique=False
        )
    # The hot path's index (autogenerate cannot compare expression indexes, so it is written
    # by hand): open items of a campaign, closest to done first, then the sampling order.
    op.create_index(
        "ix_campaign_items_open",
        "campaign_items",
        ["campaign_id", "is_gold", sa.text("ratings_done DESC"), "sort_key"],
        postgresql_where=sa.text("ratings_done + leases_active < ratings_needed"),
        sqlite_where=sa.text("ratings_done + leases_active < ratings_needed"),
    )

    op.create_table(
        "scores",
        sa.Column(
            "critic_version_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "triple_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("p_accept", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["critic_version_id"],
            ["critic_versions.id"],
            name=op.f("fk_scores_critic_version_id_critic_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["triple_id"],
            ["triples.id"],
            name=op.f("fk_scores_triple_id_triples"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("critic_version_id", "triple_id", name=op.f("pk_scores")),
    )
    with op.batch_alter_table("scores", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_scores_critic_version_id_p_accept"),
            ["critic_version_id", "p_accept"],
            unique=False,
        )

    op.create_table(
        "assignments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "annotator_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "state",
            sa.Enum(
                "leased",
                "submitted",
                "skipped",
                "released",
                name="assignment_state",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("leased_at", app.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("leased_until", app.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["annotator_id"],
            ["users.id"],
            name=op.f("fk_assignments_annotator_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_assignments_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["campaign_items.id"],
            name=op.f("fk_assignments_item_id_campaign_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignments")),
        sa.UniqueConstraint(
            "item_id", "annotator_id", name=op.f("uq_assignments_item_id_annotator_id")
        ),
    )
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_assignments_annotator_id_campaign_id_state"),
            ["annotator_id", "campaign_id", "state"],
            unique=False,
        )
        batch_op.create_index(
            "ix_assignments_live_leases",
            ["leased_until"],
            unique=False,
            postgresql_where=sa.text("state = 'leased'"),
            sqlite_where=sa.text("state = 'leased'"),
        )

    op.create_table(
        "ratings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "triple_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "annotator_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "origin",
            sa.Enum(
                "campaign",
                "imported",
                name="rating_origin",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("answer", sa.SmallInteger(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("submission_id", sa.String(length=100), nullable=False),
        sa.Column("created_at", app.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["annotator_id"],
            ["users.id"],
            name=op.f("fk_ratings_annotator_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["campaign_items.id"],
            name=op.f("fk_ratings_item_id_campaign_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["triple_id"],
            ["triples.id"],
            name=op.f("fk_ratings_triple_id_triples"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ratings")),
        sa.UniqueConstraint(
            "item_id", "annotator_id", name=op.f("uq_ratings_item_id_annotator_id")
        ),
        sa.UniqueConstraint("submission_id", name=op.f("uq_ratings_submission_id")),
    )
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ratings_annotator_id_created_at"),
            ["annotator_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_ratings_triple_id"), ["triple_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ratings_triple_id"))
        batch_op.drop_index(batch_op.f("ix_ratings_annotator_id_created_at"))

    op.drop_table("ratings")
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_assignments_live_leases",
            postgresql_where=sa.text("state = 'leased'"),
            sqlite_where=sa.text("state = 'leased'"),
        )
        batch_op.drop_index(batch_op.f("ix_assignments_annotator_id_campaign_id_state"))

    op.drop_table("assignments")
    with op.batch_alter_table("scores", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scores_critic_version_id_p_accept"))

    op.drop_table("scores")
    op.drop_index("ix_campaign_items_open", table_name="campaign_items")
    with op.batch_alter_table("campaign_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_items_triple_id"))

    op.drop_table("campaign_items")
    with op.batch_alter_table("triples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_triples_source_id"))
        batch_op.drop_index(batch_op.f("ix_triples_relation_id"))
        batch_op.drop_index(batch_op.f("ix_triples_head"))

    op.drop_table("triples")
    op.drop_table("exports")
    op.drop_table("teacher_runs")
    with op.batch_alter_table("critic_versions", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_critic_versions_one_active",
            postgresql_where=sa.text("state = 'active'"),
            sqlite_where=sa.text("state = 'active'"),
        )

    op.drop_table("critic_versions")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_kind_state"))
        batch_op.drop_index(batch_op.f("ix_jobs_created_at"))

    op.drop_table("jobs")
    op.drop_table("campaigns")
    op.drop_table("users")
