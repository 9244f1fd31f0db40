"""Accounts an operator disabled: they keep their data and cannot log in.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # when `pgwarden user disable` ran; null: the account may log in
    op.execute("ALTER TABLE users ADD COLUMN disabled_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE users DROP COLUMN disabled_at")
