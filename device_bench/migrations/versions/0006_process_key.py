"""reports.process_key: which host-runner process of which session a report is (issue 14).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

The host runner measures every artifact in K fresh worker processes and notes each report's
session (one per invocation) and process index; process p of every model of a session ran in the
same batch, so the summary pairs reports on "<session>/<process>" (drift that hit both models
cancels in their ratio, as in the `freenet compare` headline). NULL for reports without both
notes (phones, browsers, a single-process run). Existing rows are backfilled from report_json.
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CHUNK = 5000
MAX_LEN = 200


def _key(report_json: str) -> str | None:
    # Frozen copy of device_bench.store.process_key (a test checks they agree).
    notes = json.loads(report_json).get("notes") or {}
    session, process = notes.get("session"), notes.get("process")
    if not session or process is None:
        return None
    key = f"{session}/{process}"
    return key if len(key) <= MAX_LEN else None


def upgrade() -> None:
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("process_key", sa.String(MAX_LEN), nullable=True))
    conn = op.get_bind()
    reports = sa.table("reports", sa.column("id"), sa.column("report_json"), sa.column("process_key"))
    last = 0
    while True:
        rows = conn.execute(sa.select(reports.c.id, reports.c.report_json).where(reports.c.id > last)
                            .order_by(reports.c.id).limit(CHUNK)).all()
        if not rows:
            break
        last = rows[-1][0]
        keys = [{"rid": rid, "key": k} for rid, text in rows if (k := _key(text)) is not None]
        if keys:
            conn.execute(reports.update().where(reports.c.id == sa.bindparam("rid")).values(process_key=sa.bindparam("key")), keys)


def downgrade() -> None:
    with op.batch_alter_table("reports") as batch:
        batch.drop_column("process_key")
