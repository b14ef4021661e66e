"""`freenet export --jobs N`: every artifact converted in a worker process, merged by the parent.

Design (docs/export-scaling.md):

* N worker processes, started with the `spawn` context (no fork of a process that holds torch
  threads), each a loop: receive a `Job`, run `run_job`, send back a `JobResult`. A worker keeps the
  models it prepared (build + rewrite passes: the expensive tracing) and the conversions it can
  share between precisions (export.steps.memo), so the parent gives an idle worker the next job
  of the model and format it did last, and another model only when none is left.
* Workers never write the bundle: they convert in BUNDLE/.staging/<uuid>/ and write only their
  own log (BUNDLE/logs/<artifact>.log). The parent alone writes the reference files (before any
  worker starts), moves each verified file into the bundle (atomic rename, sha256 checked) and
  rewrites manifest.json atomically after every artifact, in the order they finish.
* A worker that dies (a converter's segfault, the OOM killer, SIGKILL) fails only the artifact
  it held ("worker process died ..."), a new worker takes its place, and the other artifacts go
  on. Ctrl-C: the workers ignore SIGINT; the parent stops them, removes BUNDLE/.staging, and the
  manifest holds exactly the artifacts that were moved in.
* `run_job` is also the task the cluster backend (export/cluster.py) ships to Dask workers; there
  the staged file comes back as bytes (`ship=True`) and the log as text.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from .backends import get_format
from .manifest import Artifact

# one export peaks at ~3.7 GB resident (litert-torch and ExecuTorch lowering a 224 px model)
PEAK_BYTES_PER_WORKER = 3.7e9

# Test hook, documented in docs/export-scaling.md: FREENET_EXPORT_FAULT="<artifact id>[:once:<marker file>|:hang],..."
# makes the worker that picks that artifact kill itself with SIGKILL (once: only while the marker file
# does not exist, which it creates first), to prove a dead worker never loses an artifact.
FAULT_ENV = "FREENET_EXPORT_FAULT"


def default_jobs(n_jobs: int | None = None) -> int:
    """What this machine allows: one worker per core, and no more than memory holds at the peak."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        avail = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemAvailable"))
    except (OSError, StopIteration, ValueError):
        avail = int(PEAK_BYTES_PER_WORKER * cores)
    n = max(1, min(cores, int(avail // PEAK_BYTES_PER_WORKER)))
    return min(n, n_jobs) if n_jobs else n


@dataclass
class Job:
    model: str
    fmt: str
    target: str
    precision: str
    plan: object  # ExportPlan
    bundle_id: str
    ref: object  # ModelRef: the parent's reference pair and identity
    staging: str | None  # a directory on the parent's filesystem, or None: a private temp dir, bytes shipped back
    log: str | None  # the artifact's log file on the parent's filesystem, or None: text shipped back
    threads: int = 1

    @property
    def id(self) -> str:
        return f"{self.model}.{self.fmt}.{self.target}.{self.precision}"


@dataclass
class JobResult:
    artifact: str  # Artifact JSON
    staged: str | None = None  # path of the staged file (same filesystem)
    payload: bytes | None = None  # or its bytes (a remote worker)
    name: str | None = None  # the staged file's name, with payload
    log_text: str | None = None
    worker: str = ""
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


_PREPARED: dict[tuple, object] = {}  # this process's prepared models (see the module docstring)


def _fault(art_id: str) -> None:
    for spec in os.environ.get(FAULT_ENV, "").split(","):
        target, _, rest = spec.partition(":")
        if target != art_id:
            continue
        if rest == "hang":  # a conversion that never ends: the test interrupts the export while it runs
            while True:
                time.sleep(60)
        if rest.startswith("once:"):
            marker = Path(rest[len("once:"):])
            if marker.exists():
                continue
            marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)


def run_job(job: Job) -> JobResult:
    """Prepare the model (once per process) and build one artifact; the parent places it."""
    import json

    import torch

    from . import api
    from .console import capture_output
    from .steps import recording

    t0 = time.perf_counter()
    if job.threads and torch.get_num_threads() != job.threads:
        torch.set_num_threads(job.threads)
    where = f"pid:{os.getpid()}" if job.staging else f"{socket.gethostname()}:{os.getpid()}"
    private = None
    if job.staging is None or job.log is None:
        private = Path(tempfile.mkdtemp(prefix="freenet-job-"))
    staging = Path(job.staging) if job.staging else private / "staging"
    log = Path(job.log) if job.log else private / "artifact.log"
    try:
        _fault(job.id)
        plan = job.plan
        key = (job.model, json.dumps(job.ref.config_hash), job.ref.weights, tuple(plan.passes), plan.input_size)
        prep_seconds: dict[str, float] = {}
        pm = _PREPARED.get(key)
        if pm is None:
            try:
                with capture_output(log), recording() as prep_seconds:
                    pm = api.prepare_model(job.model, plan, expect=job.ref)
            except Exception as e:  # noqa: BLE001
                art = api.prep_failed(job.model, job.fmt, job.target, job.precision,
                                      f"model preparation failed: {type(e).__name__}: {e}", None)
                return JobResult(art.model_dump_json(), log_text=_read(log) if job.log is None else None, worker=where,
                                 seconds=time.perf_counter() - t0)
            _PREPARED.clear()  # one model at a time per worker: memory stays at one model's peak
            _PREPARED[key] = pm
        art, staged = api.build_artifact(pm, job.fmt, job.target, job.precision, plan, staging, log, job.bundle_id)
        art.step_seconds = {**prep_seconds, **art.step_seconds}
        art.worker = where
        result = JobResult(art.model_dump_json(), worker=where)
        if staged is not None:
            if job.staging:
                result.staged = str(staged)
            else:
                result.payload, result.name = staged.read_bytes(), staged.name
        if job.log is None:
            result.log_text = _read(log)
        result.seconds = time.perf_counter() - t0
        return result
    finally:
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------
# the local pool


def _worker_main(conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:  # import torch and the orchestrator now, while the parent prepares the jobs (start_workers)
        from . import api  # noqa: F401
    except Exception:  # noqa: BLE001 - run_job imports it again and reports the error with the job
        pass
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            result = run_job(job)
        except BaseException as e:  # noqa: BLE001 - anything but a hard crash comes back as a failure
            from .api import prep_failed

            art = prep_failed(job.model, job.fmt, job.target, job.precision,
                              f"worker error: {type(e).__name__}: {e}", None)
            result = JobResult(art.model_dump_json(), worker=f"pid:{os.getpid()}",
                               log_text=traceback.format_exc())
        conn.send(result)


class _Worker:
    def __init__(self, ctx) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True, name="freenet-export-worker")
        self.proc.start()
        child.close()
        self.job: Job | None = None
        self.last: tuple[str, str] | None = None  # (model, format) of its last job: what it has cached
        self.started: float = 0.0

    def stop(self, grace: float = 0.2) -> None:
        """End the process. A worker has nothing to flush (the parent alone writes the bundle), so an
        idle one gets the stop message and `grace` seconds to exit by itself, then SIGKILL: a torch
        process's own exit (atexit handlers, freeing the converters' memory) took up to 5 s here."""
        if self.proc.is_alive():
            if self.job is None:
                try:
                    self.conn.send(None)
                except (OSError, BrokenPipeError):
                    pass
                self.proc.join(grace)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(5)
        self.conn.close()


def start_workers(n: int) -> list[_Worker]:
    """Spawn `n` workers now: their imports (torch, the converters' common part) run while the
    parent computes the models' references (export_bundle starts them before that step)."""
    ctx = mp.get_context("spawn")
    return [_Worker(ctx) for _ in range(n)]


def job_cost(job: Job) -> float:
    """The relative cost of a job (its format object's `export_cost`). The pool hands out the
    costliest work first (longest-processing-time first), so that the last artifacts to finish are
    the short ones and no worker idles long at the end."""
    return get_format(job.fmt).export_cost.get(job.precision, 10.0)


def _memoises(fmt: str) -> bool:
    return get_format(fmt).memoises


def _unit(job: Job) -> tuple:
    """The unit of work a job belongs to: (model, format) for a memoising format, else the job itself."""
    return (job.model, job.fmt) if _memoises(job.fmt) else (job.model, job.fmt, job.target, job.precision)


def _next_job(pending: list[Job], last: tuple[str, str] | None, busy: set[tuple[str, str]] = frozenset(),
              busy_models: set[str] = frozenset()) -> Job:
    """The job an idle worker takes:

    1. the same model and format as its last job, when that format memoises (its traced graph is
       cached in this worker, export.steps.memo), in plan order (fp32 first: the others reuse it);
    2. else the costliest unit of work of the same model (its prepared model is cached here);
    3. else the costliest unit of a model no other worker is on (one preparation per model);
    4. else the costliest unit whose model x format no other worker is on (two workers never
       trace the same graph side by side);
    5. else the first.
    Units are (model, format) for the memoising formats, single jobs otherwise (job_cost)."""
    units: dict[tuple, float] = {}
    for j in pending:
        units[_unit(j)] = units.get(_unit(j), 0.0) + job_cost(j)

    def costliest(ok) -> Job | None:
        best = None
        for j in pending:  # plan order inside a unit: the first job of the costliest unit
            if ok(j) and (best is None or units[_unit(j)] > units[_unit(best)]):
                best = j
        return best

    def free(j: Job) -> bool:  # no other worker is tracing this graph for its memo
        return not _memoises(j.fmt) or (j.model, j.fmt) not in busy

    choices = []
    if last and _memoises(last[1]):
        choices.append(lambda j: (j.model, j.fmt) == last)
    if last:
        choices.append(lambda j: j.model == last[0] and free(j))
    choices.append(lambda j: j.model not in busy_models)
    choices.append(free)
    for ok in choices:
        j = costliest(ok)
        if j is not None:
            pending.remove(j)
            return j
    return pending.pop(0)


def _died(job: Job, proc) -> Artifact:
    from .api import prep_failed

    code = proc.exitcode
    how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
    return prep_failed(job.model, job.fmt, job.target, job.precision,
                       f"worker process died ({how}) while exporting this artifact; the others were kept "
                       "(out of memory? see the log)", None)


def run_pool(n: int, plan, todo, refs, bundle: Path, bundle_id: str, finished, progress=None,
             workers: list[_Worker] | None = None, feed=None) -> None:
    """Run the jobs on `n` worker processes (`workers` started earlier by start_workers, else new
    ones); `finished(artifact)` as each is placed in the bundle.

    `feed`: an iterator of further batches of jobs (export_bundle: one model's jobs each, its
    reference computed when the batch is asked for); the next batch is taken when fewer jobs are
    pending than there are workers, so the references of later models are computed while the
    workers convert the earlier ones."""
    from .api import log_path, place

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // n)
    pending: list[Job] = []

    def add(batch) -> None:
        for m, fmt, target, precision in batch:
            art_id = f"{m}.{fmt}.{target}.{precision}"
            log = log_path(bundle, art_id)
            log.unlink(missing_ok=True)
            pending.append(Job(m, fmt, target, precision, plan, bundle_id, refs[m],
                               str(bundle / ".staging" / uuid.uuid4().hex), str(log), threads))

    def more() -> None:  # the next batch with something to convert, or the end of the feed
        nonlocal feed
        while feed is not None:
            try:
                batch = next(feed)
            except StopIteration:
                feed = None
                return
            if batch:
                add(batch)
                return

    add(todo)
    feed = iter(feed) if feed is not None else None
    workers = list(workers or [])
    if not pending:
        try:
            more()
        finally:
            if not pending:  # nothing to convert at all
                for w in workers:
                    w.stop()
    if not pending:
        return
    size = n if feed is not None else min(n, len(pending))
    ctx = mp.get_context("spawn")
    for extra in workers[size:]:  # started for more jobs than were left to do
        extra.stop()
    workers = workers[:size]
    workers += [_Worker(ctx) for _ in range(size - len(workers))]
    saved_term = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a CI timeout, `kill`): unwind like Ctrl-C, so the workers stop and staging goes
        def _term(signum, frame):
            raise SystemExit(128 + signum)

        saved_term = signal.signal(signal.SIGTERM, _term)
    try:
        while pending or feed is not None or any(w.job for w in workers):
            if feed is not None and len(pending) < len(workers):
                more()
            for w in list(workers):
                if w.job is None and pending:
                    job = _next_job(pending, w.last, {(x.job.model, x.job.fmt) for x in workers if x.job},
                                    {x.job.model for x in workers if x.job})
                    try:
                        w.conn.send(job)
                    except OSError:  # it died before its first job (e.g. while importing): the job waits for another
                        pending.insert(0, job)
                        w.proc.join(1)
                        w.conn.close()
                        workers.remove(w)
                        workers.append(_Worker(ctx))
                        continue
                    w.job, w.last, w.started = job, (job.model, job.fmt), time.perf_counter()
                    if progress:
                        busy = ", ".join(f"{x.job.id}" for x in workers if x.job)
                        progress(f"converting {busy}", 0, 0)  # export_bundle's own counts replace these
            busy = [w for w in workers if w.job]
            if not busy:
                continue
            ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy])
            for w in list(busy):
                job = w.job
                result = None
                if w.conn in ready:
                    try:
                        result = w.conn.recv()
                    except (EOFError, OSError):
                        result = None
                if result is not None:
                    art = Artifact.model_validate_json(result.artifact)
                    staged = Path(result.staged) if result.staged else None
                    art = place(art, staged, bundle)
                    shutil.rmtree(Path(job.staging), ignore_errors=True)
                    if result.log_text:
                        with open(job.log, "a") as f:
                            f.write(result.log_text)
                    art.log_file = str(Path(job.log).relative_to(bundle))
                    w.job = None
                    if not pending and feed is None:  # nothing left for it: stop it now, not after the last artifact
                        w.stop()
                        workers.remove(w)
                    finished(art)
                elif w.proc.sentinel in ready or not w.proc.is_alive():
                    w.proc.join(1)
                    art = _died(job, w.proc)
                    art.log_file = str(Path(job.log).relative_to(bundle))
                    art.export_seconds = time.perf_counter() - w.started
                    shutil.rmtree(Path(job.staging), ignore_errors=True)
                    w.job = None
                    w.conn.close()
                    workers.remove(w)
                    if pending or feed is not None:
                        workers.append(_Worker(ctx))
                    finished(art)
    finally:
        for w in workers:
            w.stop()  # a busy one (Ctrl-C, an error here) is killed at once: its staging is removed
        if saved_term is not None:
            signal.signal(signal.SIGTERM, saved_term)
