"""The web UI's sessions, so that logging out ends a session on every replica (storage/sessions.py).

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ui_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user", sa.String(length=255), nullable=False),
        sa.Column("started", sa.Float(), nullable=False),
        sa.Column("expires", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ui_sessions")),
    )
    op.create_index("ix_ui_sessions_user", "ui_sessions", ["user"], unique=False)
    op.create_index("ix_ui_sessions_expires", "ui_sessions", ["expires"], unique=False)


def downgrade() -> None:
    op.drop_table("ui_sessions")
