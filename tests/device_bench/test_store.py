"""Storage on SQLite and a real PostgreSQL: idempotent ingest, raw samples, queries, tokens."""

from __future__ import annotations

import pytest

from device_bench.schema import parse_report
from device_bench.store import Store, device_label, model_family


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    yield s
    s.close()


def test_add_report_is_idempotent_on_run_id(store, make_report):
    doc = make_report(1, samples=[3.0, 1.0, 2.0])
    assert store.add_report(doc) is True
    assert store.add_report(doc) is False
    assert store.add_report(parse_report(doc)) is False
    assert store.count() == 1
    back = store.get_report(doc["run_id"])
    assert back == parse_report(doc)
    assert list(back.timing.samples_ms) == [3.0, 1.0, 2.0]  # raw samples, in order
    (row,) = store.query()
    assert row.median_ms == 2.0 and row.n_samples == 3 and row.family == "FreeNet"


def test_query_filters_and_order(store, make_report):
    for i, (model, acc) in enumerate([("freenet_s2", "cpu"), ("starnet_s4", "cpu"), ("starnet_s4", "xnnpack")]):
        store.add_report(make_report(i, model=model, runtime={"accelerator": acc},
                                     created_at=f"2026-11-25T10:00:0{i}Z"))
    assert [r.model for r in store.query()] == ["starnet_s4", "starnet_s4", "freenet_s2"]
    assert len(store.query(model="starnet_s4")) == 2
    assert len(store.query(model="starnet_s4", accelerator="cpu")) == 1
    assert store.query(device="nope") == []
    assert len(store.query(limit=1)) == 1
    with pytest.raises(ValueError, match="limit"):
        store.query(limit=0)


def test_error_and_aggregate_reports_are_stored_without_invented_samples(store, make_report):
    store.add_report(make_report(1, status="error", error="GPU delegate refused: 5-D tensors",
                                 timing={"samples_ms": []}))
    store.add_report(make_report(2, timing={"samples_ms": [], "samples_kind": "aggregate",
                                            "aggregate": {"count": 50, "mean_ms": 12.5}}))
    rows = {r.status + r.samples_kind: r for r in store.query()}
    assert rows["errorraw"].median_ms is None and rows["errorraw"].n_samples == 0
    assert rows["okaggregate"].mean_ms == 12.5 and rows["okaggregate"].median_ms is None


def test_summary_groups_and_ratios(store, make_report):
    for i in range(3):
        store.add_report(make_report(10 + i, model="freenet_s2", samples=[8.0 + 0.1 * j for j in range(20)]))
        store.add_report(make_report(20 + i, model="starnet_s4", samples=[10.0 + 0.1 * j for j in range(20)]))
        store.add_report(make_report(30 + i, model="mobilenetv2_100", samples=[5.0 + 0.1 * j for j in range(20)]))
    # An emulated run: shown, never in a ratio.
    store.add_report(make_report(40, model="freenet_s2", samples=[500.0, 510.0], runtime={"emulated": True}))
    (group,) = store.summary(baseline="mobilenetv2_100")
    assert [(r.family, r.emulated) for r in group.rows] == [("FreeNet", False), ("FreeNet", True),
                                                            ("StarNet", False), ("MobileNet", False)]
    fs2 = group.rows[0]
    assert fs2.runs == 3 and fs2.stats.n == 60 and len(fs2.run_ids) == 3
    assert group.pair.verdict == "faster" and group.pair.ratio == pytest.approx(8.95 / 10.95)
    assert fs2.ratios["baseline"].verdict == "slower"
    assert all(c is None for c in group.rows[1].ratios.values())
    assert store.summary(max_runs=1)[0].rows[0].stats.n == 20


def test_tokens_are_hashed_and_revocable(store):
    info, token = store.create_token("pixel8-lab")
    assert token.startswith("fnt_") and info.id.startswith("tok_")
    assert store.lookup_token(token) == info and not info.revoked
    assert store.lookup_token(token + "x") is None
    with store.engine.connect() as conn:
        dump = "".join(str(v) for row in conn.exec_driver_sql("SELECT * FROM tokens") for v in row)
    assert token not in dump  # only the hash is stored
    _, token2 = store.create_token("pixel8-lab")
    assert store.revoke_token(info.id).revoked
    assert store.lookup_token(token).revoked and not store.lookup_token(token2).revoked
    assert store.revoke_token(token2).revoked
    assert [t.device for t in store.list_tokens()] == ["pixel8-lab", "pixel8-lab"]
    with pytest.raises(KeyError, match="freenet token list"):
        store.revoke_token("tok_nothere")


def test_store_reopens_existing_database(db_url, make_report):
    with Store(db_url) as s:
        s.add_report(make_report(1))
    with Store(db_url) as s:
        assert s.count() == 1 and s.add_report(make_report(1)) is False


def test_rejects_bad_urls(tmp_path):
    with pytest.raises(ValueError, match="unsupported database"):
        Store("mysql://x@localhost/db")
    with pytest.raises(ValueError, match="SQLite file"):
        Store("sqlite://")


@pytest.mark.parametrize(("name", "family"), [("freenet_s2", "FreeNet"), ("starnet_s4", "StarNet"),
                                              ("mobilenetv2_100", "MobileNet"), ("MobileNetV4", "MobileNet"),
                                              ("resnet50", "other")])
def test_model_family(name, family):
    assert model_family(name) == family


def test_device_label(make_report):
    assert device_label(parse_report(make_report(0))) == "AMD EPYC 7B13"
    doc = make_report(0, device={"manufacturer": "Google", "model": "Pixel 8"})
    assert device_label(parse_report(doc)) == "Google Pixel 8"


def test_add_reports_batch_counts_only_new(store, make_report):
    assert store.add_reports([make_report(i) for i in range(5)]) == 5
    assert store.add_reports([make_report(i) for i in range(3, 8)]) == 3
    assert store.add_reports([]) == 0
    assert store.count() == 8
