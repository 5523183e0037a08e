"""server processes: which web servers, workers and beats are running against this database

- ``server_processes``: each ``skd serve``, ``skd worker`` and ``skd beat`` keeps a row fresh
  while it runs (kind, host, pid, the queues it sends to or takes, its broker without the
  password). The jobs page warns when no live worker takes the queue the web server sends to,
  or when two beats run; ``skd db restore`` refuses while any of them is alive.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "server_processes",
        sa.Column("id", BigId, nullable=False),
        sa.Column("instance", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", sa.String(length=500), nullable=False),
        sa.Column("broker", sa.String(length=500), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_server_processes")),
        sa.UniqueConstraint("instance", name=op.f("uq_server_processes_instance")),
    )
    op.create_index("ix_server_processes_seen_at", "server_processes", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_server_processes_seen_at", table_name="server_processes")
    op.drop_table("server_processes")
