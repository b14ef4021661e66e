"""Aggregator storage benchmark: ingest throughput and summary latency at 100k stored reports.

Measures, on SQLite (WAL file) and PostgreSQL (the cluster of scripts/setup_postgres.sh or
FREENET_TEST_PG_URL):
  * embedded ingest: `Store.add_report` one report per transaction, one thread (reports/s);
  * HTTP ingest: `POST /api/v1/reports` to a real uvicorn server from 8 client threads (reports/s);
  * query latency once the database holds --reports reports (filled in bulk with
    `Store.add_reports`): `summary()` (the dashboard/compare computation, bootstrap included),
    `query(limit=100)` and `count()` — medians of --repeats runs.
Usage: python benchmarks/bench_ingest.py [--reports 100000] [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from device_bench.stats import fmt  # noqa: E402
from device_bench.store import Store  # noqa: E402

DEVICES = [("Google", "Pixel 8", "Tensor G3"), ("Samsung", "SM-S921B", "Exynos 2400"),
           ("Apple", "iPhone15,2", "A16 Bionic"), ("AMD", "EPYC 7B13", "x86_64")]
RUNTIMES = [("litert", "gpu"), ("litert", "xnnpack"), ("onnxruntime", "nnapi"), ("executorch", "xnnpack")]
MODELS = [("freenet_s1", 300e6), ("freenet_s2", 547e6), ("starnet_s2", 547e6), ("starnet_s4", 1050e6),
          ("mobilenetv2_100", 300e6), ("mobilenetv4_conv_small", 190e6)]


def make_report(rng: random.Random, n_samples: int = 20) -> dict:
    man, model, soc = rng.choice(DEVICES)
    runtime, acc = rng.choice(RUNTIMES)
    name, macs = rng.choice(MODELS)
    base = macs / 1e8 * rng.uniform(0.9, 1.1)
    return {
        "schema_version": "1", "run_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "created_at": "2026-11-25T10:00:00Z", "started_at": "2026-11-25T09:59:00Z", "finished_at": "2026-11-25T10:00:00Z",
        "client": {"app": "bench", "platform": "android", "app_version": "0"},
        "device": {"manufacturer": man, "model": model, "soc": soc, "os": "android", "os_version": "15"},
        "runtime": {"name": runtime, "version": "1", "accelerator": acc, "emulated": False},
        "model": {"name": name, "artifact_id": name, "format": "tflite", "precision": "fp32",
                  "sha256": "0" * 64, "input_shape": [1, 3, 224, 224], "macs": int(macs)},
        "timing": {"load_ms": 50.0, "first_inference_ms": base * 2, "warmup_runs": 5,
                   "samples_ms": [round(base * rng.lognormvariate(0, 0.05), 4) for _ in range(n_samples)]},
        "thermal": {"before": "nominal", "after": "nominal"}, "status": "ok",
    }


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
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return make_url(base).set(database=name).render_as_string(hide_password=False), drop


def bench_http(url: str, rng: random.Random, n: int, clients: int = 8) -> float:
    with Store(url) as s:
        token = s.create_token("bench")[1]
    port = 18000 + rng.randrange(1000)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "device_bench.cli", "serve", "--db", url, "--port", str(port),
                             "--log-level", "warning"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        docs = [make_report(rng) for _ in range(n)]
        chunks = [docs[i::clients] for i in range(clients)]
        errors: list[int] = []

        def run(chunk: list[dict]) -> None:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
                for d in chunk:
                    r = c.post("/api/v1/reports", json=d)
                    if r.status_code != 201:
                        errors.append(r.status_code)

        threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.perf_counter() - t0
        if errors:
            raise RuntimeError(f"HTTP ingest errors: {sorted(set(errors))}")
        return n / dt
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def bench(kind: str, total: int, single: int, http_n: int, repeats: int) -> dict[str, float]:
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        url, drop = fresh_db(kind, Path(tmp))
        try:
            res: dict[str, float] = {}
            with Store(url) as store:
                docs = [make_report(rng) for _ in range(single)]
                t0 = time.perf_counter()
                for d in docs:
                    store.add_report(d)
                res["embedded ingest (reports/s)"] = single / (time.perf_counter() - t0)
            res["HTTP ingest, 8 clients (reports/s)"] = bench_http(url, rng, http_n)
            with Store(url) as store:
                t0 = time.perf_counter()
                while (have := store.count()) < total:
                    store.add_reports([make_report(rng) for _ in range(min(2000, total - have))])
                res["bulk fill (reports/s)"] = (total - single - http_n) / (time.perf_counter() - t0)
                res[f"summary() at {total} reports (ms)"] = timed(lambda: store.summary(), repeats)
                res[f"summary(device, runtime, accel) at {total} (ms)"] = timed(
                    lambda: store.summary(device="Google Pixel 8", runtime="litert", accelerator="gpu"), repeats)
                res[f"query(limit=100) at {total} (ms)"] = timed(lambda: store.query(limit=100), repeats)
                res[f"count() at {total} (ms)"] = timed(store.count, repeats)
            return res
        finally:
            drop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reports", type=int, default=100_000)
    ap.add_argument("--single", type=int, default=2000, help="reports ingested one by one (embedded)")
    ap.add_argument("--http", type=int, default=1000, help="reports ingested over HTTP")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", choices=["sqlite", "postgresql"])
    args = ap.parse_args()
    kinds = [args.only] if args.only else ["sqlite", "postgresql"]
    results = {k: bench(k, args.reports, args.single, args.http, args.repeats) for k in kinds}
    table = Table(title=f"aggregator storage, {os.cpu_count()} CPUs (medians of {args.repeats} for latencies)")
    table.add_column("metric")
    for k in kinds:
        table.add_column(k, justify="right")
    for metric in results[kinds[0]]:
        table.add_row(metric, *(fmt(results[k].get(metric), 1) for k in kinds))
    Console().print(table)


if __name__ == "__main__":
    main()
