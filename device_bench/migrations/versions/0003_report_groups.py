"""Report groups and binary samples: summaries read only the window they show.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

* `report_groups`: one row per (device, runtime, accelerator, model, precision, emulated, status),
  the partition the summary windows over, with `n_reports` kept in the same transaction as every
  report insert; `reports.group_id` points to it and the index (group_id, created_at, id) gives a
  group's latest runs without reading the others.
* `reports.samples`: the raw samples as little-endian float64 bytes (exactly the floats of the
  report: JSON numbers are IEEE doubles) instead of a JSON text column, so a summary does not
  parse JSON; `samples_json` is dropped.
Existing rows are backfilled here.
"""

import hashlib
import json
from array import array

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

KEYS = ("device", "runtime", "accelerator", "model", "precision", "emulated", "status")
CHUNK = 5000


def _key_hash(values) -> str:
    # Frozen copy of device_bench.store.group_key_hash (a test checks they agree).
    d, rt, acc, model, precision, emulated, status = values
    return hashlib.sha256(json.dumps([d, rt, acc, model, precision, bool(emulated), status]).encode()).hexdigest()


def _key_values(values) -> dict:
    out = dict(zip(KEYS, values))
    out["emulated"] = bool(out["emulated"])  # SQLite hands back 0/1
    return out


def _f64(samples: list[float]) -> bytes:
    a = array("d", samples)
    if a.itemsize != 8 or array("H", [1]).tobytes() != b"\x01\x00":
        raise RuntimeError("this migration assumes a little-endian IEEE float64 host")
    return a.tobytes()


def upgrade() -> None:
    groups = op.create_table(
        "report_groups",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("device", sa.String(401), nullable=False),
        sa.Column("runtime", sa.String(32), nullable=False),
        sa.Column("accelerator", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("precision", sa.String(8), nullable=False),
        sa.Column("emulated", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("n_reports", sa.BigInteger, nullable=False),
    )
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("group_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("samples", sa.LargeBinary, nullable=True))

    conn = op.get_bind()
    reports = sa.table("reports", sa.column("id"), sa.column("samples_json"), sa.column("group_id"),
                       sa.column("samples"), *(sa.column(k) for k in KEYS))
    ids: dict[str, int] = {}
    last = 0
    while True:
        rows = conn.execute(
            sa.select(reports.c.id, reports.c.samples_json, *(reports.c[k] for k in KEYS))
            .where(reports.c.id > last).order_by(reports.c.id).limit(CHUNK)
        ).all()
        if not rows:
            break
        last = rows[-1][0]
        updates = []
        for r in rows:
            h = _key_hash(r[2:])
            if h not in ids:
                ids[h] = conn.execute(
                    groups.insert().values(key_hash=h, n_reports=0, **_key_values(r[2:])).returning(groups.c.id)
                ).scalar_one()
            updates.append({"rid": r[0], "gid": ids[h], "blob": _f64(json.loads(r[1]))})
        conn.execute(
            reports.update().where(reports.c.id == sa.bindparam("rid"))
            .values(group_id=sa.bindparam("gid"), samples=sa.bindparam("blob")),
            updates,
        )
    counts = sa.select(sa.func.count()).select_from(reports).where(reports.c.group_id == groups.c.id).scalar_subquery()
    conn.execute(groups.update().values(n_reports=counts))

    with op.batch_alter_table("reports") as batch:
        batch.alter_column("group_id", existing_type=sa.Integer, nullable=False)
        batch.alter_column("samples", existing_type=sa.LargeBinary, nullable=False)
        batch.create_foreign_key("fk_reports_group_id", "report_groups", ["group_id"], ["id"])
        batch.drop_column("samples_json")
    op.create_index("ix_reports_window", "reports", ["group_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_reports_window", "reports")
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("samples_json", sa.Text, nullable=True))
    conn = op.get_bind()
    reports = sa.table("reports", sa.column("id"), sa.column("samples"), sa.column("samples_json"))
    for rid, blob in conn.execute(sa.select(reports.c.id, reports.c.samples)).all():
        conn.execute(reports.update().where(reports.c.id == rid)
                     .values(samples_json=json.dumps(array("d", bytes(blob)).tolist())))
    with op.batch_alter_table("reports") as batch:
        batch.drop_constraint("fk_reports_group_id", type_="foreignkey")
        batch.drop_column("group_id")
        batch.drop_column("samples")
        batch.alter_column("samples_json", existing_type=sa.Text, nullable=False)
    op.drop_table("report_groups")
