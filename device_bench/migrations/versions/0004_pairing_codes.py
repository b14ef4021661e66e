"""pairing_codes: single-use codes the browser runner exchanges for a device token (issue 9).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

Databases made by create_all after the browser runner landed already have the table (they are
stamped 0002 as made before migrations, then upgraded): it is created only where missing.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("pairing_codes"):
        return
    op.create_table(
        "pairing_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("token_id", sa.String(16), sa.ForeignKey("tokens.id"), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("pairing_codes")
