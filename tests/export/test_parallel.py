"""Parallel export (`--jobs N`, export/parallel.py) and the Dask cluster backend (export/cluster.py):
the one manifest merged by the parent, a killed worker never losing the others' artifacts, Ctrl-C
leaving no half-written file, sha256 checked on the way back, and a real local Dask cluster
(scheduler + worker processes on 127.0.0.1) with a worker killed mid-job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from export import api
from export.api import ExportError, ExportPlan, export_bundle
from export.manifest import Manifest, sha256_file
from export.parallel import FAULT_ENV, default_jobs

SIZE = 64
REPO = Path(__file__).resolve().parents[2]
FP16 = "freenet_tiny.onnx.onnxruntime-nnapi.fp16"


def plan(tmp_path: Path, **kw) -> ExportPlan:
    base = dict(models=["freenet_tiny"], formats=["onnx"], precisions=["fp32", "fp16"], out_dir=tmp_path / "bundle",
                input_size=SIZE)
    return ExportPlan(**{**base, **kw})


def assert_consistent(bundle: Path, m: Manifest) -> None:
    """The manifest on disk is the one returned; every file it names is there with its sha256;
    no artifact file lies in the bundle that the manifest does not name; no staging is left."""
    if (bundle / "manifest.json").exists():
        assert Manifest.load(bundle / "manifest.json") == m
    else:  # interrupted before the first artifact was in: no manifest, and no artifact either
        assert not m.artifacts
    named = {a.file for a in m.artifacts if a.file}
    for a in m.artifacts:
        if a.file:
            assert sha256_file(bundle / a.file) == a.sha256, a.id
        if a.reference:
            assert sha256_file(bundle / a.reference.output_file) == a.reference.output_sha256
    on_disk = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()
               and p.parts[len(bundle.parts)] not in ("logs", "reference") and p.name != "manifest.json"}
    assert on_disk == named
    assert not (bundle / ".staging").exists()


def test_default_jobs_follows_cores_and_memory():
    n = default_jobs()
    assert 1 <= n <= (os.cpu_count() or 1)
    assert default_jobs(1) == 1


def test_two_workers_build_the_same_bundle_as_one_process(tmp_path):
    seq = export_bundle(plan(tmp_path / "a"))
    par = export_bundle(plan(tmp_path / "b"), workers=2)
    assert [a.id for a in par.artifacts] == [a.id for a in seq.artifacts]  # plan order, however they finished
    for a, b in zip(seq.artifacts, par.artifacts):
        assert b.status == a.status == "ok", (b.id, b.error)
        assert b.worker and b.worker.startswith("pid:") and a.worker is None
        assert b.reference == a.reference  # the parent's reference files, in both
        assert b.parity.passed and abs(b.parity.rel_diff - a.parity.rel_diff) < 1e-6
        assert {"convert", "convert.trace", "parity", "package", "write"} <= set(b.step_seconds)
    assert any(k.startswith("prepare.") for a in par.artifacts for k in a.step_seconds)
    assert_consistent(tmp_path / "b" / "bundle", par)
    # a re-run with everything up to date converts nothing, with or without workers
    again = export_bundle(plan(tmp_path / "b", on_existing="reuse"), workers=2)
    assert again.artifacts == par.artifacts


def test_in_process_export_traces_once_per_model_for_all_precisions(tmp_path):
    m = export_bundle(plan(tmp_path))
    fp32, fp16 = m.artifacts
    assert "memo_hits" not in fp32.step_seconds and fp16.step_seconds.get("memo_hits") == 1
    assert any(k.startswith("prepare.") for k in fp32.step_seconds)  # preparation: on the model's first artifact
    assert not any(k.startswith("prepare.") for k in fp16.step_seconds)


def test_a_killed_worker_fails_only_its_artifact(tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, FP16)  # the worker that takes it SIGKILLs itself (spawned children inherit env)
    m = export_bundle(plan(tmp_path, formats=["onnx", "tflite"], precisions=["fp32", "fp16"]), workers=2)
    by = {a.id: a for a in m.artifacts}
    assert len(by) == 4
    dead = by[FP16]
    assert dead.status == "failed" and "worker process died (signal SIGKILL)" in dead.error and dead.file is None
    assert all(a.status == "ok" for k, a in by.items() if k != FP16), [(a.id, a.error) for a in m.artifacts]
    assert_consistent(tmp_path / "bundle", m)
    # the failed one is rebuilt by a re-run; the others are kept
    monkeypatch.delenv(FAULT_ENV)
    again = export_bundle(plan(tmp_path, formats=["onnx", "tflite"], precisions=["fp32", "fp16"], on_existing="reuse"), workers=2)
    assert all(a.status == "ok" for a in again.artifacts)
    assert {a.id: a.sha256 for a in again.artifacts if a.id != FP16} == {k: a.sha256 for k, a in by.items() if k != FP16}


def test_ctrl_c_leaves_no_half_written_file(tmp_path):
    bundle = tmp_path / "bundle"
    # a terminal's default Ctrl-C handling: a test run started in the background (`cmd &` in a script,
    # as CI was once) hands its children SIGINT ignored, and Python then installs no handler
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from export.api import ExportPlan, export_bundle; "
            f"export_bundle(ExportPlan(models=['freenet_tiny'], formats=['onnx', 'tflite'], out_dir={str(bundle)!r}, "
            f"input_size={SIZE}), workers=2)")
    # one conversion never ends (test hook), so the interrupt lands while the export certainly runs,
    # not after a fast export already finished
    hang = "freenet_tiny.tflite.litert-gpu.fp16"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), "FREENET_EXPORT_FAULT": f"{hang}:hang"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 600
    # interrupt after the other three are in the bundle, while the fourth is converting
    while time.time() < deadline:
        done = Manifest.load(bundle / "manifest.json").artifacts if (bundle / "manifest.json").exists() else []
        if len(done) >= 3 or proc.poll() is not None:
            break
        time.sleep(0.2)
    try:
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        assert hang not in {a.id for a in done}
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        out = proc.communicate(timeout=120)[0].decode()
    finally:  # never leave the hanging export behind when an assertion fails
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0 and "KeyboardInterrupt" in out, out[-2000:]
    m = Manifest.load(bundle / "manifest.json") if (bundle / "manifest.json").exists() else Manifest(bundle_id="-")
    assert len(m.artifacts) < 4
    assert_consistent(bundle, m)
    leftover = [p for p in bundle.rglob("*.tmp")]
    assert not leftover


def test_a_corrupted_transfer_is_refused(tmp_path):
    m = export_bundle(plan(tmp_path, precisions=["fp32"]))
    art = m.artifacts[0].model_copy(deep=True)
    staged = tmp_path / "staged.onnx"
    staged.write_bytes((tmp_path / "bundle" / art.file).read_bytes()[:-1] + b"\0")
    out = api.place(art, staged, tmp_path / "bundle2")
    assert out.status == "failed" and "sha256 mismatch" in out.error and out.file is None
    assert not (tmp_path / "bundle2").exists()


def test_cluster_without_the_engine_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a))
    with pytest.raises(ExportError, match=r"pip install 'freenet-deploy\[cluster\]'"):
        export_bundle(plan(tmp_path), cluster="tcp://127.0.0.1:1")
    assert not (tmp_path / "bundle").exists()  # refused before anything was written


# ---------------------------------------------------------------------------------------------
# a real local Dask cluster


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster(tmp_path):
    """A Dask scheduler and one worker (with its nanny, which restarts it when it dies) as separate
    processes on 127.0.0.1; the worker kills itself on the artifacts named in FREENET_EXPORT_FAULT."""
    pytest.importorskip("distributed")
    from distributed import Client

    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    marker = tmp_path / "killed-once"
    env = {**os.environ, "PYTHONPATH": str(REPO),
           # one retry after a worker dies mid-task, then KilledWorker: both paths in one test
           "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
           # only the running task on the worker (a task queued behind it would share its death count)
           "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0",
           FAULT_ENV: f"{FP16}:once:{marker},freenet_tiny.tflite.litert-gpu.fp16"}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--dashboard-address", ":0"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", addr, "--nthreads", "1",
                                   "--memory-limit", "0", "--no-dashboard"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        deadline = time.time() + 180
        while True:
            try:
                with Client(addr, timeout="5s") as c:
                    c.wait_for_workers(1, timeout=120)
                break
            except Exception:  # noqa: BLE001
                if time.time() > deadline:
                    raise
                time.sleep(1)
        yield addr, marker
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.slow
def test_real_local_dask_cluster_with_a_worker_killed_mid_job(tmp_path, dask_cluster):
    addr, marker = dask_cluster
    m = export_bundle(plan(tmp_path, formats=["onnx", "tflite"]), cluster=addr)
    by = {a.id: a for a in m.artifacts}
    assert len(by) == 4  # every job ends as one artifact: none silently missing
    # killed once mid-job: the scheduler re-ran it on the restarted worker, and it came back whole
    assert marker.exists()
    assert by[FP16].status == "ok", by[FP16].error
    # killed every time: reported failed with the engine's reason
    gone = by["freenet_tiny.tflite.litert-gpu.fp16"]
    assert gone.status == "failed" and "KilledWorker" in gone.error and gone.file is None
    for k in ("freenet_tiny.onnx.onnxruntime-nnapi.fp32", "freenet_tiny.tflite.litert-gpu.fp32"):
        assert by[k].status == "ok", by[k].error
        assert ":" in by[k].worker  # host:pid of the cluster worker
        assert (tmp_path / "bundle" / by[k].log_file).read_text() is not None  # the log shipped back
    assert_consistent(tmp_path / "bundle", m)


def test_idle_workers_take_different_graphs_and_keep_their_own():
    from export.parallel import Job, _next_job

    jobs = [Job("m", f, "t", p, None, "b", None, None, None) for f in ("onnx", "tflite") for p in ("fp32", "fp16")]
    pending = list(jobs)
    a = _next_job(pending, None)
    b = _next_job(pending, None, {("m", a.fmt)}, {"m"})
    assert (a.fmt, a.precision) == ("tflite", "fp32")  # the costlier unit first, fp32 first inside it
    assert (b.fmt, b.precision) == ("onnx", "fp32")  # not both tracing the same graph side by side
    assert _next_job(pending, ("m", "tflite"), {("m", "onnx")}, {"m"}).fmt == "tflite"  # its memoised flatbuffer
    assert _next_job(pending, ("m", "tflite")).fmt == "onnx"


def test_pool_hands_out_the_longest_work_first_and_keeps_models_apart():
    """Longest-processing-time first: with the ten artifacts of one model on two workers the costly
    ExecuTorch and TFLite work starts first and the short ones come last; with two models each worker
    stays on its own model (one preparation per model) until that model has nothing left."""
    from export.parallel import Job, _next_job, job_cost

    def plan_jobs(*models):
        spec = [("onnx", "nnapi"), ("coreml", "ml"), ("tflite", "gpu"), ("executorch", "xnnpack"), ("executorch", "vulkan")]
        return [Job(m, f, t, p, None, "b", None, None, None) for m in models for f, t in spec for p in ("fp32", "fp16")]

    def simulate(pending, n=2):
        clock, workers, order = [0.0] * n, [None] * n, []  # the greedy pool: the first idle worker takes a job
        running: list = [None] * n
        while pending:
            i = min(range(n), key=lambda k: clock[k])
            busy = {(r.model, r.fmt) for k, r in enumerate(running) if r and k != i and clock[k] > clock[i]}
            models = {r.model for k, r in enumerate(running) if r and k != i and clock[k] > clock[i]}
            j = _next_job(pending, workers[i], busy, models)
            workers[i], running[i] = (j.model, j.fmt), j
            order.append((i, j))
            clock[i] += job_cost(j)
        return clock, order

    clock, order = simulate(plan_jobs("m"))
    total = sum(job_cost(j) for j in plan_jobs("m"))
    assert max(clock) - total / 2 <= min(job_cost(j) for j in plan_jobs("m"))  # balanced to within the smallest job
    first_two = {(j.fmt, j.precision) for _, j in order[:2]}
    assert ("tflite", "fp32") in first_two and order[-1][1].fmt in ("onnx", "coreml")
    for fmt in ("onnx", "tflite"):  # the memoised formats stay on one worker
        assert len({i for i, j in order if j.fmt == fmt}) == 1
    clock, order = simulate(plan_jobs("a", "b"))
    first = {i: j.model for i, j in order[:2]}
    assert first[0] != first[1]
    shared = [i for i, j in order if j.model == first[0]]
    assert shared[: len(shared) - 3] == [0] * (len(shared) - 3)  # the other worker joins only for the tail


def test_an_idle_worker_stops_at_once(tmp_path, monkeypatch):
    """A worker with nothing to flush is stopped in well under a second, even when its process would
    take long to exit by itself (torch's atexit took up to 5 s per worker here)."""
    import multiprocessing as mp

    from export.parallel import _Worker

    marker = tmp_path / "slow-exit-registered"
    monkeypatch.setenv("FREENET_TEST_SLOW_EXIT", str(marker))
    w = _Worker(mp.get_context("spawn"))
    w.conn.send(_SlowExit())
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists()
    t0 = time.perf_counter()
    w.stop()
    assert time.perf_counter() - t0 < 1.5 and not w.proc.is_alive()


class _SlowExit:
    """Unpickled in the worker: registers an exit handler that takes 10 s (a slow interpreter exit)."""

    def __reduce__(self):
        return (_register_slow_exit, ())


def _register_slow_exit():
    import atexit

    atexit.register(time.sleep, 10)
    Path(os.environ["FREENET_TEST_SLOW_EXIT"]).write_text("registered")
    return None  # the worker reads it as the stop message, and exits


def test_cli_names_the_extra_when_the_engine_is_missing(tmp_path, monkeypatch, capfd):
    import importlib.util

    import typer
    from typer.testing import CliRunner

    from export.cli import register

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # two commands: typer keeps the sub-command name
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a))
    res = CliRunner().invoke(app, ["export", "freenet_tiny", "--formats", "onnx", "--out", str(tmp_path / "b"),
                                   "--cluster", "tcp://127.0.0.1:1"])
    out = " ".join((res.output + capfd.readouterr().out).split())  # the console is on the terminal's fd
    assert res.exit_code == 2 and "pip install 'freenet-deploy[cluster]'" in out, out


def test_reference_images_resize_only_what_they_use():
    """The export's reference/calibration images come from the first N digits resized (not all 1797:
    1.1 GB and ~2 s per model at 224 px); the values are exactly those of resizing them all."""
    import torch

    from freenet.data import digits_tensors

    x_all, y_all = digits_tensors(64)
    x, y = digits_tensors(64, limit=32)
    assert torch.equal(x, x_all[:32]) and torch.equal(y, y_all[:32])
