"""Aggregator storage benchmark: ingest throughput and summary latency, targets side by side.

Measures, on SQLite (WAL file) and PostgreSQL (the cluster of scripts/setup_postgres.sh or
FREENET_TEST_PG_URL), with reports of 300 raw samples each:
  * Store ingest: `Store.add_report(dict)` one report per transaction (validation included), and
    `Store.add_batch` of already validated reports in flushes of 100 (a runner's queue);
  * HTTP ingest: `POST /api/v1/reports` and `POST /api/v1/reports/batch` (100 per request) to a
    real `freenet serve` from 8 client processes;
  * the curve at each --sizes (the database filled in bulk with `Store.add_batch`, never through
    HTTP): the full dashboard summary (`Store.summary()`, bootstrap included) with nothing cached
    (empty summary_cache, as on the first start after upgrading to 0005), cold (empty memo and
    window cache, as after a restart: statistics come from summary_cache), warm (nothing changed since the last one) and after one new
    report in each of 8 groups; one group's summary; the dashboard's first page, its compare JSON
    and a report listing through HTTP; `count()`. Latencies are medians of --repeats runs.
Usage: nice python benchmarks/bench_ingest.py [--sizes 10000,100000,1000000] [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from device_bench.schema import Report  # noqa: E402
from device_bench.stats import fmt  # noqa: E402
from device_bench.store import Store, _values, group_key_hash  # noqa: E402
from device_bench.store import reports as reports_table  # noqa: E402
from device_bench.store import summary_cache  # noqa: E402

DEVICES = [("Google", "Pixel 8", "Tensor G3"), ("Samsung", "SM-S921B", "Exynos 2400"),
           ("Apple", "iPhone15,2", "A16 Bionic"), ("AMD", "EPYC 7B13", "x86_64")]
RUNTIMES = [("litert", "gpu"), ("litert", "xnnpack"), ("onnxruntime", "nnapi"), ("executorch", "xnnpack")]
MODELS = [("freenet_s1", 300e6), ("freenet_s2", 547e6), ("starnet_s2", 547e6), ("starnet_s4", 1050e6),
          ("mobilenetv2_100", 300e6), ("mobilenetv4_conv_small", 190e6)]
SAMPLES = 300  # raw samples per report ("realistic size")
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

# (target text, predicate on the measured value) per metric; None: shown without a target.
TARGETS = {
    "Store.add_report, 1 per transaction (reports/s)": None,
    "Store.add_batch, flushes of 100 (reports/s)": (">= 5000", lambda v: v >= 5000),
    "HTTP POST /reports, 8 clients (reports/s)": (">= 1000", lambda v: v >= 1000),
    "HTTP POST /reports/batch x100, 8 clients (reports/s)": (">= 1000", lambda v: v >= 1000),
}


class Generator:
    """Reports of 4 devices x 4 runtimes x 6 models (96 groups), created_at one second apart."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.i = 0

    def doc(self) -> dict:
        rng, self.i = self.rng, self.i + 1
        man, model, soc = DEVICES[rng.integers(len(DEVICES))]
        runtime, acc = RUNTIMES[rng.integers(len(RUNTIMES))]
        name, macs = MODELS[rng.integers(len(MODELS))]
        base = macs / 1e8 * rng.uniform(0.9, 1.1)
        t = T0 + timedelta(seconds=self.i)
        iso = t.isoformat().replace("+00:00", "Z")
        return {
            "schema_version": "1", "run_id": str(uuid.UUID(bytes=rng.bytes(16), version=4)),
            "created_at": iso, "started_at": iso, "finished_at": iso,
            "client": {"app": "bench", "platform": "android", "app_version": "0"},
            "device": {"manufacturer": man, "model": model, "soc": soc, "os": "android", "os_version": "15"},
            "runtime": {"name": runtime, "version": "1", "accelerator": acc, "emulated": False},
            "model": {"name": name, "artifact_id": name, "format": "tflite", "precision": "fp32",
                      "sha256": "0" * 64, "input_shape": [1, 3, 224, 224], "macs": int(macs)},
            "timing": {"load_ms": 50.0, "first_inference_ms": base * 2, "warmup_runs": 5,
                       "samples_ms": np.round(base * rng.lognormal(0, 0.05, SAMPLES), 4).tolist()},
            "thermal": {"before": "nominal", "after": "nominal"}, "status": "ok",
        }

    def fast_reports(self, n: int) -> list[Report]:
        """Validated reports for bulk fill: one validated template per group, copied with a new
        run id, time and samples (validation of 1M reports would dominate the fill)."""
        out = []
        for _ in range(n):
            d = self.doc()
            key = (d["device"]["model"], d["runtime"]["name"], d["runtime"]["accelerator"], d["model"]["name"])
            tpl = self._templates.get(key) if hasattr(self, "_templates") else None
            if tpl is None:
                self.__dict__.setdefault("_templates", {})[key] = tpl = Report.model_validate_json(_dumps(d))
            t = datetime.fromisoformat(d["created_at"].replace("Z", "+00:00"))
            out.append(tpl.model_copy(update={
                "run_id": uuid.UUID(d["run_id"]), "created_at": t, "started_at": t, "finished_at": t,
                "timing": tpl.timing.model_copy(update={"samples_ms": d["timing"]["samples_ms"]}),
            }))
        return out


def _dumps(d) -> bytes:
    import json

    return json.dumps(d).encode()


def bulk_fill(store: Store, reports: list[Report]) -> None:
    """Bench data in bulk, bypassing HTTP: rows built by the store's own `_values` and counted in
    report_groups in the same transaction. SQLite: `Store.add_batch` (already an executemany);
    PostgreSQL: COPY, then the group counts (the reports are new: run ids are random)."""
    if store.dialect == "sqlite" or len(reports) < 200:
        store.add_batch(reports)
        return
    rows = [_values(r, None) for r in reports]
    missing = [r for r, row in zip(reports, rows) if group_key_hash(row) not in store._group_ids]
    if missing:  # a group seen for the first time: created the ordinary way
        store.add_batch(missing)
        gone = {id(r) for r in missing}
        return bulk_fill(store, [r for r in reports if id(r) not in gone])
    counts = Counter()
    for row in rows:
        row["group_id"] = store._group_ids[group_key_hash(row)]
        counts[row["group_id"]] += 1
    cols = [c.name for c in reports_table.columns if c.name != "id"]
    with store._write() as conn:
        cur = conn.connection.driver_connection.cursor()
        with cur.copy(f"COPY reports ({', '.join(cols)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(tuple(row[c] for c in cols))
        cur.executemany("UPDATE report_groups SET n_reports = n_reports + %s WHERE id = %s",
                        [(k, g) for g, k in sorted(counts.items())])


def pg_url() -> str:
    url = os.environ.get("FREENET_TEST_PG_URL")
    if url:
        return url
    out = subprocess.run(["bash", str(ROOT / "scripts/setup_postgres.sh")], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def fresh_db(kind: str, tmp: Path) -> tuple[str, callable]:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'bench.db'}", lambda: None
    import psycopg
    from sqlalchemy.engine import make_url

    base = pg_url()
    admin = make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"freenet_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        # FORCE can be refused (a backend of another role, e.g. an autovacuum worker, still on
        # it): then wait for it and drop plainly; a leftover bench database never loses the results
        for attempt in range(10):
            try:
                with psycopg.connect(admin, autocommit=True) as c:
                    c.execute(f'DROP DATABASE IF EXISTS "{name}"' + (" WITH (FORCE)" if attempt == 0 else ""))
                return
            except psycopg.Error as exc:
                err = exc
                time.sleep(1)
        print(f"warning: could not drop the bench database {name}: {err}", file=sys.stderr)

    return make_url(base).set(database=name).render_as_string(hide_password=False), drop


class Server:
    def __init__(self, url: str, workers: int = 1):
        self.port = 18000 + int.from_bytes(os.urandom(2), "little") % 2000
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "device_bench.cli", "serve", "--db", url,
                                      "--port", str(self.port), "--log-level", "warning", "--workers", str(workers)],
                                     cwd=ROOT, env=env)
        for _ in range(600):
            try:
                if httpx.get(self.base + "/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def cpu_s(self) -> float:
        """CPU seconds the server's processes (with --workers: the workers too) have used (user +
        system), from /proc."""
        total = 0.0
        for pid in [self.proc.pid, *self._children(self.proc.pid)]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    @staticmethod
    def _children(pid: int) -> list[int]:
        """Descendants of pid, from the parent pid in /proc/*/stat."""
        parent = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (FileNotFoundError, ProcessLookupError, IndexError):
                    pass
        out, todo = [], [pid]
        while todo:
            p = todo.pop()
            kids = [c for c, pp in parent.items() if pp == p]
            out += kids
            todo += kids
        return out

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


_BODIES: list[bytes] = []  # the request bodies, set before the client processes fork (never pickled)


def _client(args) -> tuple[list[int], float]:
    """One load client: a persistent HTTP/1.1 connection (http.client, keep-alive) POSTing its
    share of the pre-serialized bodies one after another. A phone is not on the server's CPU; on this
    2-core machine the clients are, so they must cost little (their CPU is reported apart)."""
    import http.client
    from urllib.parse import urlsplit

    base, token, path, start, step = args
    bad = []
    c0 = time.process_time()
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Connection": "keep-alive"}
    try:
        for body in (_BODIES[start::step] if step else []):
            conn.request("POST", path, body=body, headers=headers)
            r = conn.getresponse()
            text = r.read()
            if r.status not in (200, 201) or (path.endswith("batch") and b'"status":422' in text):
                bad.append(r.status)
        if not step:
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
    finally:
        conn.close()
    return bad, time.process_time() - c0


def http_ingest(server: Server, token: str, bodies: list[bytes], path: str, clients: int = 8) -> tuple[float, float]:
    """Bodies split over `clients` processes (no shared GIL with the server or each other), each
    with one keep-alive connection. Returns (wall seconds, CPU seconds the clients used): they share
    the machine's cores."""
    global _BODIES
    _BODIES = bodies  # inherited by the forked clients: nothing to pickle inside the timed part
    chunks = [(server.base, token, path, i, clients) for i in range(clients)]
    try:
        with mp.get_context("fork").Pool(clients) as pool:
            pool.map(_client, [(server.base, token, "/api/v1/health", 0, 0)] * clients)  # start the workers
            t0 = time.perf_counter()
            out = pool.map(_client, chunks, chunksize=1)
            dt = time.perf_counter() - t0
    finally:
        _BODIES = []
    bad = [s for r, _ in out for s in r]
    if bad:
        raise RuntimeError(f"HTTP ingest errors: {sorted(set(bad))}")
    return dt, sum(c for _, c in out)


def timed(fn, repeats: int, before=None) -> float:
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def http_ms(url: str, repeats: int) -> float:
    with httpx.Client(timeout=120) as c:
        def get():
            r = c.get(url)
            r.raise_for_status()
        get()  # the first request after start-up fills the server's memo; later ones are served warm
        return timed(get, repeats)


def _bench_ingest(url: str, gen: Generator, args, res: dict[str, float]) -> None:
    import json

    with Store(url) as store:
        docs = [gen.doc() for _ in range(args.single)]
        t0, c0 = time.perf_counter(), time.process_time()
        for d in docs:
            store.add_report(d)
        res["Store.add_report, 1 per transaction (reports/s)"] = len(docs) / (time.perf_counter() - t0)
        res["  CPU per report, add_report (us)"] = (time.process_time() - c0) / len(docs) * 1e6
        reps = [Report.model_validate_json(_dumps(gen.doc())) for _ in range(args.batch)]
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(reps), 100):
            store.add_batch(reps[i:i + 100])
        res["Store.add_batch, flushes of 100 (reports/s)"] = len(reps) / (time.perf_counter() - t0)
        res["  CPU per report, add_batch (us)"] = (time.process_time() - c0) / len(reps) * 1e6
        token = store.create_token("bench")[1]
    server = Server(url, workers=args.workers)
    try:
        bodies = [_dumps(gen.doc()) for _ in range(args.http)]
        cpu0 = server.cpu_s()
        dt, client_cpu = http_ingest(server, token, bodies, "/api/v1/reports")
        res["HTTP POST /reports, 8 clients (reports/s)"] = len(bodies) / dt
        res["  server CPU per report, POST /reports (us)"] = (server.cpu_s() - cpu0) / len(bodies) * 1e6
        res["  clients' CPU per report, POST /reports (us)"] = client_cpu / len(bodies) * 1e6
        docs = [gen.doc() for _ in range(args.http * 2)]
        bodies = [json.dumps({"reports": docs[i:i + 100]}).encode() for i in range(0, len(docs), 100)]
        cpu0 = server.cpu_s()
        dt, client_cpu = http_ingest(server, token, bodies, "/api/v1/reports/batch")
        res["HTTP POST /reports/batch x100, 8 clients (reports/s)"] = len(docs) / dt
        res["  server CPU per report, POST /reports/batch (us)"] = (server.cpu_s() - cpu0) / len(docs) * 1e6
        res["  clients' CPU per report, POST /reports/batch (us)"] = client_cpu / len(docs) * 1e6
    finally:
        server.stop()


def bench(kind: str, sizes: list[int], args) -> dict[str, float]:
    gen = Generator(0)
    res: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        url, drop = fresh_db(kind, Path(tmp))
        try:
            if args.skip_ingest:
                pass
            else:
                _bench_ingest(url, gen, args, res)
            for size in sizes:
                with Store(url) as store:
                    t0, have = time.perf_counter(), store.count()
                    while (now := store.count()) < size:
                        bulk_fill(store, gen.fast_reports(min(5000, size - now)))
                    print(f"[{kind}] filled {have} -> {size} reports at "
                          f"{(size - have) / (time.perf_counter() - t0):.0f}/s", file=sys.stderr, flush=True)
                    cold = lambda: (store.memo.clear(), store._window_cache.clear())  # noqa: E731

                    def empty_cache() -> None:  # as on the first start after upgrading to 0005
                        cold()
                        with store._write() as conn:
                            conn.execute(summary_cache.delete())
                    res[f"{size}: full summary, nothing cached yet, 1 run (ms)"] = timed(
                        lambda: store.summary(with_samples=False), 1, before=empty_cache)
                    res[f"{size}: full summary, cold (ms)"] = timed(lambda: store.summary(with_samples=False),
                                                                   args.repeats, before=cold)
                    store.summary(with_samples=False)
                    res[f"{size}: full summary, warm (ms)"] = timed(lambda: store.summary(with_samples=False),
                                                                   args.repeats)
                    res[f"{size}: full summary, 8 groups changed (ms)"] = timed(
                        lambda: store.summary(with_samples=False), args.repeats,
                        before=lambda: store.add_batch(gen.fast_reports(8)))
                    one = dict(device="Google Pixel 8", runtime="litert", accelerator="gpu")
                    res[f"{size}: one group's summary, cold (ms)"] = timed(
                        lambda: store.summary(with_samples=False, **one), args.repeats, before=cold)
                    res[f"{size}: count() (ms)"] = timed(store.count, args.repeats)
                server = Server(url)
                try:
                    res[f"{size}: HTTP GET / dashboard first page (ms)"] = http_ms(server.base + "/", args.repeats)
                    res[f"{size}: HTTP GET /api/v1/compare (ms)"] = http_ms(server.base + "/api/v1/compare", args.repeats)
                    res[f"{size}: HTTP GET /api/v1/reports?limit=100 (ms)"] = http_ms(
                        server.base + "/api/v1/reports?limit=100", args.repeats)
                finally:
                    server.stop()
                for k, v in res.items():  # partial results, in case a long run is cut short
                    if k.startswith(f"{size}:"):
                        print(f"[{kind}] {k}: {v:.1f}", file=sys.stderr, flush=True)
            return res
        finally:
            drop()


def target_of(metric: str):
    if metric in TARGETS:
        return TARGETS[metric]
    size = int(metric.split(":")[0]) if metric[0].isdigit() else None
    if "full summary" in metric or "compare" in metric:
        if size == 100_000:
            return "<= 100", lambda v: v <= 100
        if size == 1_000_000:
            return "<= 1000", lambda v: v <= 1000
    if "dashboard first page" in metric and size == 100_000:
        return "<= 200", lambda v: v <= 200
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="stored reports at which to measure")
    ap.add_argument("--single", type=int, default=2000, help="reports ingested one by one (Store.add_report)")
    ap.add_argument("--batch", type=int, default=5000, help="reports ingested by Store.add_batch, 100 per call")
    ap.add_argument("--http", type=int, default=4000, help="reports POSTed one per request (twice that in batches)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=1, help="`freenet serve --workers` for the HTTP ingest runs")
    ap.add_argument("--only", choices=["sqlite", "postgresql"])
    ap.add_argument("--skip-ingest", action="store_true", help="only the curve (--sizes)")
    ap.add_argument("--tmp", default=None, help="folder for the SQLite file (default: the system temp dir)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    kinds = [args.only] if args.only else ["sqlite", "postgresql"]
    results = {k: bench(k, sizes, args) for k in kinds}
    table = Table(title=f"aggregator storage, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
                        f"serve --workers {args.workers} "
                        f"(latencies: medians of {args.repeats})")
    table.add_column("metric")
    table.add_column("target", justify="right")
    for k in kinds:
        table.add_column(k, justify="right")
    for metric in results[kinds[0]]:
        t = target_of(metric)
        cells = []
        for k in kinds:
            v = results[k].get(metric)
            mark = "" if t is None or v is None else (" ok" if t[1](v) else " MISSED")
            cells.append(fmt(v, 1) + mark)
        table.add_row(metric, t[0] if t else "", *cells)
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
