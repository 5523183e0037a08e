"""jobs and people: who started each job; deactivated accounts; revocable, re-showable invitations

- ``jobs.started_by``: the door a job came through ("web", "api", "cli (alice)", "beat",
  "worker"), next to ``created_by_id`` (the signed-in user, when there is one).
- ``users.deactivated_at``: when an admin switched the account off (``is_active`` false).
- ``users.invite_salt`` / ``users.invite_revoked_at``: an invitation link is derived from the
  server's secret key and this salt (see ``app.core.accounts``), so admins can copy it again;
  a new salt issues a new link, revoking clears the token hash.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # --- people (#11 point 7) ---
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("invite_salt", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("invite_revoked_at", sa.DateTime(timezone=True), nullable=True)
        )
    # --- who started a job (#11 point 6) ---
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("started_by", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("started_by")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("invite_revoked_at")
        batch_op.drop_column("invite_salt")
        batch_op.drop_column("deactivated_at")
