"""`freenet export --cluster ADDRESS`: the same jobs on a Dask distributed cluster.

Each artifact is one Dask task running `export.parallel.run_job` on a cluster worker (which needs
this package installed, the same versions: the worker checks it builds the same model as the
parent). The worker converts in a private temp directory and sends back the file's bytes and its
log; the parent checks the sha256 the worker computed against the bytes received, moves the file
into the bundle and updates the manifest as each task finishes. Shipping bytes back works on any
cluster (no shared filesystem needed); an artifact is a few MB.

A worker that dies mid-task: the scheduler re-runs the task on another worker (Dask's own
`allowed-failures`, 3 by default); when it gives up (`KilledWorker`) or the task raises, the
artifact is recorded failed with the reason. Never silently missing: every submitted job ends as
exactly one artifact in the manifest.

Dask is an optional extra (`pip install freenet-deploy[cluster]`), imported only here.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

from .api import ExportError
from .manifest import Artifact

INSTALL_HINT = "pip install 'freenet-deploy[cluster]'"


class ClusterUnavailable(ExportError):
    """The engine is not installed or the cluster cannot be reached (what to do is in the message)."""


def check_engine() -> None:
    """ClusterUnavailable naming the extra to install when Dask distributed is missing."""
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise ClusterUnavailable(
            f"--cluster needs Dask distributed, which is not installed: {INSTALL_HINT} "
            "(the default export, without --cluster, needs nothing extra)")


def _client(address: str):
    check_engine()
    try:
        from distributed import Client
    except ImportError:
        raise ClusterUnavailable(
            f"--cluster needs Dask distributed, which is not installed: {INSTALL_HINT} "
            "(the default export, without --cluster, needs nothing extra)") from None
    try:
        return Client(address, timeout="20s", set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise ClusterUnavailable(f"cannot reach the Dask scheduler at {address}: {e}") from None


def run_on_cluster(address: str, plan, todo, refs, bundle: Path, bundle_id: str, finished, progress=None) -> None:
    from distributed import as_completed

    from .api import log_path, place, prep_failed
    from .parallel import Job, run_job

    client = _client(address)
    try:
        futures = {}
        for m, fmt, target, precision in todo:
            job = Job(m, fmt, target, precision, plan, bundle_id, refs[m], None, None, threads=1)
            # key: readable in the dashboard, unique per run (a re-run must not get a cached result)
            fut = client.submit(run_job, job, key=f"freenet-export-{job.id}-{uuid.uuid4().hex[:8]}", pure=False)
            futures[fut] = (job, time.perf_counter())
        total = len(futures)
        if progress:
            progress(f"{total} jobs on the cluster at {address}", 0, total)
        for fut in as_completed(list(futures), loop=client.loop):
            job, started = futures[fut]
            log = log_path(bundle, job.id)
            try:
                result = fut.result()
            except Exception as e:  # noqa: BLE001 - KilledWorker, a lost connection, an error raised in the task
                art = prep_failed(job.model, job.fmt, job.target, job.precision,
                                  f"cluster task failed: {type(e).__name__}: {e}", None)
                art.export_seconds = time.perf_counter() - started
                finished(art)
                continue
            art = Artifact.model_validate_json(result.artifact)
            staged = None
            staging = bundle / ".staging" / uuid.uuid4().hex
            if result.payload is not None:
                staging.mkdir(parents=True, exist_ok=True)
                staged = staging / result.name
                staged.write_bytes(result.payload)
            try:
                art = place(art, staged, bundle)  # checks the worker's sha256 against the bytes received
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            if result.log_text is not None:
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text(result.log_text)
                art.log_file = str(log.relative_to(bundle))
            finished(art)
    finally:
        client.close()
