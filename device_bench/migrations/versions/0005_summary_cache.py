"""summary_cache: the exact statistics of summary windows, kept across restarts (issue 11).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

One row per computed `summarize` / `compare` result, content-addressed: `key` is the sha256 of the
statistics version and the ordered run ids the result was computed from (see
device_bench.summary.persist_key). Reports are never updated or deleted and run ids are unique,
so a key names one fixed set of samples forever; a row can be missing (recomputed) but never
stale. Nothing to backfill: the table starts empty and fills on the first summary.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "summary_cache",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("summary_cache")
