"""Report storage: SQLAlchemy 2 tables, idempotent ingest, queries, device tokens.

This module owns the database: a SQLite file by default (WAL mode, so concurrent readers never
block the one writer) or PostgreSQL by URL (`postgresql+psycopg://...`), its schema versioned by
`device_bench.migrations`. Every report is stored whole: its JSON (without the samples), its raw
samples as float64 bytes, and the columns the dashboard filters and groups on; `report_groups`
counts the reports of each summary partition in the same transaction as they are inserted.
Ingest is idempotent on `run_id`, so a client retrying after a lost response never double counts;
the server's writes go through one group-commit writer. Summaries read only each group's latest
window through an index. Device tokens are stored only as sha256 hashes and can be revoked.
`Store` is the small Python API used by the server and, embedded, by the host runner.
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
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
    LargeBinary,
    MetaData,
    String,
    Table,
    Column,
    Text,
    bindparam,
    create_engine,
    event,
    func,
    select,
    and_,
    or_,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from device_bench.schema import Report, parse_report
from device_bench.stats import center

DEFAULT_DB_DIR = Path("freenet-data")
TOKEN_PREFIX = "fnt_"
MAX_QUERY = 10_000  # rows per query/page of the Python API (the HTTP API allows fewer)
SAMPLES_DTYPE = np.dtype("<f8")

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
    Column("report_json", Text, nullable=False),
    # The report's summary partition (see report_groups) and its raw samples as little-endian
    # float64 bytes: a summary reads only the latest runs of each group and parses no JSON.
    Column("group_id", Integer, ForeignKey("report_groups.id", name="fk_reports_group_id"), nullable=False),
    Column("samples", LargeBinary, nullable=False),
    # "<session>/<process>" of a host-runner process (migration 0006): the summary pairs reports of
    # two models on it; NULL for reports that are not one of several processes of a session.
    Column("process_key", String(200), nullable=True),
    Index("ix_reports_group", "device", "runtime", "accelerator", "model"),
    Index("ix_reports_created", "created_at", "id"),  # newest-first listing without a sort
    Index("ix_reports_window", "group_id", "created_at", "id"),  # a group's latest runs
)

# One row per summary partition: the columns `group_samples` windows over. Rows are only ever
# added; n_reports is incremented in the same transaction as the reports it counts (and only for
# rows actually inserted), so it always equals COUNT(*) of the group's reports, across duplicate
# ingest and crashes (tests/device_bench/test_consistency.py recomputes it).
GROUP_KEYS = ("device", "runtime", "accelerator", "model", "precision", "emulated", "status")
report_groups = Table(
    "report_groups",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("device", String(401), nullable=False),
    Column("runtime", String(32), nullable=False),
    Column("accelerator", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("precision", String(8), nullable=False),
    Column("emulated", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("n_reports", BigInteger, nullable=False),
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

# Exact summary statistics across restarts (migration 0005): key = sha256 of the statistics
# version and the ordered run ids a result was computed from (device_bench.summary.persist_key),
# value = the Summary/Comparison as JSON. Content-addressed, so never stale (see StatsMemo).
summary_cache = Table(
    "summary_cache",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
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


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 30) -> Engine:
    """The SQLAlchemy engine of a store URL (SQLite: WAL, BEGIN IMMEDIATE on request; see
    _configure_sqlite). Used by Store and by `freenet db upgrade`."""
    parsed = make_url(url)
    dialect = parsed.get_backend_name()
    if dialect not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database URL {parsed!r}: use sqlite:///PATH or postgresql+psycopg://...")
    if dialect == "postgresql":
        return create_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)
    if not parsed.database or parsed.database == ":memory:":
        raise ValueError("use a SQLite file (sqlite:///PATH): an in-memory database is not shared between threads")
    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # timeout: wait up to 30 s for the write lock instead of failing with "database is locked".
    engine = create_engine(url, pool_size=pool_size, max_overflow=max_overflow,
                           connect_args={"timeout": 30, "check_same_thread": False})
    _configure_sqlite(engine)
    return engine


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


@dataclass(frozen=True)
class Page:
    """One page of a newest-first listing; pass `next_cursor` back as `cursor` for the next
    (older) page. None: this is the last page."""

    rows: list[ReportRow]
    next_cursor: str | None


class _GroupCommit:
    """One writer thread that drains queued ingest calls into shared transactions."""

    MAX_ROWS = 1000  # reports per shared transaction

    def __init__(self, store: Store):
        self.store = store
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="freenet-group-commit", daemon=True)
        self.thread.start()

    def submit(self, batch: list[Report], token_id: str | None) -> Future:
        # Rows are built in the caller's thread (JSON dump, statistics): the writer only writes.
        rows = [_values(r, token_id) for r in batch]
        done: Future = Future()
        self.queue.put((rows, done))
        return done

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            items, n = [item], len(item[0])
            while n < self.MAX_ROWS:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self.queue.put(None)  # stop after this transaction
                    break
                items.append(nxt)
                n += len(nxt[0])
            try:
                self._write(items)
            except Exception:
                for one in items:  # alone, so one bad call does not fail the others
                    try:
                        self._write([one])
                    except Exception as exc:  # noqa: BLE001 - handed to the waiting caller
                        one[1].set_exception(exc)

    def _write(self, items: list[tuple[list[dict[str, Any]], Future]]) -> None:
        # Fresh row dicts per attempt: _insert_rows adds group_id to them.
        rows = [dict(r) for batch, _ in items for r in batch]
        with self.store._write() as conn:
            inserted, new_groups = self.store._insert_rows(conn, rows)
        self.store._group_ids.update(new_groups)
        seen: set[str] = set()
        for batch, done in items:
            out = []
            for row in batch:
                rid = row["run_id"]
                out.append(rid in inserted and rid not in seen)
                seen.add(rid)
            done.set_result(out)


class _WindowCache:
    """(group id, max_runs) -> the group's window rows (no samples) and the n_reports they were
    read at. Valid exactly while n_reports is unchanged (see Store._windows). Bounded, thread-safe."""

    def __init__(self, max_entries: int = 10_000):
        self.max_entries = max_entries
        self._data: dict[tuple[int, int], tuple[int, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def get(self, gid: int, n_reports: int, max_runs: int) -> list[dict[str, Any]] | None:
        with self._lock:
            hit = self._data.get((gid, max_runs))
        return hit[1] if hit is not None and hit[0] == n_reports else None

    def put(self, gid: int, n_reports: int, max_runs: int, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            if len(self._data) >= self.max_entries:
                self._data.clear()  # rare (that many groups x max_runs values): start over
            self._data[(gid, max_runs)] = (n_reports, rows)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class _SummaryCache:
    """StatsMemo's backend: the summary_cache table (a MemoBackend)."""

    def __init__(self, store: Store):
        self.store = store

    def load(self, keys: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self.store.engine.connect() as conn:
            for i in range(0, len(keys), 500):
                stmt = select(summary_cache.c.key, summary_cache.c.value).where(summary_cache.c.key.in_(keys[i:i + 500]))
                out.update(conn.execute(stmt).all())
        return out

    def save(self, items: dict[str, str]) -> None:
        now = datetime.now(timezone.utc)
        insert = (sqlite.insert if self.store.dialect == "sqlite" else postgresql.insert)(summary_cache)
        with self.store._write() as conn:  # a key's value is fixed: a concurrent writer wrote the same
            conn.execute(insert.on_conflict_do_nothing(index_elements=["key"]),
                         [{"key": k, "value": v, "created_at": now} for k, v in sorted(items.items())])


def _row(r: Any) -> ReportRow:
    d = dict(r._mapping)
    d.pop("id", None)
    d["created_at"], d["received_at"] = _utc(d["created_at"]), _utc(d["received_at"])
    return ReportRow(**d)


class Store:
    """Reports, devices and tokens in one SQL database.

    `Store()` opens (and creates) the default SQLite file under ./freenet-data/;
    `Store("postgresql+psycopg://user:pw@127.0.0.1:5432/db")` a PostgreSQL database.
    Thread-safe: the server calls it from many worker threads.
    """

    def __init__(self, url: str | None = None, *, pool_size: int = 10, max_overflow: int = 30,
                 migrate: bool | None = None):
        self.url = url or default_db_url()
        self.engine: Engine = make_engine(self.url, pool_size=pool_size, max_overflow=max_overflow)
        self.dialect = self.engine.dialect.name
        from device_bench import migrations

        # migrate=None: the embedded SQLite file upgrades itself; a PostgreSQL database is created
        # when empty but an existing one is upgraded only by the operator (`freenet db upgrade`).
        migrations.ensure_schema(self.engine, auto_upgrade=self.dialect == "sqlite" if migrate is None else migrate)
        # key_hash -> report_groups.id of committed groups (rows are never deleted or changed).
        self._group_ids: dict[str, int] = {}
        from device_bench.summary import StatsMemo

        self.memo = StatsMemo(backend=_SummaryCache(self))
        self._window_cache = _WindowCache()
        self._writer: _GroupCommit | None = None
        self._token_cache: dict[str, tuple[float, TokenInfo]] = {}  # token hash -> (read at, record)
        self._sqlite_sql: str | None = None
        self._sqlite_procs: list[tuple[str, Any]] = []
        self._pg_sql: str | None = None
        self._pg_procs: list[tuple[str, Any]] = []
        self._writer_lock = threading.Lock()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
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
        return self.add_batch([parse_report(report)], token_id=token_id)[0]

    def add_reports(self, batch: list[Report | dict[str, Any]], *, token_id: str | None = None) -> int:
        """Store many reports in one transaction (bulk import); returns how many were new."""
        return sum(self.add_batch([parse_report(r) for r in batch], token_id=token_id))

    def add_batch(self, batch: list[Report], *, token_id: str | None = None) -> list[bool]:
        """Store validated reports in one transaction; per item, True when new, False when its
        run_id was stored before (or earlier in the same batch): idempotent per run id."""
        rows = [_values(r, token_id) for r in batch]
        if not rows:
            return []
        with self._write() as conn:
            inserted, new_groups = self._insert_rows(conn, rows)
        self._group_ids.update(new_groups)  # only once committed
        out, seen = [], set()
        for row in rows:
            rid = row["run_id"]
            out.append(rid in inserted and rid not in seen)
            seen.add(rid)
        return out

    def ingest(self, batch: list[Report], *, token_id: str | None = None) -> list[bool]:
        """`add_batch` through the group-commit writer: what the server calls from its worker
        threads. Concurrent calls are written by one thread in one transaction (one commit, one
        fsync for many requests, and no SQLite lock contention); each call returns only after
        the transaction holding its reports has committed, so an answer is never ahead of the
        disk. One call's failure (e.g. a database error) is retried alone and never fails others."""
        return self.ingest_future(batch, token_id=token_id).result()

    def ingest_future(self, batch: list[Report], *, token_id: str | None = None) -> Future:
        """`ingest` without waiting: a Future of its per-report results, resolved once committed
        (the server awaits it on its event loop instead of blocking a worker thread)."""
        if not batch:
            done: Future = Future()
            done.set_result([])
            return done
        with self._writer_lock:
            if self._writer is None:
                self._writer = _GroupCommit(self)
        return self._writer.submit(batch, token_id)

    def _insert_rows(self, conn: Connection, rows: list[dict[str, Any]]) -> tuple[set[str], dict[str, int]]:
        """Insert report rows and count them in their groups, inside the caller's transaction.

        The group counters move only by the rows RETURNING says were inserted, in the same
        transaction: a duplicate adds nothing and a crash before COMMIT loses both together."""
        hashes = [group_key_hash(r) for r in rows]
        new: dict[str, int] = {}
        missing = sorted({h for h in hashes if h not in self._group_ids})
        if missing:
            first = dict(zip(hashes, rows))
            dialect_insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
            conn.execute(dialect_insert(report_groups).on_conflict_do_nothing(index_elements=["key_hash"]),
                         [{"key_hash": h, "n_reports": 0, **{k: first[h][k] for k in GROUP_KEYS}} for h in missing])
            new = dict(conn.execute(select(report_groups.c.key_hash, report_groups.c.id)
                                    .where(report_groups.c.key_hash.in_(missing))).all())
        for row, h in zip(rows, hashes):
            row["group_id"] = new[h] if h in new else self._group_ids[h]
        if self.dialect == "sqlite":
            inserted = self._sqlite_insert(conn, rows)
        else:
            inserted = self._pg_insert(conn, rows)
        counts = Counter(g for _, g in inserted)
        if counts:
            # Sorted: concurrent PostgreSQL transactions lock group rows in one order (no deadlock).
            mark = "?" if self.dialect == "sqlite" else "%s"  # the driver's paramstyle
            conn.exec_driver_sql(f"UPDATE report_groups SET n_reports = n_reports + {mark} WHERE id = {mark}",
                                 [(k, g) for g, k in sorted(counts.items())])
        return {rid for rid, _ in inserted}, new

    def _sqlite_insert(self, conn: Connection, rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
        """Insert the rows whose run_id is not stored yet; returns (run_id, group_id) of those.

        Runs inside the BEGIN IMMEDIATE transaction of `_write`, which holds SQLite's only write
        lock: no other writer can store a run_id between the SELECT and the INSERT. The INSERT is
        a plain DB-API executemany with the columns' own SQLAlchemy bind processors (same stored
        text for timestamps), without SQLAlchemy's per-row statement machinery."""
        seen: set[str] = set()
        ids = [r["run_id"] for r in rows]
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            seen.update(v for (v,) in conn.exec_driver_sql(
                f"SELECT run_id FROM reports WHERE run_id IN ({','.join('?' * len(chunk))})", tuple(chunk)))
        new = []
        for r in rows:
            if r["run_id"] not in seen:
                seen.add(r["run_id"])
                new.append(r)
        if new:
            if self._sqlite_sql is None:
                cols = [c for c in reports.columns if c.name != "id"]
                # dialect_impl: SQLite's own DATETIME type formats timestamps (the generic one does not).
                self._sqlite_procs = [(c.name, c.type.dialect_impl(conn.dialect).bind_processor(conn.dialect))
                                      for c in cols]
                self._sqlite_sql = (f"INSERT INTO reports ({', '.join(c.name for c in cols)}) "
                                    f"VALUES ({', '.join('?' * len(cols))})")
            procs = self._sqlite_procs
            conn.exec_driver_sql(self._sqlite_sql,
                                 [tuple(r[c] if p is None else p(r[c]) for c, p in procs) for r in new])
        return [(r["run_id"], r["group_id"]) for r in new]

    def _pg_insert(self, conn: Connection, rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
        """INSERT ... ON CONFLICT (run_id) DO NOTHING RETURNING run_id, group_id of every row, as
        one prepared statement that psycopg pipelines (executemany with returning=True), in the
        caller's transaction. SQLAlchemy's multi-row VALUES text differs with every batch size,
        so psycopg re-parsed a 2,400-placeholder query per call: that was most of the CPU."""
        cols = [c for c in reports.columns if c.name != "id"]
        if self._pg_sql is None:
            self._pg_procs = [(c.name, c.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)) for c in cols]
            self._pg_sql = (f"INSERT INTO reports ({', '.join(c.name for c in cols)}) "
                            f"VALUES ({', '.join(['%s'] * len(cols))}) "
                            "ON CONFLICT (run_id) DO NOTHING RETURNING run_id, group_id")
        procs = self._pg_procs
        cur = conn.connection.driver_connection.cursor()
        cur.executemany(self._pg_sql, [tuple(r[c] if p is None else p(r[c]) for c, p in procs) for r in rows],
                        returning=True)
        out = []
        while True:
            out.extend(cur.fetchall())
            if not cur.nextset():
                break
        return out

    def _insert(self):
        insert = (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(reports)
        return insert.on_conflict_do_nothing(index_elements=["run_id"])

    def get_report(self, run_id: str) -> Report | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(reports.c.report_json, reports.c.samples)
                             .where(reports.c.run_id == str(run_id))).first()
        if r is None:
            return None
        # report_json is stored without its samples (they are the samples column, exactly).
        doc = json.loads(r[0])
        doc["timing"]["samples_ms"] = np.frombuffer(r[1], dtype=SAMPLES_DTYPE).tolist()
        return parse_report(doc)

    def count(self, **filters: Any) -> int:
        """How many reports match; filters on group columns read report_groups.n_reports
        (no scan of the reports table)."""
        active = _active(filters)
        if set(active) <= set(GROUP_KEYS):
            stmt = select(func.coalesce(func.sum(report_groups.c.n_reports), 0))
            for name, value in active.items():
                stmt = stmt.where(report_groups.c[name] == value)
        else:
            stmt = _filtered(select(func.count()).select_from(reports), active)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def query(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        cursor: str | None = None,
        model: str | None = None,
        device: str | None = None,
        runtime: str | None = None,
        accelerator: str | None = None,
        platform: str | None = None,
        status: str | None = None,
        emulated: bool | None = None,
    ) -> list[ReportRow]:
        """Stored reports, newest first, filtered by exact column values (see `page`)."""
        return self.page(limit=limit, offset=offset, cursor=cursor, model=model, device=device, runtime=runtime,
                         accelerator=accelerator, platform=platform, status=status, emulated=emulated).rows

    def page(self, *, limit: int = 100, cursor: str | None = None, offset: int = 0, **filters: Any) -> Page:
        """One page of stored reports, newest first: `limit` rows after `cursor` (the previous
        page's `next_cursor`, an opaque position on (created_at, id)). Cost depends on the page,
        not on how deep it is; `offset` is kept for old callers and costs what it skips."""
        if not 1 <= limit <= MAX_QUERY:
            raise ValueError(f"limit must be in 1..{MAX_QUERY}, got {limit}")
        stmt = _filtered(select(*_ROW_COLUMNS, reports.c.id), _active(filters))
        if cursor is not None:
            created, rid = _decode_cursor(cursor)
            # Spelt out rather than a row-value comparison so the timestamp goes through the
            # column's bind processor (SQLite compares the stored text); the first term lets both
            # databases range-scan ix_reports_created.
            c = reports.c
            stmt = stmt.where(c.created_at <= created, or_(c.created_at < created, and_(c.created_at == created, c.id < rid)))
        stmt = stmt.order_by(reports.c.created_at.desc(), reports.c.id.desc()).limit(limit + 1).offset(offset)
        with self.engine.connect() as conn:
            got = conn.execute(stmt).all()
        rows = [_row(r) for r in got[:limit]]
        more = len(got) > limit
        return Page(rows, _encode_cursor(rows[-1].created_at, got[limit - 1].id) if more else None)

    def distinct(self, column: str) -> list[str]:
        table = report_groups if column in GROUP_KEYS else reports
        col = table.c[column]
        with self.engine.connect() as conn:
            return [v for (v,) in conn.execute(select(col).distinct().order_by(col))]

    def group_samples(self, *, max_runs: int = 50, with_samples: bool = True, **filters: Any) -> list[dict[str, Any]]:
        """The latest `max_runs` reports of every (device, runtime, accelerator, model, precision,
        emulated, status) group, with their raw samples (float64 arrays; left out with
        with_samples=False, see `load_samples`): the input of `device_bench.summary`.

        Filters on group columns read only each group's window through the index
        (group_id, created_at, id), so the cost does not grow with older reports; other filters
        fall back to a window function over the matching reports."""
        if max_runs < 1:
            raise ValueError(f"max_runs must be >= 1, got {max_runs}")
        active = _active(filters)
        cols = [reports.c.id, reports.c.run_id, reports.c.family, reports.c.samples_kind, reports.c.mean_ms,
                reports.c.macs, reports.c.created_at, reports.c.process_key] + ([reports.c.samples] if with_samples else [])
        newest = (reports.c.created_at.desc(), reports.c.id.desc())
        with self.engine.connect() as conn:
            if not set(active) <= set(GROUP_KEYS):
                rn = func.row_number().over(partition_by=reports.c.group_id, order_by=newest)
                inner = _filtered(select(*(reports.c[k] for k in GROUP_KEYS), *cols, rn.label("rn")), active).subquery()
                rows = [dict(r._mapping) for r in conn.execute(select(inner).where(inner.c.rn <= max_runs))]
                for r in rows:
                    del r["rn"]
                    r["created_at"] = _utc(r["created_at"])
                    if with_samples:
                        r["samples"] = np.frombuffer(r["samples"], dtype=SAMPLES_DTYPE)
            elif with_samples:
                rows = self._windows(conn, active, cols, max_runs, None)
            else:
                rows = self._windows(conn, active, cols, max_runs, self._window_cache)
        return rows

    def _windows(self, conn: Connection, active: dict[str, Any], cols: list, max_runs: int,
                 cache: _WindowCache | None) -> list[dict[str, Any]]:
        """The latest `max_runs` rows of every group matching `active`, read through the index
        (group_id, created_at, id). With a cache, a group whose n_reports is what it was when its
        window was read is not read again: reports are only ever added, and n_reports moves in
        the same transaction as they are, so an unchanged count is an unchanged set of reports."""
        gstmt = select(report_groups.c.id, report_groups.c.n_reports, *(report_groups.c[k] for k in GROUP_KEYS))
        for name, value in active.items():
            gstmt = gstmt.where(report_groups.c[name] == value)
        rows: list[dict[str, Any]] = []
        stale = []
        for g in conn.execute(gstmt).all():
            hit = cache.get(g.id, g.n_reports, max_runs) if cache is not None else None
            if hit is None:
                stale.append(g)
            else:
                rows.extend(hit)
        if not stale:
            return rows
        newest = (reports.c.created_at.desc(), reports.c.id.desc())
        read: list[tuple[int, int, list[dict[str, Any]]]] = []
        if self.dialect == "postgresql":
            # One statement (one snapshot): the windows and the counts they are cached under agree.
            g = select(report_groups.c.id, report_groups.c.n_reports, *(report_groups.c[k] for k in GROUP_KEYS)) \
                .where(report_groups.c.id.in_([x.id for x in stale])).subquery()
            win = select(*cols).where(reports.c.group_id == g.c.id).order_by(*newest).limit(max_runs).lateral()
            by_group: dict[tuple[int, int], list[dict[str, Any]]] = {(x.id, x.n_reports): [] for x in stale}
            for r in conn.execute(select(g.c.id.label("gid_"), g.c.n_reports.label("n_"),
                                         *(g.c[k] for k in GROUP_KEYS), win).select_from(g.join(win, true()))):
                d = dict(r._mapping)
                by_group.setdefault((d.pop("gid_"), d.pop("n_")), []).append(d)
            read = [(gid, n, rs) for (gid, n), rs in by_group.items()]
        else:
            # SQLite has no LATERAL: one indexed range read per group, all in the connection's one
            # read transaction (a WAL snapshot), so the counts read above match these windows.
            # Plain DB-API rows: SQLAlchemy's per-row processing (its regex DATETIME parser above
            # all) was most of a cold summary once the statistics came from summary_cache.
            names = [c.name for c in cols]
            sql = (f"SELECT {', '.join(names)} FROM reports WHERE group_id = ? "
                   f"ORDER BY created_at DESC, id DESC LIMIT {int(max_runs)}")
            at = names.index("created_at")
            cur = conn.connection.dbapi_connection.cursor()  # the same connection and transaction
            try:
                for x in stale:
                    key = dict(zip(GROUP_KEYS, x[2:]))
                    rs = []
                    for r in cur.execute(sql, (x.id,)).fetchall():
                        d = dict(zip(names, r))
                        # SQLite holds UTC as "YYYY-MM-DD HH:MM:SS.ffffff" text (SQLAlchemy's format)
                        d["created_at"] = datetime.fromisoformat(r[at]).replace(tzinfo=timezone.utc)
                        d.update(key)
                        rs.append(d)
                    read.append((x.id, x.n_reports, rs))
            finally:
                cur.close()
        for gid, n, rs in read:
            for r in rs:
                if self.dialect != "sqlite":
                    r["created_at"] = _utc(r["created_at"])
                if "samples" in r:
                    r["samples"] = np.frombuffer(r["samples"], dtype=SAMPLES_DTYPE)
            if cache is not None:
                cache.put(gid, n, max_runs, rs)
            rows.extend(rs)
        return rows

    def summary_version(self, **filters: Any) -> tuple[tuple[int, int], ...]:
        """(id, n_reports) of every group matching the group-column filters: equal versions mean
        equal windows, hence an equal summary (reports are only ever added, and n_reports moves
        in their transaction). One small query on report_groups."""
        active = _active(filters)
        stmt = select(report_groups.c.id, report_groups.c.n_reports).order_by(report_groups.c.id)
        for name, value in active.items():
            if name not in GROUP_KEYS:
                raise ValueError(f"summary_version filters on group columns only, not {name!r}")
            stmt = stmt.where(report_groups.c[name] == value)
        with self.engine.connect() as conn:
            return tuple((g, n) for g, n in conn.execute(stmt))

    def load_samples(self, ids: list[int]) -> dict[int, np.ndarray]:
        """Raw samples of reports by their row id (the "id" of `group_samples` rows)."""
        out: dict[int, np.ndarray] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                stmt = select(reports.c.id, reports.c.samples).where(reports.c.id.in_(ids[i:i + 500]))
                out.update((rid, np.frombuffer(blob, dtype=SAMPLES_DTYPE)) for rid, blob in conn.execute(stmt))
        return out

    def summary(self, *, baseline: str | None = None, max_runs: int = 50, with_ratios: bool = True,
                with_samples: bool = True, **filters: Any):
        """Per device x runtime x accelerator statistics and ratios (see device_bench.summary).

        Statistics of windows this Store summarised before come from its StatsMemo (exact: see
        there). with_samples=False (the dashboard and compare endpoint) also skips reading the
        samples of such windows; rows served from the memo then have `samples=None`."""
        from device_bench.summary import summarize_groups

        runs = self.group_samples(max_runs=max_runs, with_samples=with_samples, **filters)
        return summarize_groups(runs, baseline=baseline, with_ratios=with_ratios, memo=self.memo,
                                load_samples=self.load_samples)

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

    def lookup_token(self, token: str, *, max_age: float = 0.0) -> TokenInfo | None:
        """The token's record (check `.revoked`), or None when it is unknown.

        max_age > 0 (the server): a known token's record may come from a cache up to that many
        seconds old, so a revocation made by another process takes effect within max_age; one made
        through this Store takes effect at once. Unknown tokens are never cached."""
        h = hash_token(token)
        if max_age > 0:
            hit = self._token_cache.get(h)
            if hit is not None and time.monotonic() - hit[0] <= max_age:
                return hit[1]
        with self.engine.connect() as conn:
            r = conn.execute(self._token_select().where(tokens.c.token_hash == h)).first()
        info = None if r is None else self._info(r)
        if info is not None:
            if len(self._token_cache) >= 10_000:
                self._token_cache.clear()
            self._token_cache[h] = (time.monotonic(), info)
        return info

    def cached_token(self, token: str, *, max_age: float) -> TokenInfo | None:
        """The cached record of a known token if fresher than max_age, else None (no query)."""
        hit = self._token_cache.get(hash_token(token))
        return hit[1] if hit is not None and time.monotonic() - hit[0] <= max_age else None

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
        self._token_cache.clear()
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


def group_key_hash(row: dict[str, Any]) -> str:
    """report_groups.key_hash of a report row: sha256 of its GROUP_KEYS values as JSON (the
    migration 0003 backfill computes the same; a test checks it)."""
    d, rt, acc, model, precision, emulated, status = (row[k] for k in GROUP_KEYS)
    return hashlib.sha256(json.dumps([d, rt, acc, model, precision, bool(emulated), status]).encode()).hexdigest()


def samples_blob(samples: Any) -> bytes:
    """Raw samples as stored: little-endian float64 bytes, exactly the report's floats."""
    return np.asarray(samples, dtype=SAMPLES_DTYPE).tobytes()


def _values(report: Report, token_id: str | None) -> dict[str, Any]:
    """The row of one report: indexed columns, raw samples and the whole report JSON."""
    samples = np.asarray(report.timing.samples_ms, dtype=SAMPLES_DTYPE)  # once: statistics and blob
    n, median, mean = center(samples)
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
        "n_samples": n,
        # Aggregate-only reports carry the tool's numbers; never a 0 for "unknown".
        "median_ms": median if n else (agg.median_ms if agg else None),
        "mean_ms": mean if n else (agg.mean_ms if agg else None),
        "macs": report.model.macs,
        "token_id": token_id,
        # The report without timing.samples_ms: those are the samples column (half the bytes).
        "report_json": report.model_dump_json(exclude={"timing": {"samples_ms"}}),
        "samples": samples.tobytes(),  # = samples_blob(report.timing.samples_ms)
        "process_key": process_key(report),
    }


def process_key(report: Report) -> str | None:
    """"<session>/<process>" of one of several host-runner processes (the runner notes both), else
    None: the key on which the summary pairs two models' reports (see summary._pairing)."""
    notes = report.notes or {}
    session, process = notes.get("session"), notes.get("process")
    if not session or process is None:
        return None
    key = f"{session}/{process}"
    return key if len(key) <= 200 else None


def _active(filters: dict[str, Any]) -> dict[str, Any]:
    for name in filters:
        if name not in reports.c:
            raise ValueError(f"unknown filter {name!r}")
    return {k: v for k, v in filters.items() if v is not None}


def _encode_cursor(created_at: datetime, rid: int) -> str:
    return base64.urlsafe_b64encode(f"{_iso(created_at)}|{rid}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        text_ = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, rid = text_.partition("|")
        created = datetime.fromisoformat(when.replace("Z", "+00:00")).astimezone(timezone.utc)
        # SQLite stores naive UTC text; compare like with like.
        return created, int(rid)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid cursor {cursor[:40]!r}: pass back a next_cursor this server returned") from exc


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
