"""Schema migrations of the aggregator's database (Alembic), configured in code.

This package owns every change to the store's tables: `versions/` holds one Alembic revision per
change, the first being the schema that `create_all` made before migrations existed. `upgrade`
brings a database to the newest revision in one transaction, under a lock (SQLite: BEGIN
IMMEDIATE; PostgreSQL: an advisory lock), so two processes starting together migrate once.
A database made before migrations (tables, no `alembic_version`) is recognised by its columns
and stamped at the revision it matches before upgrading. `ensure_schema` is what `Store` calls:
it upgrades when allowed (the embedded SQLite default, or an empty database) and otherwise refuses
with the command to run, so a team's PostgreSQL is never migrated behind the operator's back.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text

HEAD = "0006"  # the newest revision; a test checks it against versions/
VERSIONS_DIR = Path(__file__).parent / "versions"
_PG_LOCK_KEY = 0x46524545_4E4554  # pg_advisory_xact_lock key: "FREENET"


class SchemaOutOfDate(RuntimeError):
    """The database is at an older revision and this process may not upgrade it."""


def alembic_config(connection: Connection | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["connection"] = connection
    return cfg


def legacy_revision(conn: Connection) -> str | None:
    """The revision a database made before migrations matches (no alembic_version table):
    None when it has no tables (a new database), "0001" when reports.status is String(8),
    "0002" for the wider status of the last create_all schema."""
    insp = inspect(conn)
    tables = set(insp.get_table_names())
    if "alembic_version" in tables or "reports" not in tables:
        return None
    cols = {c["name"]: c for c in insp.get_columns("reports")}
    if "group_id" in cols:
        raise RuntimeError("the reports table has group_id but no alembic_version: not a schema this "
                           "version knows; stamp it by hand (`alembic stamp`) after checking it")
    length = getattr(cols["status"]["type"], "length", None)
    return "0001" if length == 8 else "0002"


def current_revision(conn: Connection) -> str | None:
    """The database's revision; None for a database without migrations (new or legacy)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _is_empty(conn: Connection) -> bool:
    return not inspect(conn).get_table_names()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Upgrade to `revision` in one locked transaction; returns the revision it started from
    ("0001"/"0002" for a stamped legacy database, None for a new one)."""
    from alembic import command

    # sqlite_immediate: take SQLite's write lock at BEGIN, before alembic reads the version.
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        cfg = alembic_config(conn)
        start = current_revision(conn)
        if start is None:
            start = legacy_revision(conn)
            if start is not None:
                command.stamp(cfg, start)
        command.upgrade(cfg, revision)
    return start


def ensure_schema(engine: Engine, *, auto_upgrade: bool) -> None:
    """Make sure the database is at HEAD: upgrade it when `auto_upgrade` or when it is empty,
    else raise SchemaOutOfDate naming the command that upgrades it."""
    with engine.connect() as conn:
        rev = current_revision(conn)
        if rev == HEAD:
            return
        empty = rev is None and _is_empty(conn)
        legacy = legacy_revision(conn) if rev is None else None
    if auto_upgrade or empty:
        upgrade(engine)
        return
    raise SchemaOutOfDate(
        f"the database {engine.url.render_as_string(hide_password=True)} is at schema revision "
        f"{rev or (legacy and legacy + ' (made before migrations)')}, this version needs {HEAD}: back it up, then "
        f"run `freenet db upgrade --db URL`"
    )
