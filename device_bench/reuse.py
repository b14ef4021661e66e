"""Reuse of stored measurements: `freenet compare` re-measures only what changed.

A measurement is identified by what it measured and how: the artifact's sha256 (for eager
PyTorch, the bundle artifact whose model it rebuilt: notes["artifact_sha256"]), the runtime, its
accelerator and version, the device, and the protocol (threads, warm-up, rounds, runs per round,
processes, protocol name). When the store already holds a complete set of reports with that
identity for EVERY job of a runtime (one report per process, all of one earlier session), those
reports are reused for the runtime and it is not measured again; otherwise the whole runtime is
measured, so that its models keep running in the same window (the headline pairs models'
processes by index, device_bench/stats.py). `--remeasure` measures everything.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from types import SimpleNamespace

from .runner import BenchPlan, Job
from .runtimes import get_runtime
from .schema import Report
from .store import Store, device_label

# only measurements that finished are reused; an error is measured again
REUSABLE = ("ok", "parity_failed")
SCAN = 200  # newest stored reports looked at per model x runtime


@dataclass
class Reused:
    runtime: str
    reports: list[Report]


def _identity(job: Job, plan: BenchPlan) -> dict:
    a = job.artifact
    rt = get_runtime(job.runtime)
    return {
        "artifact_id": f"{a.model}.pytorch.eager.fp32" if rt.format is None else a.id,
        "artifact_sha256": a.sha256,
        "precision": "fp32" if rt.format is None else a.precision,
        "runtime": rt.report_name, "accelerator": rt.accelerator, "version": rt.version(), "emulated": rt.emulated,
        "threads": plan.threads, "warmup": plan.warmup, "rounds": str(plan.rounds), "runs": str(plan.runs_per_round),
        "protocol": plan.protocol, "processes": plan.processes, "target": a.target,
        "passes": ",".join(p.name for p in a.passes) or "none",
    }


def _matches(r: Report, want: dict) -> bool:
    notes = r.notes or {}
    # a file runtime's report names the file it measured; eager PyTorch's only through the note
    sha = notes.get("artifact_sha256") or (r.model.sha256 if r.model.format != "pytorch" else None)
    return (r.status in REUSABLE and r.model.artifact_id == want["artifact_id"] and sha == want["artifact_sha256"]
            and r.model.precision == want["precision"] and r.runtime.version == want["version"]
            and r.runtime.threads == want["threads"] and r.timing.warmup_runs == want["warmup"]
            and notes.get("rounds") == want["rounds"] and notes.get("runs_per_round") == want["runs"]
            and notes.get("protocol") == want["protocol"] and notes.get("target") == want["target"]
            and notes.get("passes") == want["passes"]
            and int(notes.get("processes", "1")) == want["processes"])


def _complete_sets(store: Store, job: Job, plan: BenchPlan, device: str) -> dict[str, list[Report]]:
    """session -> its complete set of reports for this job (newest session first)."""
    want = _identity(job, plan)
    rows = store.query(limit=SCAN, model=job.artifact.model, device=device, runtime=want["runtime"],
                       accelerator=want["accelerator"], emulated=want["emulated"])
    sets: dict[str, dict[int, Report]] = defaultdict(dict)
    for row in rows:
        if row.status not in REUSABLE or row.runtime_version != want["version"] or row.precision != want["precision"]:
            continue
        r = store.get_report(row.run_id)
        if r is None or not _matches(r, want):
            continue
        notes = r.notes or {}
        session = notes.get("session", r.run_id) if plan.processes > 1 else r.run_id
        sets[session].setdefault(int(notes.get("process", "0")), r)
    return {s: [got[p] for p in range(plan.processes)] for s, got in sets.items() if set(got) == set(range(plan.processes))}


def host_device_label(device: dict) -> str:
    """The store's device label of this machine (store.device_label of a report made here)."""
    return device_label(SimpleNamespace(device=SimpleNamespace(manufacturer=device["manufacturer"], model=device["model"])))


def stored_measurements(store: Store, jobs: list[Job], plan: BenchPlan, device: dict) -> list[Reused]:
    """For every runtime whose jobs ALL have a complete stored set, the reports to reuse (see module doc)."""
    label = host_device_label(device)
    out = []
    for rt in dict.fromkeys(j.runtime for j in jobs):
        group = [j for j in jobs if j.runtime == rt]
        found = [_complete_sets(store, j, plan, label) for j in group]
        if not all(found):
            continue
        if plan.processes > 1:  # one earlier session for all of them: their processes pair by index
            common = set.intersection(*(set(f) for f in found))
            if not common:
                continue
            newest = max(common, key=lambda s: max(r.created_at for r in found[0][s]))
            chosen = [f[newest] for f in found]
        else:
            chosen = [max(f.values(), key=lambda rs: rs[0].created_at) for f in found]
        out.append(Reused(rt, [r for rs in chosen for r in rs]))
    return out
