"""The contract of a host runtime: one `HostRuntime` object per engine, one module each.

A host runtime says what it is (name, the name reports carry, accelerator, delegate, whether its
timings are emulation), which artifacts it takes (a manifest format and its targets, or none for
eager PyTorch), how to open a measurement session (delegating to the format object's `open`, the
same one the export's parity check uses), what it reports as placement, and how the runner talks to
it: by default a worker process per artifact (`ProcessWorker`, device_bench/host_worker.py), but a
runtime that is not a Python process (a browser page) returns its own object with the same
`ask`/`close` methods from `start`. The runner and the worker never branch on runtime names: they
ask these objects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from abc import ABC
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import numpy as np

    from export.backends.base import Session
    from export.manifest import Artifact


class HostRuntime(ABC):
    name: ClassVar[str]  # what plans and the CLI call it (unique)
    report_name: ClassVar[str]  # `runtime.name` in reports (two host runtimes may share an engine)
    package: ClassVar[str]  # the distribution whose version reports carry
    accelerator: ClassVar[str]  # `runtime.accelerator` in reports
    format: ClassVar[str | None]  # the manifest format it runs; None: no file (eager PyTorch)
    # artifact targets it accepts; None: every target of its format that runs on this machine
    targets: ClassVar[tuple[str, ...] | None] = None
    format_accelerator: ClassVar[str | None] = None  # what it asks the format's open() to run on
    delegate: ClassVar[str | None] = None
    emulated: ClassVar[bool] = False  # timings are emulation: never a speed result
    default: ClassVar[bool] = True  # measured when a plan names no runtimes
    preimport: ClassVar[tuple[str, ...]] = ()  # imported before the load timer starts
    # the per-op profiler `profile_ops` uses, in words (the anomaly report names it); None: none here
    op_profiler: ClassVar[str | None] = None

    def version(self) -> str:
        try:
            return version(self.package)
        except PackageNotFoundError:
            return "unknown"

    def check_available(self) -> None:
        """Raise, with what to install, when this machine cannot run the runtime at all."""

    def select(self, artifacts: list[Artifact]) -> list[Artifact]:
        """The artifacts this runtime measures: one per model x precision of its format and targets."""
        chosen: dict[tuple[str, str], Artifact] = {}
        targets = self.accepted_targets()
        for a in artifacts:
            if a.format == self.format and a.target in targets:
                chosen.setdefault((a.model, a.precision), a)
        return list(chosen.values())

    def accepted_targets(self) -> tuple[str, ...]:
        if self.format is None:
            return ()
        if self.targets is not None:
            return self.targets
        from export.backends import get_format

        return tuple(t.name for t in get_format(self.format).targets if t.runs_here)

    def open(self, spec: dict) -> Session:
        """Load the artifact of `spec` (in the worker process) through its format object."""
        from export.backends import get_format

        return get_format(self.format).open(spec["path"], spec["target"], spec["threads"], self.format_accelerator)

    def load_info(self, session: Session) -> dict:
        """Extra fields of the worker's "load" reply (e.g. eager PyTorch's weights digest)."""
        return {}

    def model_fields(self, artifact: Artifact, load: dict) -> dict:
        """The report's model fields that depend on what the runtime measured."""
        return {"artifact_id": artifact.id, "format": artifact.format, "precision": artifact.precision,
                "sha256": artifact.sha256}

    def profile_ops(self, path: Path, x: np.ndarray, runs: int = 20, *, onnx_file: Path | None = None) -> dict[str, float]:
        """Per-op profile of one artifact of this runtime's format on one thread: op label -> ms per
        inference, summed over the op's nodes, in the labels of device_bench.anomaly ("depthwise
        Conv 7x7", "Conv 1x1", ...) so that runtimes can be compared op by op. `onnx_file`, the
        same model's ONNX graph where the bundle has one, lets a runtime whose profiler does not
        say the kernel size (ExecuTorch's XNNPACK events) name its convolutions."""
        raise NotImplementedError(f"{self.name} has no per-op profiler")

    def start(self, job, spec: dict, log_file: Path | None = None):
        """The object the runner talks to for this job (`ask(cmd) -> dict`, `close()`)."""
        return ProcessWorker(job, spec, log_file)


class ProcessWorker:
    """One device_bench.host_worker process per artifact, spoken to in JSON lines. Its stderr (the
    runtime's own chatter) goes to `log_file`, never to the console."""

    def __init__(self, job, spec: dict, log_file: Path | None = None) -> None:
        self.job, self.error, self.samples = job, None, []
        self.load: dict = {}
        self.log_file = log_file
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(log_file, "w")  # noqa: SIM115 - closed in close()
        else:
            self._log = subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "device_bench.host_worker", json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env,
        )

    def _tail(self) -> str:
        if self.log_file is None or not self.log_file.is_file():
            return ""
        lines = self.log_file.read_text(errors="replace").strip().splitlines()[-5:]
        return " | ".join(lines) + f" (log: {self.log_file})"

    def ask(self, cmd: dict) -> dict:
        if self.error:
            return {"error": self.error}
        try:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            self.proc.wait(timeout=30)
            self.error = f"worker exited with code {self.proc.returncode}: " + self._tail()
            return {"error": self.error}
        reply = json.loads(line)
        if "error" in reply:
            self.error = reply["error"]
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
        if self._log is not subprocess.DEVNULL:
            self._log.close()
