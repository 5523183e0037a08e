"""crowd platforms: the ids Prolific and MTurk send with each arrival (crowd_visits)

- ``crowd_visits``: one row per arrival of a crowdworker through a campaign's link, with
  Prolific's ``STUDY_ID`` / ``SESSION_ID`` and MTurk's ``assignmentId`` / ``hitId`` /
  ``turkSubmitTo``; the ratings download names the arrival each rating was made in, and the
  completion page posts an MTurk assignment back to ``turkSubmitTo``.

The corpus browser (#16) needs no schema change: its keyset pages run on the existing
indexes (``triples`` primary key, ``scores (critic_version_id, p_accept)``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "crowd_visits",
        sa.Column("id", BigId, nullable=False),
        sa.Column("campaign_id", BigId, nullable=False),
        sa.Column("annotator_id", BigId, nullable=False),
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("study_id", sa.String(length=200), nullable=True),
        sa.Column("session_id", sa.String(length=200), nullable=True),
        sa.Column("assignment_id", sa.String(length=200), nullable=True),
        sa.Column("hit_id", sa.String(length=200), nullable=True),
        sa.Column("submit_to", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_crowd_visits_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["annotator_id"],
            ["users.id"],
            name=op.f("fk_crowd_visits_annotator_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crowd_visits")),
    )
    op.create_index(
        "ix_crowd_visits_campaign_id_annotator_id_created_at",
        "crowd_visits",
        ["campaign_id", "annotator_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_crowd_visits_campaign_id_annotator_id_created_at", table_name="crowd_visits")
    op.drop_table("crowd_visits")
