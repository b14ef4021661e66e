"""Report storage: SQLAlchemy 2 tables, idempotent ingest, queries, device tokens.

This module owns the database: a SQLite file by default (WAL mode, so concurrent readers never
block the one writer) or PostgreSQL by URL (`postgresql+psycopg://...`). Every report is stored
whole (its JSON, raw samples included) plus the columns the dashboard filters and groups on.
Ingest is idempotent on `run_id` (INSERT ... ON CONFLICT DO NOTHING), so a client retrying after a
lost response never double counts. Device tokens are stored only as sha256 hashes and can be
revoked. `Store` is the small Python API used by the server and, embedded, by the host runner.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Column,
    Text,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from device_bench.schema import Report, parse_report
from device_bench.stats import summarize

DEFAULT_DB_DIR = Path("freenet-data")
TOKEN_PREFIX = "fnt_"

metadata = MetaData()

devices = Table(
    "devices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("device_id", Integer, ForeignKey("devices.id"), nullable=False),
    # Only the sha256 of the token: a leaked database does not leak usable tokens.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

reports = Table(
    "reports",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("run_id", String(36), nullable=False, unique=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("device", String(401), nullable=False),
    Column("platform", String(16), nullable=False),
    Column("runtime", String(32), nullable=False),
    Column("runtime_version", String(200), nullable=False),
    Column("accelerator", String(64), nullable=False),
    Column("emulated", Boolean, nullable=False),
    Column("model", String(200), nullable=False),
    Column("family", String(32), nullable=False),
    Column("precision", String(8), nullable=False),
    Column("format", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("samples_kind", String(16), nullable=False),
    Column("n_samples", Integer, nullable=False),
    Column("median_ms", Float, nullable=True),
    Column("mean_ms", Float, nullable=True),
    Column("macs", BigInteger, nullable=True),
    Column("token_id", String(16), ForeignKey("tokens.id"), nullable=True),
    # Raw samples on their own so statistics never parse the whole report.
    Column("samples_json", Text, nullable=False),
    Column("report_json", Text, nullable=False),
    Index("ix_reports_group", "device", "runtime", "accelerator", "model"),
    Index("ix_reports_created", "created_at", "id"),  # newest-first listing without a sort
)

# Short-lived, single-use pairing codes of the browser runner (device_bench/web.py): a QR code's
# URL carries one; the page exchanges it once for a device token. Only the code's sha256 is kept.
pairing_codes = Table(
    "pairing_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
    Column("token_id", String(16), ForeignKey("tokens.id"), nullable=True),  # the token it became
)

FAMILIES = (("freenet_", "FreeNet"), ("starnet_", "StarNet"), ("mobilenet", "MobileNet"))
_FAMILY_LABELS = {"freenet": "FreeNet", "starnet": "StarNet", "mobilenet": "MobileNet"}  # the manifest's family ids


def model_family(name: str) -> str:
    """FreeNet / StarNet / MobileNet from the model name prefix, else "other"."""
    low = name.lower()
    for prefix, family in FAMILIES:
        if low.startswith(prefix):
            return family
    return "other"


def device_label(report: Report) -> str:
    """"Google Pixel 8": the manufacturer is dropped when the model name already starts with it."""
    man, model = report.device.manufacturer.strip(), report.device.model.strip()
    return model if model.lower().startswith(man.lower()) else f"{man} {model}"


def default_db_url() -> str:
    return f"sqlite:///{(DEFAULT_DB_DIR / 'freenet.db').resolve()}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PairingRefused(Exception):
    """A pairing code that cannot be exchanged (unknown, expired, already used)."""


@dataclass(frozen=True)
class TokenInfo:
    id: str
    device: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class ReportRow:
    """The indexed columns of one stored report (no samples)."""

    run_id: str
    created_at: datetime
    received_at: datetime
    device: str
    platform: str
    runtime: str
    runtime_version: str
    accelerator: str
    emulated: bool
    model: str
    family: str
    precision: str
    format: str
    status: str
    samples_kind: str
    n_samples: int
    median_ms: float | None
    mean_ms: float | None
    macs: int | None

    def as_dict(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["created_at"] = _iso(self.created_at)
        d["received_at"] = _iso(self.received_at)
        d["url"] = f"/reports/{self.run_id}"
        return d


def _iso(t: datetime) -> str:
    return _utc(t).isoformat().replace("+00:00", "Z")


def _utc(t: datetime) -> datetime:
    # SQLite returns naive datetimes (stored as UTC text); PostgreSQL returns aware ones.
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


_ROW_COLUMNS = [reports.c[name] for name in ReportRow.__dataclass_fields__]


def _row(r: Any) -> ReportRow:
    d = dict(r._mapping)
    d["created_at"], d["received_at"] = _utc(d["created_at"]), _utc(d["received_at"])
    return ReportRow(**d)


class Store:
    """Reports, devices and tokens in one SQL database.

    `Store()` opens (and creates) the default SQLite file under ./freenet-data/;
    `Store("postgresql+psycopg://user:pw@127.0.0.1:5432/db")` a PostgreSQL database.
    Thread-safe: the server calls it from many worker threads.
    """

    def __init__(self, url: str | None = None, *, pool_size: int = 10, max_overflow: int = 30):
        self.url = url or default_db_url()
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database URL {parsed!r}: use sqlite:///PATH or postgresql+psycopg://...")
        if self.dialect == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                raise ValueError("use a SQLite file (sqlite:///PATH): an in-memory database is not shared between threads")
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            # timeout: wait up to 30 s for the write lock instead of failing with "database is locked".
            self.engine: Engine = create_engine(
                self.url, pool_size=pool_size, max_overflow=max_overflow,
                connect_args={"timeout": 30, "check_same_thread": False},
            )
            _configure_sqlite(self.engine)
        else:
            self.engine = create_engine(
                self.url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True
            )
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        # On SQLite, take the write lock at BEGIN (IMMEDIATE): a deferred transaction that reads
        # first and writes later can fail with SQLITE_BUSY instead of waiting for the lock.
        with self.engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
            yield conn

    # ---- reports -------------------------------------------------------------------------

    def add_report(self, report: Report | dict[str, Any] | str | bytes, *, token_id: str | None = None) -> bool:
        """Store one report; True when new, False when its run_id was already stored."""
        # RETURNING tells reliably whether a row was inserted (rowcount is driver-dependent).
        stmt = self._insert().values(**_values(parse_report(report), token_id)).returning(reports.c.id)
        with self._write() as conn:
            return conn.execute(stmt).first() is not None

    def add_reports(self, batch: list[Report | dict[str, Any]], *, token_id: str | None = None) -> int:
        """Store many reports in one transaction (bulk import); returns how many were new."""
        rows = [_values(parse_report(r), token_id) for r in batch]
        if not rows:
            return 0
        with self._write() as conn:
            return len(conn.execute(self._insert().returning(reports.c.id), rows).all())

    def add_batch(self, batch: list[Report], *, token_id: str | None = None) -> list[bool]:
        """Store validated reports in one transaction; per item, True when new, False when its
        run_id was stored before (or earlier in the same batch): idempotent per run id."""
        rows = [_values(r, token_id) for r in batch]
        if not rows:
            return []
        with self._write() as conn:
            inserted = {r[0] for r in conn.execute(self._insert().returning(reports.c.run_id), rows).all()}
        out, seen = [], set()
        for row in rows:
            rid = row["run_id"]
            out.append(rid in inserted and rid not in seen)
            seen.add(rid)
        return out

    def _insert(self):
        insert = (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(reports)
        return insert.on_conflict_do_nothing(index_elements=["run_id"])

    def get_report(self, run_id: str) -> Report | None:
        with self.engine.connect() as conn:
            text = conn.execute(select(reports.c.report_json).where(reports.c.run_id == str(run_id))).scalar()
        return None if text is None else Report.model_validate_json(text)

    def count(self, **filters: Any) -> int:
        stmt = _filtered(select(func.count()).select_from(reports), filters)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def query(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        model: str | None = None,
        device: str | None = None,
        runtime: str | None = None,
        accelerator: str | None = None,
        platform: str | None = None,
        status: str | None = None,
        emulated: bool | None = None,
    ) -> list[ReportRow]:
        """Stored reports, newest first, filtered by exact column values."""
        if not 1 <= limit <= 10_000:
            raise ValueError(f"limit must be in 1..10000, got {limit}")
        filters = dict(model=model, device=device, runtime=runtime, accelerator=accelerator,
                       platform=platform, status=status, emulated=emulated)
        stmt = _filtered(select(*_ROW_COLUMNS), filters)
        stmt = stmt.order_by(reports.c.created_at.desc(), reports.c.id.desc()).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(stmt)]

    def distinct(self, column: str) -> list[str]:
        col = reports.c[column]
        with self.engine.connect() as conn:
            return [v for (v,) in conn.execute(select(col).distinct().order_by(col))]

    def group_samples(self, *, max_runs: int = 50, **filters: Any) -> list[dict[str, Any]]:
        """The latest `max_runs` reports of every (device, runtime, accelerator, model, precision,
        emulated, status) group, with their raw samples: the input of `device_bench.summary`."""
        keys = [reports.c.device, reports.c.runtime, reports.c.accelerator, reports.c.model,
                reports.c.precision, reports.c.emulated, reports.c.status]
        rn = func.row_number().over(partition_by=keys, order_by=(reports.c.created_at.desc(), reports.c.id.desc()))
        inner = _filtered(
            select(*keys, reports.c.run_id, reports.c.family, reports.c.samples_kind, reports.c.mean_ms,
                   reports.c.macs, reports.c.created_at, reports.c.samples_json, rn.label("rn")),
            filters,
        ).subquery()
        stmt = select(inner).where(inner.c.rn <= max_runs)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(stmt)]
        for r in rows:
            r["samples"] = json.loads(r.pop("samples_json"))
            r["created_at"] = _utc(r["created_at"])
        return rows

    def summary(self, *, baseline: str | None = None, max_runs: int = 50, with_ratios: bool = True, **filters: Any):
        """Per device x runtime x accelerator statistics and ratios (see device_bench.summary)."""
        from device_bench.summary import summarize_groups

        return summarize_groups(self.group_samples(max_runs=max_runs, **filters), baseline=baseline,
                                with_ratios=with_ratios)

    # ---- devices and tokens --------------------------------------------------------------

    def create_token(self, device: str) -> tuple[TokenInfo, str]:
        """A new token for `device` (created if new). The token text is returned only here."""
        device = device.strip()
        if not device or len(device) > 200:
            raise ValueError("device name must be 1..200 characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(timezone.utc)
        token_id = "tok_" + secrets.token_hex(6)
        with self._write() as conn:
            device_id = conn.execute(select(devices.c.id).where(devices.c.name == device)).scalar()
            if device_id is None:
                device_id = conn.execute(
                    devices.insert().values(name=device, created_at=now).returning(devices.c.id)
                ).scalar_one()
            conn.execute(tokens.insert().values(id=token_id, device_id=device_id,
                                                token_hash=hash_token(token), created_at=now))
        return TokenInfo(token_id, device, now, None), token

    def _token_select(self):
        return select(tokens.c.id, devices.c.name, tokens.c.created_at, tokens.c.revoked_at).join(
            devices, devices.c.id == tokens.c.device_id
        )

    @staticmethod
    def _info(r: Any) -> TokenInfo:
        return TokenInfo(r[0], r[1], _utc(r[2]), None if r[3] is None else _utc(r[3]))

    def list_tokens(self) -> list[TokenInfo]:
        with self.engine.connect() as conn:
            return [self._info(r) for r in conn.execute(self._token_select().order_by(tokens.c.created_at))]

    def lookup_token(self, token: str) -> TokenInfo | None:
        """The token's record (check `.revoked`), or None when it is unknown."""
        with self.engine.connect() as conn:
            r = conn.execute(self._token_select().where(tokens.c.token_hash == hash_token(token))).first()
        return None if r is None else self._info(r)

    def revoke_token(self, token_or_id: str) -> TokenInfo:
        """Revoke by token text or by id ("tok_..."); raises KeyError when neither matches."""
        cond = tokens.c.id == token_or_id if token_or_id.startswith("tok_") else tokens.c.token_hash == hash_token(token_or_id)
        with self._write() as conn:
            r = conn.execute(self._token_select().where(cond)).first()
            if r is None:
                raise KeyError(f"no token with id or value {token_or_id[:8]}...; see `freenet token list`")
            if r[3] is None:
                conn.execute(tokens.update().where(tokens.c.id == r[0]).values(revoked_at=datetime.now(timezone.utc)))
            r = conn.execute(self._token_select().where(tokens.c.id == r[0])).first()
        return self._info(r)

    # ---- pairing codes (browser runner) --------------------------------------------------

    def create_pairing_code(self, ttl_s: int = 900) -> tuple[str, datetime]:
        """A new single-use code valid for `ttl_s` seconds; returns (code, expires_at)."""
        if not 10 <= ttl_s <= 7 * 86400:
            raise ValueError(f"pairing code lifetime must be 10 s .. 7 days, got {ttl_s} s")
        code = secrets.token_hex(5)  # 10 hex digits: short enough to type, 2^40 guesses
        now = datetime.now(timezone.utc)
        expires = now + timedelta(seconds=ttl_s)
        with self._write() as conn:
            conn.execute(pairing_codes.insert().values(code_hash=hash_token(code), created_at=now, expires_at=expires))
        return code, expires

    def redeem_pairing_code(self, code: str, device: str) -> tuple[TokenInfo, str]:
        """Exchange a pairing code for a new device token, once. Raises PairingRefused (unknown,
        expired or already used) with a message for the person holding the phone."""
        now = datetime.now(timezone.utc)
        h = hash_token(code.strip().lower())
        with self._write() as conn:
            row = conn.execute(select(pairing_codes.c.expires_at, pairing_codes.c.used_at)
                               .where(pairing_codes.c.code_hash == h)).first()
            if row is None:
                raise PairingRefused("unknown pairing code")
            if row[1] is not None:
                raise PairingRefused(f"this pairing code was already used at {_iso(row[1])}; pairing codes work once")
            if _utc(row[0]) <= now:
                raise PairingRefused(f"this pairing code expired at {_iso(row[0])}")
            # claim it only if still unused (a concurrent redeemer on PostgreSQL loses here)
            claimed = conn.execute(pairing_codes.update().where(pairing_codes.c.code_hash == h, pairing_codes.c.used_at.is_(None))
                                   .values(used_at=now).returning(pairing_codes.c.code_hash)).first()
            if claimed is None:
                raise PairingRefused("this pairing code was already used; pairing codes work once")
        info, token = self.create_token(device)
        with self._write() as conn:
            conn.execute(pairing_codes.update().where(pairing_codes.c.code_hash == h).values(token_id=info.id))
        return info, token


def _values(report: Report, token_id: str | None) -> dict[str, Any]:
    """The row of one report: indexed columns, raw samples and the whole report JSON."""
    samples = list(report.timing.samples_ms)
    stats = summarize(samples)
    agg = report.timing.aggregate
    return {
        "run_id": str(report.run_id),
        "received_at": datetime.now(timezone.utc),
        "created_at": report.created_at,
        "device": device_label(report),
        "platform": report.client.platform,
        "runtime": report.runtime.name,
        "runtime_version": report.runtime.version,
        # a whole-model fallback is stored under the accelerator it really ran on, never the one asked for
        "accelerator": report.runtime.accelerator_used or report.runtime.accelerator,
        "emulated": report.runtime.emulated,
        "model": report.model.name,
        "family": _FAMILY_LABELS.get(report.model.family, report.model.family) if report.model.family else model_family(report.model.name),
        "precision": report.model.precision,
        "format": report.model.format,
        "status": report.status,
        "samples_kind": report.timing.samples_kind,
        "n_samples": stats.n,
        # Aggregate-only reports carry the tool's numbers; never a 0 for "unknown".
        "median_ms": stats.median if stats.n else (agg.median_ms if agg else None),
        "mean_ms": stats.mean if stats.n else (agg.mean_ms if agg else None),
        "macs": report.model.macs,
        "token_id": token_id,
        "samples_json": json.dumps(samples),
        "report_json": report.model_dump_json(),
    }


def _filtered(stmt, filters: dict[str, Any]):
    for name, value in filters.items():
        if value is None:
            continue
        if name not in reports.c:
            raise ValueError(f"unknown filter {name!r}")
        stmt = stmt.where(reports.c[name] == value)
    return stmt


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's implicit BEGIN cannot be
        # IMMEDIATE). WAL: readers do not block the writer. synchronous=NORMAL in WAL mode keeps
        # every committed transaction across a process crash (SIGKILL); only an OS crash or power
        # loss can lose the last commits.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
