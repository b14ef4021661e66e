"""The store as `metadata.create_all` made it before migrations (commit 0a748da).

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Frozen: this is the schema databases created before migrations have (status String(8)); an
existing database without an `alembic_version` table is stamped at this revision or 0002 by
`device_bench.migrations` (see `legacy_revision`).
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "reports",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=False, unique=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("device", sa.String(401), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("runtime", sa.String(32), nullable=False),
        sa.Column("runtime_version", sa.String(200), nullable=False),
        sa.Column("accelerator", sa.String(64), nullable=False),
        sa.Column("emulated", sa.Boolean, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("family", sa.String(32), nullable=False),
        sa.Column("precision", sa.String(8), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("samples_kind", sa.String(16), nullable=False),
        sa.Column("n_samples", sa.Integer, nullable=False),
        sa.Column("median_ms", sa.Float, nullable=True),
        sa.Column("mean_ms", sa.Float, nullable=True),
        sa.Column("macs", sa.BigInteger, nullable=True),
        sa.Column("token_id", sa.String(16), sa.ForeignKey("tokens.id"), nullable=True),
        sa.Column("samples_json", sa.Text, nullable=False),
        sa.Column("report_json", sa.Text, nullable=False),
    )
    op.create_index("ix_reports_group", "reports", ["device", "runtime", "accelerator", "model"])
    op.create_index("ix_reports_created", "reports", ["created_at", "id"])


def downgrade() -> None:
    op.drop_table("reports")
    op.drop_table("tokens")
    op.drop_table("devices")
