"""hardening: campaign admissions, one live lease per annotator, rate-limit events, session
epochs and the answering session of each rating

- ``annotator_campaigns``: which campaigns an annotator entered (share link) or was invited to;
  every annotate route checks it. Annotators who already have assignments in a campaign are
  admitted to it, so work in progress carries on after the upgrade.
- ``uq_assignments_one_live_lease``: at most one live lease per annotator per campaign (extra
  live leases left by earlier races are released first, with their items' lease counters).
- ``throttle_events``: failed logins and new crowd accounts, counted per account and address.
- ``users.session_epoch``: logout and password changes revoke every earlier session cookie.
- ``ratings.session_nonce``: only the browser session that gave an answer may see or change it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_LIVE = sa.text("state = 'leased'")


def upgrade() -> None:
    op.create_table(
        "annotator_campaigns",
        sa.Column("campaign_id", _ID, nullable=False),
        sa.Column("annotator_id", _ID, nullable=False),
        sa.Column("via", sa.String(length=20), nullable=False),
        sa.Column("entered_at", app.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["annotator_id"],
            ["users.id"],
            name=op.f("fk_annotator_campaigns_annotator_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_annotator_campaigns_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "annotator_id", name=op.f("pk_annotator_campaigns")),
    )
    op.create_index(
        op.f("ix_annotator_campaigns_annotator_id"),
        "annotator_campaigns",
        ["annotator_id"],
        unique=False,
    )
    op.execute(
        "INSERT INTO annotator_campaigns (campaign_id, annotator_id, via, entered_at) "
        "SELECT campaign_id, annotator_id, 'link', MIN(leased_at) FROM assignments "
        "GROUP BY campaign_id, annotator_id"
    )
    op.create_table(
        "throttle_events",
        sa.Column("id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("at", app.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_throttle_events")),
    )
    op.create_index(
        op.f("ix_throttle_events_kind_key_at"),
        "throttle_events",
        ["kind", "key", "at"],
        unique=False,
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("session_epoch", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_nonce", sa.String(length=64), nullable=True))
    # Extra live leases (only a race could have made them): keep each annotator's oldest.
    extra = (
        "SELECT id FROM assignments a WHERE state = 'leased' AND EXISTS (SELECT 1 FROM "
        "assignments b WHERE b.state = 'leased' AND b.campaign_id = a.campaign_id AND "
        "b.annotator_id = a.annotator_id AND b.id < a.id)"
    )
    op.execute(
        "UPDATE campaign_items SET leases_active = leases_active - (SELECT COUNT(*) FROM "
        f"assignments x WHERE x.item_id = campaign_items.id AND x.id IN ({extra})) "
        f"WHERE id IN (SELECT item_id FROM assignments WHERE id IN ({extra}))"
    )
    op.execute(f"UPDATE assignments SET state = 'released' WHERE id IN ({extra})")
    op.create_index(
        "uq_assignments_one_live_lease",
        "assignments",
        ["campaign_id", "annotator_id"],
        unique=True,
        postgresql_where=_LIVE,
        sqlite_where=_LIVE,
    )


def downgrade() -> None:
    op.drop_index(
        "uq_assignments_one_live_lease",
        table_name="assignments",
        postgresql_where=_LIVE,
        sqlite_where=_LIVE,
    )
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.drop_column("session_nonce")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("session_epoch")
    op.drop_index(op.f("ix_throttle_events_kind_key_at"), table_name="throttle_events")
    op.drop_table("throttle_events")
    op.drop_index(op.f("ix_annotator_campaigns_annotator_id"), table_name="annotator_campaigns")
    op.drop_table("annotator_campaigns")
