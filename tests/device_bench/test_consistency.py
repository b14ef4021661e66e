"""What makes the summary fast must not change a number: per-report statistics, the bootstrap's
windowed order statistics, the group counters, the window cache and the statistics memo are each
checked against a recomputation from raw samples (SQLite and PostgreSQL); plus cursor paging."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from device_bench import stats
from device_bench.schema import parse_report
from device_bench.server import create_app
from device_bench.store import Store
from device_bench.summary import StatsMemo, summarize_groups


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    yield s
    s.close()


@pytest.mark.parametrize("kind", ["lognormal", "rounded", "uniform", "ties"])
def test_center_is_summarize_bit_for_bit(kind):
    rng = np.random.default_rng(1)
    for n in [*range(1, 120), 299, 300, 301, 15000]:
        x = {"lognormal": lambda: rng.lognormal(1, 0.5, n), "rounded": lambda: np.round(rng.lognormal(1, 0.5, n), 1),
             "uniform": lambda: rng.uniform(1e-3, 1e3, n), "ties": lambda: rng.integers(1, 4, n).astype(float)}[kind]()
        s = stats.summarize(x)
        assert stats.center(x) == (s.n, s.median, s.mean), n
    assert stats.center([]) == (0, None, None)


def _full_bootstrap_medians(x, resamples, rng):
    """The previous implementation: the binomial cdf over all n positions."""
    from scipy.stats import binom

    xs = np.sort(x)
    n = xs.size
    p = np.arange(1, n + 1) / n
    u = rng.random(resamples)

    def order_stat(k):
        return xs[np.minimum(np.searchsorted(binom.sf(k - 1, n, p), u), n - 1)]

    if n % 2:
        return order_stat((n + 1) // 2)
    return (order_stat(n // 2) + order_stat(n // 2 + 1)) / 2


@pytest.mark.parametrize("n", [200, 201, 999, 3000, 15001])
@pytest.mark.parametrize("seed", [0, 7])
def test_windowed_order_statistics_equal_the_full_evaluation(n, seed):
    x = np.random.default_rng(seed).lognormal(1, 0.3, n)
    got = stats._bootstrap_medians(x, 2000, np.random.default_rng(seed))
    want = _full_bootstrap_medians(x, 2000, np.random.default_rng(seed))
    np.testing.assert_array_equal(got, want)


def _fresh(store: Store, max_runs: int = 50, baseline: str | None = None):
    """The summary recomputed from each report's own samples, no memo, no cache."""
    runs = store.group_samples(max_runs=max_runs, with_samples=False)
    for r in runs:
        r["samples"] = list(store.get_report(r["run_id"]).timing.samples_ms)
    return [g.as_dict() for g in summarize_groups(runs, baseline=baseline)]


def _counts_ok(store: Store) -> None:
    with store.engine.connect() as conn:
        counted = dict(conn.execute(text("SELECT group_id, COUNT(*) FROM reports GROUP BY group_id")).all())
        kept = dict(conn.execute(text("SELECT id, n_reports FROM report_groups WHERE n_reports > 0")).all())
    assert kept == counted


def test_memo_and_window_cache_follow_every_ingest(store, make_report):
    models = ("freenet_s2", "starnet_s4", "mobilenetv2_100")
    rng = np.random.default_rng(0)
    i = 0
    for step in range(6):
        docs = []
        for _ in range(7):
            i += 1
            docs.append(make_report(i, model=models[i % 3], runtime={"accelerator": ("cpu", "xnnpack")[i % 2]},
                                    samples=np.round(rng.lognormal(1 + (i % 3) * 0.1, 0.1, 40 + i % 5), 3).tolist(),
                                    created_at=f"2026-11-25T10:{i // 60:02d}:{i % 60:02d}Z"))
        # Every path in: one transaction, one per report, the group-commit writer, and duplicates.
        (store.add_reports, lambda d: [store.add_report(x) for x in d],
         lambda d: store.ingest([parse_report(x) for x in d]))[step % 3](docs)
        assert store.add_reports(docs[:3]) == 0
        for max_runs in (50, 3):
            got = [g.as_dict() for g in store.summary(max_runs=max_runs, baseline="mobilenetv2_100", with_samples=False)]
            assert got == _fresh(store, max_runs, "mobilenetv2_100")
        _counts_ok(store)
    assert store.memo.hits > 0  # the memo did serve (the equality above is not vacuous)
    assert store.count() == i


def test_concurrent_group_commit_counts_each_report_once(store, make_report):
    docs = [make_report(i, model=("freenet_s2", "starnet_s4")[i % 2], samples=[1.0 + i % 4, 2.0]) for i in range(120)]
    results: list[bool] = []
    lock = threading.Lock()

    def send(k: int) -> None:
        # Overlapping slices: every report is sent by two threads at once.
        got = store.ingest([parse_report(d) for d in docs[k * 10:k * 10 + 20]])
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == len(docs) and store.count() == len(docs)
    _counts_ok(store)
    assert [g.as_dict() for g in store.summary(with_samples=False)] == _fresh(store)


def test_memo_is_exact_for_a_pure_function():
    memo = StatsMemo(max_entries=2)
    memo.put(("a",), 1)
    memo.put(("b",), 2)
    memo.get(("a",))
    memo.put(("c",), 3)  # drops the least recently used, ("b",)
    assert memo.get(("b",)) is None and memo.get(("a",)) == 1 and memo.get(("c",)) == 3


def test_pages_cover_every_report_once_newest_first(store, make_report):
    for i in range(57):
        # Repeated timestamps: the id orders reports of the same second.
        store.add_report(make_report(i, model=("freenet_s2", "starnet_s4")[i % 2],
                                     created_at=f"2026-11-25T10:00:{i // 3:02d}Z"))
    want = [r.run_id for r in store.query(limit=1000)]
    seen, cursor = [], None
    while True:
        page = store.page(limit=10, cursor=cursor)
        seen += [r.run_id for r in page.rows]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == want and len(set(seen)) == 57
    assert [r.created_at for r in store.query(limit=1000)] == sorted((r.created_at for r in store.query(limit=1000)), reverse=True)
    only = store.page(limit=5, model="starnet_s4")
    more = store.page(limit=100, model="starnet_s4", cursor=only.next_cursor)
    assert len(only.rows) + len(more.rows) == 28 and more.next_cursor is None
    assert {r.model for r in only.rows + more.rows} == {"starnet_s4"}
    with pytest.raises(ValueError, match="cursor"):
        store.page(cursor="not-a-cursor")


def test_http_pages_and_dashboard_link(tmp_path, make_report):
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    _, token = store.create_token("t")
    api = TestClient(create_app(store=store))
    for i in range(120):
        store.add_report(make_report(i, created_at=f"2026-11-25T10:{i // 60:02d}:{i % 60:02d}Z"))
    first = api.get("/api/v1/reports", params={"limit": 100}).json()
    second = api.get("/api/v1/reports", params={"limit": 100, "cursor": first["next_cursor"]}).json()
    assert len(first["reports"]) == 100 and len(second["reports"]) == 20 and second["next_cursor"] is None
    assert first["reports"][0]["created_at"] == "2026-11-25T10:01:59Z"
    assert api.get("/api/v1/reports", params={"cursor": "zzz"}).status_code == 422
    assert api.get("/api/v1/reports", params={"limit": 1001}).status_code == 422
    page = api.get("/")
    assert page.status_code == 200 and 'id="older"' in page.text
    older = page.text.split('id="older" href="')[1].split('"')[0].replace("&amp;", "&")
    page2 = api.get(older)
    # 50 per page, newest (119) first: the second page starts at 69.
    assert page2.status_code == 200 and make_report(69)["run_id"] in page2.text.split("Latest reports")[1]
    assert make_report(69)["run_id"] not in page.text.split("Latest reports")[1]
    assert make_report(70)["run_id"] in page.text.split("Latest reports")[1]
    store.close()


def test_dashboard_tables_follow_ingest(tmp_path, make_report):
    from device_bench import dashboard

    store = Store(f"sqlite:///{tmp_path / 'd.db'}")
    store.add_report(make_report(1, samples=[5.0, 5.0, 5.0]))
    first = dashboard.render_index(store)
    assert ">5.00 [" in first
    store.add_report(make_report(2, samples=[7.0, 7.0, 7.0, 7.0]))  # pooled median becomes 7
    second = dashboard.render_index(store)
    assert ">7.00 [" in second and second != first
    other = Store(f"sqlite:///{tmp_path / 'other.db'}")  # same group ids and counts, other numbers
    other.add_report(make_report(3, samples=[1.0, 1.0]))
    other.add_report(make_report(4, samples=[1.0, 1.0]))
    assert ">1.00 [" in dashboard.render_index(other) and ">7.00 [" not in dashboard.render_index(other)
    fresh = Store(store.url)
    assert dashboard.render_index(fresh) == second  # a new process shows what the old one showed
    for s in (other, fresh):
        s.close()
    store.close()


def test_compare_endpoint_follows_ingest(tmp_path, make_report):
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    api = TestClient(create_app(store=store))
    store.add_report(make_report(1, samples=[5.0, 5.0]))
    median = lambda: api.get("/api/v1/compare").json()["groups"][0]["models"][0]["stats"]["median_ms"]  # noqa: E731
    assert median() == 5.0 and median() == 5.0  # the second answer is the cached one
    store.add_report(make_report(2, samples=[9.0, 9.0, 9.0]))
    assert median() == 9.0
    store.close()


def test_persisted_statistics_survive_a_restart_and_follow_ingest(db_url, make_report, monkeypatch):
    """summary_cache (migration 0005): after a restart the summary is read back, not recomputed,
    and equals the recomputation from raw samples; after ingest, duplicate ingest, or ingest that
    committed but never reached the cache (a crash between the two), the new windows are
    recomputed and the old entries are not served for them."""
    from device_bench import summary as summary_mod

    models = ("freenet_s2", "starnet_s4", "mobilenetv2_100")
    rng = np.random.default_rng(3)

    def docs(start: int, n: int) -> list[dict]:
        return [make_report(i, model=models[i % 3], runtime={"accelerator": ("cpu", "xnnpack")[i % 2]},
                            samples=np.round(rng.lognormal(1 + (i % 3) * 0.1, 0.1, 250 + i % 7), 3).tolist(),
                            created_at=f"2026-11-25T11:{i // 60:02d}:{i % 60:02d}Z")
                for i in range(start, start + n)]

    def summary(store: Store) -> list[dict]:
        return [g.as_dict() for g in store.summary(baseline="mobilenetv2_100", with_samples=False)]

    with Store(db_url) as s:
        s.add_reports(docs(0, 12))
        first = summary(s)
    with Store(db_url) as s:  # a restart: nothing in memory
        with monkeypatch.context() as m:  # served from the table: the statistics are not run at all
            m.setattr(summary_mod, "summarize", lambda *a: pytest.fail("summarize recomputed after a restart"))
            m.setattr(summary_mod, "compare_runs", lambda *a, **k: pytest.fail("compare_runs recomputed after a restart"))
            m.setattr(summary_mod, "stability", lambda *a, **k: pytest.fail("stability recomputed after a restart"))
            assert summary(s) == first
        assert s.memo.loaded > 0
        # The persisted numbers are the ones a recomputation from raw samples gives, bit for bit
        # (the bootstrap's seed is fixed: the same samples always give the same interval).
        assert first == _fresh(s, 50, "mobilenetv2_100")
        assert s.add_reports(docs(0, 12)) == 0  # duplicate ingest: same windows, same entries
        assert summary(s) == first
        # Ingest that commits but whose summary is never computed: the process "dies" before the
        # cache update (closing here is what a SIGKILL leaves: committed reports, no entries).
        assert s.add_reports(docs(12, 4)) == 4
    with Store(db_url) as s:
        got = summary(s)
        assert got == _fresh(s, 50, "mobilenetv2_100")
        assert got != first  # the new reports did change the numbers (the check is not vacuous)
        # Ingest and a summary whose cache write fails: the summary is still right, and so is
        # the next one after a restart.
        s.add_reports(docs(16, 3))
        with monkeypatch.context() as m:
            m.setattr(s.memo.backend, "save", lambda items: (_ for _ in ()).throw(RuntimeError("disk full")))
            assert summary(s) == _fresh(s, 50, "mobilenetv2_100")
    with Store(db_url) as s:
        assert summary(s) == _fresh(s, 50, "mobilenetv2_100")
        with s.engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM summary_cache")).scalar_one() > 0


def test_persist_key_is_the_ordered_window_and_the_statistics_version(monkeypatch):
    from device_bench import summary as summary_mod

    k = summary_mod.persist_key(("compare", ("a", "b"), ("c",)))
    assert k != summary_mod.persist_key(("compare", ("b", "a"), ("c",)))  # order is part of the pooled samples
    assert k != summary_mod.persist_key(("compare", ("a", "b", "x"), ("c",)))
    assert k != summary_mod.persist_key(("summary", ("a", "b")))
    monkeypatch.setattr(summary_mod, "stats_version", lambda: "other statistics code")
    assert k != summary_mod.persist_key(("compare", ("a", "b"), ("c",)))


@pytest.mark.parametrize("n", [150, 300, 15000])
def test_compare_reusing_sorted_copies_gives_the_same_numbers(n):
    """stats._sorted keeps a sorted copy only of read-only arrays (summary.py hands those in):
    comparing them again, or comparing writable copies, or a writable array changed in place
    after a compare, gives exactly what a fresh computation gives."""
    rng = np.random.default_rng(n)
    a, b = rng.lognormal(1, 0.2, n), rng.lognormal(1.05, 0.2, n + 1)
    want = stats.compare(a.copy(), b.copy())
    ra, rb = a.copy(), b.copy()
    ra.flags.writeable = rb.flags.writeable = False
    assert stats.compare(ra, rb) == want
    assert stats.compare(ra, rb) == want  # served from the sorted copies
    w = a.copy()
    stats.compare(w, b)
    w *= 2  # a writable array may change: nothing cached for it
    assert stats.compare(w, b) == stats.compare((a * 2).copy(), b.copy())
