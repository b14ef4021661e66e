"""The host runner: measures a bundle's artifacts on this machine and emits schema reports.

It is the reference client of the protocol the phone apps speak: the same report schema, the same
measurement phases (load, first inference, W warm-ups, N timed runs with every raw sample, parity
against the bundle's reference output, thermal state before/after), delivered to a server URL
with a device token or straight into the local store (embedded mode). Every artifact is measured
in its own worker process (host_worker.py); timed rounds are interleaved across the artifacts of
one runtime in a shuffled order per round, so that drift of this shared machine hits every model
alike. With `processes` > 1 every artifact is measured in that many fresh worker processes (one
batch after another, one report per process) so that intervals come from between-process
variation (stats.compare_runs); worker processes are pinned to `threads` cores (the last of the
allowed set) where the OS allows. What each runtime is, takes, opens and reports comes from its
object (device_bench/runtimes); this module never branches on a runtime's name. LiteRT's GPU accelerator can be exercised on
SwiftShader; those reports are marked emulated and never enter speed comparisons. The runtimes' own
output goes to one log file per job under BUNDLE/logs/bench/.
"""

from __future__ import annotations

import os
import platform
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from export.manifest import Artifact, Manifest

from .runtimes import RUNTIMES, default_runtimes, get_runtime
from .schema import SCHEMA_VERSION, Report, judge_parity

APP = "freenet-host-runner"
HOST_RUNTIMES = RUNTIMES  # name -> HostRuntime object (device_bench/runtimes)
DEFAULT_RUNTIMES = default_runtimes()


@dataclass
class BenchPlan:
    bundle: Path
    runtimes: list[str] = field(default_factory=lambda: list(DEFAULT_RUNTIMES))
    models: list[str] | None = None
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    warmup: int = 10
    rounds: int = 5
    runs_per_round: int = 10
    threads: int = 1
    seed: int = 0
    checkpoint: Path | None = None  # eager PyTorch of a bundle exported from a checkpoint needs the file
    protocol: str | None = None  # the measurement protocol (device_bench/protocols.py), noted in every report
    # Independent repetitions (issue 14): every artifact is measured in `processes` fresh worker
    # processes, one batch after another (batch p = a fresh worker per artifact of the runtime,
    # rounds interleaved across them), one report per process with notes["process"] = "p".
    # stats.compare_runs pools them with a hierarchical bootstrap; batch p of two models ran in
    # the same window, so their processes pair by index. `rounds` is per process.
    processes: int = 1
    pin: bool = True  # pin each worker process to `threads` cores (os.sched_setaffinity) where the OS allows

    def validate(self) -> None:
        bad = [r for r in self.runtimes if r not in HOST_RUNTIMES]
        if bad:
            raise ValueError(f"unknown runtime(s) {bad}; valid: {list(HOST_RUNTIMES)}")
        if self.warmup < 0 or self.rounds < 1 or self.runs_per_round < 1 or self.threads < 1 or self.processes < 1:
            raise ValueError("rounds, runs_per_round, threads and processes must be >= 1 and warmup >= 0")
        if not (Path(self.bundle) / "manifest.json").is_file():
            raise FileNotFoundError(f"{self.bundle} holds no manifest.json; build one with `freenet export`")


@dataclass
class Job:
    runtime: str
    artifact: Artifact
    path: Path | None  # None for eager PyTorch
    spec: dict
    bundle: Path = Path(".")
    bundle_id: str | None = None
    label: str = ""  # extra tag for reports (e.g. which pass set built the bundle)

    @property
    def log_file(self) -> Path:
        """Where the runtime's own output for this job goes."""
        return self.bundle / "logs" / "bench" / f"{self.artifact.id}.{self.runtime}.log"


def host_device() -> dict:
    """This machine in the report's device terms."""
    model, vendor = platform.processor() or "unknown CPU", "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown CPU", platform.processor()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("vendor_id"):
                vendor = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {
        "manufacturer": vendor, "model": model, "soc": platform.machine() or "unknown",
        "os": platform.system().lower() or "unknown", "os_version": platform.release() or "unknown",
        "memory_bytes": mem,
    }


def thermal_state() -> float | str:
    """Hottest thermal zone in degrees Celsius, or "unknown" where the kernel exposes none."""
    temps = []
    for zone in Path("/sys/class/thermal").glob("thermal_zone*/temp"):
        try:
            temps.append(int(zone.read_text().strip()) / 1000)
        except (OSError, ValueError):
            continue
    temps = [t for t in temps if -50 <= t <= 200]
    return max(temps) if temps else "unknown"


def pin_cpus(threads: int) -> list[int] | None:
    """The cores a pinned worker gets: the last `threads` of this process's allowed set (core 0
    takes most interrupts). None where the OS has no affinity API or pinning would change nothing."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    return allowed[-threads:] if len(allowed) > threads else None


def plan_jobs(manifest: Manifest, plan: BenchPlan, bundle: Path) -> list[Job]:
    jobs: list[Job] = []
    arts = [a for a in manifest.artifacts if a.status == "ok" and a.precision in plan.precisions]
    if plan.models:
        unknown = set(plan.models) - {a.model for a in manifest.artifacts}
        if unknown:
            raise ValueError(f"model(s) {sorted(unknown)} are not in the bundle; it holds {sorted({a.model for a in manifest.artifacts})}")
        arts = [a for a in arts if a.model in plan.models]
    for rt in plan.runtimes:
        runtime = get_runtime(rt)
        runtime.check_available()
        for a in runtime.select(arts):
            path = bundle / a.file if runtime.format is not None and a.file else None
            jobs.append(Job(rt, a, path, {}, bundle, manifest.bundle_id))
    return jobs


def _spec(job: Job, plan: BenchPlan) -> dict:
    a, bundle = job.artifact, job.bundle
    shape = list(a.inputs[0].shape) if a.inputs else None
    layout = a.inputs[0].layout if a.inputs else "NCHW"
    nchw = [shape[0], shape[3], shape[1], shape[2]] if shape and layout == "NHWC" else shape
    return {
        "runtime": job.runtime, "path": str(job.path) if job.path else "", "target": a.target, "threads": plan.threads,
        # what eager PyTorch needs to rebuild exactly this artifact's model
        "model": a.model, "seed": a.reference.seed, "weights": a.weights, "config_hash": a.config_hash,
        "model_options": a.model_options, "passes": [p.name for p in a.passes],
        "checkpoint": str(plan.checkpoint) if plan.checkpoint else None,
        "input_shape_nchw": nchw, "input_file": str(bundle / a.reference.input_file),
        "output_file": str(bundle / a.reference.output_file),
        **job.spec,
    }


def _report(w, plan: BenchPlan, device: dict, started: datetime, thermal: tuple, parity: dict,
            process: dict[str, str] | None = None) -> Report:
    a, rt = w.job.artifact, get_runtime(w.job.runtime)
    measured = rt.model_fields(a, w.load)
    ok = w.error is None and bool(w.samples)
    checked = ok and "max_abs_diff" in parity
    par = judge_parity(parity["max_abs_diff"], parity["reference_max_abs"], measured["precision"], rt.accelerator) if checked else None
    status = "error" if not ok else "parity_failed" if par is not None and par.passed is False else "ok"
    return Report.model_validate({
        "schema_version": SCHEMA_VERSION,
        "run_id": str(uuid.uuid4()),
        "created_at": datetime.now(timezone.utc).isoformat(),
        "started_at": started.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "client": {"app": APP, "platform": "host", "app_version": _version()},
        "device": device,
        "runtime": {
            "name": rt.report_name,
            "version": w.load.get("runtime_version", "unknown"),
            "accelerator": rt.accelerator,
            "delegate": rt.delegate,
            "threads": plan.threads,
            "emulated": rt.emulated,
        },
        "model": {
            "name": a.model, "family": a.model_family, **measured,
            "input_shape": a.inputs[0].shape if a.inputs else [1, 3, 224, 224],
            "bundle": w.job.bundle_id, "macs": a.macs, "params": a.params,
        },
        "timing": {
            "load_ms": w.load.get("load_ms"), "first_inference_ms": w.load.get("first_inference_ms"),
            "warmup_runs": plan.warmup, "samples_ms": w.samples if ok else [],
        },
        "placement": w.load.get("placement"),
        "thermal": {"before": thermal[0], "after": thermal[1]},
        "parity": par.model_dump() if par is not None else {"max_abs_diff": None, "reference_checked": False},
        "status": status,
        "error": None if status == "ok" else (w.error or "no samples were measured") if status == "error" else
                 f"output differs from the bundle's reference by {par.rel_diff:.2e} (relative), above the tolerance {par.tolerance:.0e}",
        # artifact_sha256: the bundle file measured, or (eager PyTorch) the one whose model it rebuilt; with the
        # runtime version, device and protocol it identifies a measurement that `freenet compare` may reuse
        "notes": {"target": a.target, "passes": ",".join(p.name for p in a.passes) or "none", **({"label": w.job.label} if w.job.label else {}),
                  **({"artifact_sha256": a.sha256} if a.sha256 else {}),
                  "rounds": str(plan.rounds), "runs_per_round": str(plan.runs_per_round),
                  **({"protocol": plan.protocol} if plan.protocol else {}), **(process or {}),
                  # the cores the worker itself says it holds (only a pinned worker process says so)
                  **({"cpus": ",".join(map(str, w.load["cpus"]))} if w.load.get("cpus") else {}),
                  # how the worker's C allocator was set (eager PyTorch: runtimes/pytorch.py)
                  **({"allocator": w.load["allocator"]} if w.load.get("allocator") else {})},
    })


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("freenet-deploy")
    except PackageNotFoundError:
        return "dev"


ProgressFn = Callable[[str, int, int], None]


def run_bench(plan: BenchPlan, sink: Callable[[Report], None], progress: ProgressFn | None = None) -> list[Report]:
    """Measure every (runtime, artifact) of the plan; each finished report goes to `sink`."""
    plan.validate()
    bundle = Path(plan.bundle)
    manifest = Manifest.load(bundle / "manifest.json")
    jobs = plan_jobs(manifest, plan, bundle)
    if not jobs:
        raise ValueError(f"nothing to measure in {bundle} for runtimes {plan.runtimes} and precisions {plan.precisions}")
    return measure_jobs(jobs, plan, sink, progress)


def measure_jobs(jobs: list[Job], plan: BenchPlan, sink: Callable[[Report], None], progress: ProgressFn | None = None) -> list[Report]:
    """Measure jobs (possibly from several bundles), rounds interleaved across a runtime's artifacts;
    with `plan.processes` > 1, in that many batches of fresh workers (batch p of every runtime
    before batch p + 1), one report per job per batch."""
    device, reports, done = host_device(), [], 0
    rng = random.Random(plan.seed)
    steps = len(jobs) * plan.processes * (plan.rounds + 2)
    session = str(uuid.uuid4())  # groups the per-process reports of this invocation
    cpus = pin_cpus(plan.threads) if plan.pin else None
    # Batch-major (issue 14): batch p of EVERY runtime before batch p + 1 of any, the runtimes'
    # order rotating from batch to batch. Measured runtime by runtime, the processes of one runtime
    # all ran within ~20 s and agreed to 0.3-1 %, so the interval missed the slower drift of the
    # machine that the next run met (three quiet back-to-back runs: ratios 2.5 % apart, outside each
    # other's +-2 % intervals, benchmarks/results/issue14_repeat_quiet.txt); spread over the whole
    # invocation, the processes sample that drift and the between-process interval can see it.
    # Pairing is unchanged: the two models of a runtime still share every batch.
    present = [rt for rt in plan.runtimes if any(j.runtime == rt for j in jobs)]
    for p in range(plan.processes):
        for rt in present[p % len(present):] + present[:p % len(present)]:
            group = [j for j in jobs if j.runtime == rt]
            runtime = get_runtime(rt)
            tag = f" process {p + 1}/{plan.processes}" if plan.processes > 1 else ""
            started, t_before = datetime.now(timezone.utc), thermal_state()
            # "cpus" is read only by the worker process (host_worker pins itself before importing
            # the runtime); a runtime whose start() returns its own object (a browser page) ignores it
            workers = [runtime.start(j, {**_spec(j, plan), **({"cpus": cpus} if cpus else {})}, j.log_file) for j in group]
            try:
                for w in workers:  # load + first inference + warm-up, one at a time
                    if progress:
                        progress(f"{rt}{tag}: loading {w.job.artifact.model} {w.job.artifact.precision}", done, steps)
                    w.load = w.ask({"cmd": "load"})
                    w.ask({"cmd": "warmup", "n": plan.warmup})
                    done += 1
                for r in range(plan.rounds):
                    order = list(workers)
                    rng.shuffle(order)
                    for w in order:
                        if progress:
                            progress(f"{rt}{tag}: round {r + 1}/{plan.rounds} {w.job.artifact.model}", done, steps)
                        reply = w.ask({"cmd": "run", "n": plan.runs_per_round})
                        w.samples.extend(reply.get("samples_ms", []))
                        done += 1
                t_after = thermal_state()
                proc = {"process": str(p), "processes": str(plan.processes), "session": session} if plan.processes > 1 else None
                for w in workers:
                    parity = w.ask({"cmd": "parity"}) if not w.error else {}
                    report = _report(w, plan, device, started, (t_before, t_after), parity if "error" not in parity else {}, proc)
                    sink(report)
                    reports.append(report)
                    done += 1
            finally:
                for w in workers:
                    w.close()
    if progress:
        progress("done", steps, steps)
    return reports


def http_sink(url: str, token: str) -> Callable[[Report], None]:
    """POST each report to an aggregator; raises with the server's message on refusal."""
    import httpx

    client = httpx.Client(base_url=url.rstrip("/"), timeout=30, headers={"Authorization": f"Bearer {token}"})

    def send(report: Report) -> None:
        r = client.post("/api/v1/reports", content=report.model_dump_json(), headers={"Content-Type": "application/json"})
        if r.status_code not in (200, 201):
            raise RuntimeError(f"aggregator refused report {report.run_id}: HTTP {r.status_code} {r.text[:300]}")

    return send


def store_sink(db_url: str | None) -> Callable[[Report], None]:
    from .store import Store

    store = Store(db_url)
    return lambda report: store.add_report(report)
