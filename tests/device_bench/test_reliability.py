"""Reliability against a real uvicorn server on 127.0.0.1 (SQLite WAL and PostgreSQL):
concurrent ingest stored exactly once, SIGKILL mid-ingest loses no acknowledged report,
and fuzzed bodies never produce a 5xx."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_bench.store import Store

CLIENTS, PER_CLIENT = 50, 20


def _token(db_url: str) -> str:
    with Store(db_url) as s:
        return s.create_token("reliability")[1]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])  # 2: `serve --workers`, writers of two processes race
def test_concurrent_clients_store_every_report_exactly_once(db_url, server_factory, make_report, workers):
    token = _token(db_url)
    server = server_factory(db_url, workers=workers)
    statuses: list[int] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            for i in range(PER_CLIENT):
                doc = make_report(c * 1000 + i, samples=[1.0 + (c + i) % 7, 2.0, 3.0])
                r = http.post("/api/v1/reports", json=doc)
                # Every 5th report is resent at once, as a client would after a lost response.
                r2 = http.post("/api/v1/reports", json=doc) if i % 5 == 0 else None
                with lock:
                    statuses.append(r.status_code)
                    if r2 is not None:
                        statuses.append(-r2.status_code)

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    assert not [s for s in statuses if abs(s) >= 500], "server errors under load"
    assert statuses.count(201) == CLIENTS * PER_CLIENT
    assert statuses.count(-200) == CLIENTS * PER_CLIENT // 5  # resends: accepted, not stored again
    with Store(db_url) as s:
        assert s.count() == CLIENTS * PER_CLIENT


@pytest.mark.slow
def test_sigkill_during_ingest_loses_no_acknowledged_report(db_url, server_factory, make_report):
    token = _token(db_url)
    server = server_factory(db_url)
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(c: int) -> None:
        with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
            for i in range(10_000):
                if stop.is_set():
                    return
                doc = make_report(c * 100_000 + i)
                try:
                    r = http.post("/api/v1/reports", json=doc)
                except httpx.HTTPError:
                    return  # the server died mid-request: no acknowledgement, no promise
                if r.status_code in (200, 201):
                    with lock:
                        acked.append(doc["run_id"])

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client, c) for c in range(8)]
        deadline = time.monotonic() + 30
        while len(acked) < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()
        stop.set()
        for f in futures:
            f.result()
    assert len(acked) >= 100, "too few reports acknowledged before the kill to test anything"
    restarted = server_factory(db_url)
    with Store(db_url) as s:
        stored = {r.run_id for r in s.query(limit=10_000)}
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged reports lost after SIGKILL"
    # Resending an acknowledged report after the restart is accepted and not counted again.
    before = len(stored)
    with httpx.Client(base_url=restarted.base, headers={"Authorization": f"Bearer {token}"}) as http:
        c, i = divmod(int(acked[0].replace("-", ""), 16) - (0xF1EE << 100), 100_000)
        r = http.post("/api/v1/reports", json=make_report(c * 100_000 + i))
    assert r.status_code == 200
    with Store(db_url) as s:
        assert s.count() == before


# ---- fuzzing ----------------------------------------------------------------------------------

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            yield from _paths(v, prefix + (i,))


@pytest.mark.slow
def test_fuzzed_reports_never_5xx(tmp_path, server_factory, make_report):
    db_url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    token = _token(db_url)
    server = server_factory(db_url, max_body=256 * 1024)
    base = make_report(1)
    paths = [p for p in _paths(base) if p]
    http = httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    @settings(max_examples=150, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(path=st.sampled_from(paths), value=json_value, raw=st.booleans(), junk=st.binary(max_size=64))
    def check(path, value, raw, junk):
        doc = json.loads(json.dumps(base))
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        body = junk if raw and junk else json.dumps(doc, allow_nan=True).encode()
        r = http.post("/api/v1/reports", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code < 500, (r.status_code, r.text[:500], body[:300])
        if r.status_code == 422:
            assert all("field" in e and "msg" in e for e in r.json()["detail"])
        else:
            assert r.status_code in (200, 201), r.text[:300]

    try:
        check()
    finally:
        http.close()


# ---- batch endpoint and precomputed state --------------------------------------------------------


def _consistent(db_url: str) -> None:
    """Everything precomputed equals what the stored reports give: report_groups.n_reports is the
    true count of each group, and the summary (windows from the cache, statistics from the memo)
    equals one computed afresh from the samples in each report's own JSON."""
    from sqlalchemy import text

    from device_bench.store import GROUP_KEYS
    from device_bench.summary import summarize_groups

    with Store(db_url) as s:
        with s.engine.connect() as conn:
            counted = dict(conn.execute(text("SELECT group_id, COUNT(*) FROM reports GROUP BY group_id")).all())
            kept = {g: n for g, n in conn.execute(text("SELECT id, n_reports FROM report_groups")).all() if n or g in counted}
        assert kept == counted, "report_groups.n_reports differs from the stored reports"
        s.summary()  # fill the memo and the window cache, then ask again
        served = [g.as_dict() for g in s.summary(with_samples=False)]
        runs = s.group_samples(max_runs=50)
        for r in runs:  # the samples as the report itself carries them, not the samples column
            r["samples"] = list(s.get_report(r["run_id"]).timing.samples_ms)
            assert all(k in r for k in GROUP_KEYS)
        assert served == [g.as_dict() for g in summarize_groups(runs)]


@pytest.mark.slow
def test_concurrent_batches_store_every_report_exactly_once(db_url, server_factory, make_report):
    token = _token(db_url)
    server = server_factory(db_url)
    results: list[dict] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
            for b in range(4):
                # Each batch overlaps the next client's ids: the same run ids race between clients.
                docs = [make_report(((c + k // 5) % CLIENTS) * 1000 + b * 5 + k % 5,
                                    samples=[1.0 + (c + k) % 5, 2.0, 3.0]) for k in range(10)]
                r = http.post("/api/v1/reports/batch", json={"reports": docs})
                assert r.status_code == 200, r.text[:300]
                with lock:
                    results.extend(r.json()["results"])

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    unique = {x["run_id"] for x in results}
    created = [x["run_id"] for x in results if x["status"] == 201]
    assert sorted(created) == sorted(unique), "each run id is created exactly once"
    assert all(x["status"] in (200, 201) for x in results)
    with Store(db_url) as s:
        assert s.count() == len(unique)
    _consistent(db_url)


@pytest.mark.slow
def test_sigkill_during_batch_ingest_loses_nothing_acknowledged(db_url, server_factory, make_report):
    token = _token(db_url)
    server = server_factory(db_url)
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(c: int) -> None:
        with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
            for b in range(10_000):
                if stop.is_set():
                    return
                docs = [make_report(c * 1_000_000 + b * 20 + k, model=("freenet_s2", "starnet_s4")[k % 2],
                                    samples=[1.0 + k % 3, 2.0 + b % 5]) for k in range(20)]
                try:
                    if b % 3 == 0:  # single posts too, on the same group-commit path
                        for d in docs[:3]:
                            r = http.post("/api/v1/reports", json=d)
                            if r.status_code in (200, 201):
                                with lock:
                                    acked.append(d["run_id"])
                        continue
                    r = http.post("/api/v1/reports/batch", json={"reports": docs})
                except httpx.HTTPError:
                    return  # died mid-request: nothing of this request was acknowledged
                if r.status_code == 200:
                    with lock:
                        acked.extend(x["run_id"] for x in r.json()["results"] if x["status"] in (200, 201))

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client, c) for c in range(8)]
        deadline = time.monotonic() + 30
        while len(acked) < 400 and time.monotonic() < deadline:
            time.sleep(0.02)
        server.kill()
        stop.set()
        for f in futures:
            f.result()
    assert len(acked) >= 400, "too few reports acknowledged before the kill to test anything"
    server_factory(db_url)  # restarts on the killed database (SQLite: WAL recovery)
    with Store(db_url) as s:
        stored = {r.run_id for r in s.query(limit=10_000)}
        assert s.count() == len(stored)
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged reports lost after SIGKILL"
    _consistent(db_url)
