"""critic training lock: at most one version in state 'training'

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("critic_versions", schema=None) as batch_op:
        batch_op.create_index(
            "uq_critic_versions_one_training",
            ["state"],
            unique=True,
            postgresql_where=sa.text("state = 'training'"),
            sqlite_where=sa.text("state = 'training'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("critic_versions", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_critic_versions_one_training",
            postgresql_where=sa.text("state = 'training'"),
            sqlite_where=sa.text("state = 'training'"),
        )
