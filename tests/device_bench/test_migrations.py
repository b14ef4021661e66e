"""Schema migrations on SQLite and a real PostgreSQL: a database filled at the first revision (the
create_all schema of 0a748da) upgrades to head with every report intact, a database made before
migrations (no alembic_version) is recognised and stamped, and PostgreSQL is never upgraded behind
the operator's back."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from device_bench import migrations
from device_bench.schema import parse_report
from device_bench.store import Store, device_label, group_key_hash, make_engine, model_family, process_key
from device_bench.summary import summarize_groups


def _old_row(doc: dict) -> dict:
    """A reports row exactly as the store of 0a748da wrote it (samples_json, whole report_json)."""
    r = parse_report(doc)
    samples = list(r.timing.samples_ms)
    ok = bool(samples)
    return {
        "run_id": str(r.run_id), "received_at": datetime.now(timezone.utc), "created_at": r.created_at,
        "device": device_label(r), "platform": r.client.platform, "runtime": r.runtime.name,
        "runtime_version": r.runtime.version, "accelerator": r.runtime.accelerator, "emulated": r.runtime.emulated,
        "model": r.model.name, "family": model_family(r.model.name), "precision": r.model.precision,
        "format": r.model.format, "status": r.status, "samples_kind": r.timing.samples_kind,
        "n_samples": len(samples), "median_ms": sorted(samples)[len(samples) // 2] if ok else None,
        "mean_ms": sum(samples) / len(samples) if ok else None, "macs": r.model.macs, "token_id": None,
        "samples_json": json.dumps(samples), "report_json": r.model_dump_json(),
    }


def _docs(make_report, n: int = 40, *, with_parity_failed: bool = False) -> list[dict]:
    docs = []
    for i in range(n):
        model = ("freenet_s2", "starnet_s4", "mobilenetv2_100")[i % 3]
        acc = ("cpu", "xnnpack")[i % 2]
        doc = make_report(i, model=model, runtime={"accelerator": acc, "emulated": i % 7 == 0},
                          samples=[1.0 + (i * 7 + j) % 11 * 0.1 for j in range(5 + i % 4)],
                          created_at=f"2026-11-25T10:{i // 60:02d}:{i % 60:02d}Z")
        if i % 4 == 1:  # host-runner processes: 0006 backfills their process_key from the notes
            doc["notes"] = {"session": f"00000000-0000-4000-8000-{i % 2:012d}", "process": str(i % 3), "processes": "3"}
        if i % 9 == 4:
            doc.update(status="error", error="delegate refused")
            doc["timing"]["samples_ms"] = []
        docs.append(doc)
    if with_parity_failed:
        doc = make_report(n, samples=[2.0, 2.1])
        doc.update(status="parity_failed", parity={"reference_checked": True, "rel_diff": 0.5,
                                                  "tolerance": 0.001, "passed": False})
        docs.append(doc)
    return docs


def _fill_old(engine: sa.Engine, docs: list[dict]) -> None:
    reports = sa.Table("reports", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(reports.insert(), [_old_row(d) for d in docs])


def _check_intact(url: str, docs: list[dict]) -> None:
    with Store(url) as store:
        assert store.count() == len(docs)
        for d in docs:
            assert store.get_report(d["run_id"]) == parse_report(d), d["run_id"]
        with store.engine.connect() as conn:
            counted = dict(conn.execute(sa.text("SELECT group_id, COUNT(*) FROM reports GROUP BY group_id")).all())
            kept = dict(conn.execute(sa.text("SELECT id, n_reports FROM report_groups")).all())
            hashes = dict(conn.execute(sa.text("SELECT id, key_hash FROM report_groups")).all())
            rows = [dict(r._mapping) for r in conn.execute(sa.text(
                "SELECT group_id, device, runtime, accelerator, model, precision, emulated, status FROM reports"))]
            keys = dict(conn.execute(sa.text("SELECT run_id, process_key FROM reports")).all())
        assert kept == counted  # the backfilled counters are the true counts
        # 0006's frozen process_key is the store's, and some reports have one
        assert keys == {d["run_id"]: process_key(parse_report(d)) for d in docs} and any(keys.values())
        for row in rows:  # the migration's frozen hash is the store's
            assert hashes[row["group_id"]] == group_key_hash(row)
        # Statistics from the migrated samples column equal those from the reports' own samples.
        got = [g.as_dict() for g in store.summary(baseline="mobilenetv2_100")]
        fresh = []
        for d in docs:
            r = parse_report(d)
            fresh.append({"device": device_label(r), "runtime": r.runtime.name, "accelerator": r.runtime.accelerator,
                          "model": r.model.name, "precision": r.model.precision, "emulated": r.runtime.emulated,
                          "status": r.status, "run_id": str(r.run_id), "family": model_family(r.model.name),
                          "samples_kind": r.timing.samples_kind, "mean_ms": None, "macs": r.model.macs,
                          "created_at": r.created_at, "samples": list(r.timing.samples_ms), "process_key": process_key(r)})
        assert got == [g.as_dict() for g in summarize_groups(fresh, baseline="mobilenetv2_100")]
    with Store(url) as store:  # 0005: a restarted store reads those statistics back from summary_cache
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM summary_cache")).scalar() > 0
        assert [g.as_dict() for g in store.summary(baseline="mobilenetv2_100")] == got
        assert store.memo.loaded > 0
        # A new report of an old group joins that group.
        groups_before = len(kept)
        new = dict(docs[1], run_id="0f1e0000-0000-4000-8000-000000000001")
        assert store.add_report(new) is True
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM report_groups")).scalar() == groups_before


def test_head_is_the_newest_revision():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrations.alembic_config())
    assert script.get_current_head() == migrations.HEAD
    assert [s.revision for s in script.walk_revisions()][::-1] == ["0001", "0002", "0003", "0004", "0005", "0006"]


def test_first_revision_filled_then_upgraded_keeps_every_report(db_url, make_report):
    engine = make_engine(db_url)
    migrations.upgrade(engine, "0001")
    docs = _docs(make_report)
    _fill_old(engine, docs)
    # Upgrading a PostgreSQL database is the operator's call; SQLite upgrades itself.
    assert migrations.upgrade(engine) == "0001"
    engine.dispose()
    _check_intact(db_url, docs)


def test_second_revision_holds_parity_failed_and_upgrades(db_url, make_report):
    engine = make_engine(db_url)
    migrations.upgrade(engine, "0002")
    docs = _docs(make_report, 12, with_parity_failed=True)
    _fill_old(engine, docs)
    engine.dispose()
    runner = CliRunner()
    from device_bench.cli import db_app

    out = runner.invoke(db_app, ["upgrade", "--db", db_url])
    assert out.exit_code == 0, out.output
    assert "from 0002" in out.output
    _check_intact(db_url, docs)


@pytest.mark.parametrize("made_by", ["0001", "0002", "0002+pairing_codes"])
def test_database_made_before_migrations_is_recognised_and_stamped(db_url, make_report, made_by):
    revision = made_by[:4]
    engine = make_engine(db_url)
    migrations.upgrade(engine, revision)
    with engine.begin() as conn:  # what create_all left behind: the tables, no alembic_version
        conn.execute(sa.text("DROP TABLE alembic_version"))
        if made_by.endswith("pairing_codes"):  # main's create_all once the browser runner landed
            conn.execute(sa.text("CREATE TABLE pairing_codes (code_hash VARCHAR(64) PRIMARY KEY, "
                                 "created_at TIMESTAMP NOT NULL, expires_at TIMESTAMP NOT NULL, "
                                 "used_at TIMESTAMP, token_id VARCHAR(16) REFERENCES tokens (id))"))
        assert migrations.current_revision(conn) is None
        assert migrations.legacy_revision(conn) == revision
    docs = _docs(make_report, 10)
    _fill_old(engine, docs)
    if engine.dialect.name == "postgresql":
        with pytest.raises(migrations.SchemaOutOfDate, match="freenet db upgrade"):
            Store(db_url)
        assert migrations.upgrade(engine) == revision
    engine.dispose()
    _check_intact(db_url, docs)  # SQLite: Store() stamps and upgrades by itself
    with Store(db_url) as s:  # and the browser runner's table is there either way
        code, _ = s.create_pairing_code()
        assert s.redeem_pairing_code(code, "phone")[1].startswith("fnt_")


def test_postgresql_behind_is_refused_by_serve_and_store(fresh_pg, make_report):
    engine = make_engine(fresh_pg)
    migrations.upgrade(engine, "0002")
    engine.dispose()
    with pytest.raises(migrations.SchemaOutOfDate, match="0002.*0006.*freenet db upgrade"):
        Store(fresh_pg)
    from device_bench.cli import serve

    with pytest.raises(Exception, match="freenet db upgrade"):
        serve(db=fresh_pg, host="127.0.0.1", port=1, bundles=None, max_body_bytes=1 << 20, log_level="warning")
    with Store(fresh_pg, migrate=True) as s:  # an explicit upgrade works
        assert s.count() == 0


def test_downgrade_to_second_revision_and_back_keeps_reports(db_url, make_report):
    docs = _docs(make_report, 15)
    with Store(db_url, migrate=True) as s:
        s.add_reports(docs)
    engine = make_engine(db_url)
    from alembic import command

    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        command.downgrade(migrations.alembic_config(conn), "0002")
    migrations.upgrade(engine)
    engine.dispose()
    _check_intact(db_url, docs)
