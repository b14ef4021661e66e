"""`freenet export`: build a verified model bundle from registered models (thin layer over api.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .backends import FORMATS
from .console import terminal_console

# The converters' own output goes to BUNDLE/logs/<artifact>.log (export.console.capture_output);
# this console stays on the terminal. Status tables are wide: never below 180 columns in a log.
console = terminal_console(width=180)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _model_kwargs(items: list[str]) -> dict:
    """KEY=VALUE pairs; VALUE is read as JSON (true, 3, [[5, 2]]) and otherwise kept as text."""
    import json

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def status_table(rows: list[dict], title: str = "Export status") -> Table:
    table = Table(title=title, show_lines=False)
    for col in ("model", "format", "target", "precision", "status", "size MB", "parity", "delegate coverage", "time s", "reason"):
        table.add_column(col, overflow="fold")
    for r in rows:
        style = {"ok": "green", "failed": "red"}.get(r["status"], "yellow")
        table.add_row(
            r["model"], r["format"], r["target"], r["precision"], f"[{style}]{r['status']}[/]",
            "—" if r["size_mb"] is None else f"{r['size_mb']:.2f}",
            r["parity"] or "—", r["coverage"] or "—",
            "—" if r["seconds"] is None else f"{r['seconds']:.1f}", r["reason"] or "",
        )
    return table


def steps_table(artifacts, title: str = "Where the time went (seconds per step)") -> Table:
    """One row per artifact: its total and each step (export.steps), sub-steps indented."""
    names: list[str] = []
    for a in artifacts:
        for k in a.step_seconds or {}:
            if k not in names:
                names.append(k)
    order = ["prepare.model", "prepare.passes", "prepare.profile", "convert", "parity", "package", "write"]
    names.sort(key=lambda k: (order.index(k.split(".")[0] if k.startswith("convert.") else k)
                              if (k.split(".")[0] if k.startswith("convert.") else k) in order else 99, k))
    table = Table(title=title)
    for col in ("artifact", "worker", "total", *names):
        table.add_column(col, overflow="fold")
    for a in artifacts:
        s = a.step_seconds or {}
        table.add_row(f"{a.format}/{a.target}/{a.precision}", a.worker or "local",
                      "—" if a.export_seconds is None else f"{a.export_seconds:.1f}",
                      *("" if k not in s else (f"{s[k]:.0f}" if k == "memo_hits" else f"{s[k]:.1f}") for k in names))
    return table


def export(
    models: Annotated[list[str], typer.Argument(help="Registered model names, or timm:<name>.")],
    formats: Annotated[str, typer.Option(help=f"Comma list of {','.join(FORMATS)}.")] = ",".join(FORMATS),
    precision: Annotated[str, typer.Option(help="Comma list of fp32,fp16,int8.")] = "fp32,fp16",
    targets: Annotated[str | None, typer.Option(help="Comma list of targets (default: the mobile-GPU target of each format, plus ExecuTorch XNNPACK).")] = None,
    out: Annotated[Path, typer.Option(help="Bundle directory.")] = Path("bundles/default"),
    passes: Annotated[str | None, typer.Option(help="Comma list of rewrite passes (default set when omitted; '' for none).")] = None,
    no_passes: Annotated[bool, typer.Option("--no-passes", help="Switch every rewrite pass off (to see what breaks).")] = False,
    force: Annotated[bool, typer.Option(help="Overwrite an existing bundle.")] = False,
    reuse: Annotated[bool, typer.Option(help="Keep up-to-date artifacts of an existing bundle, rebuild the rest.")] = False,
    checkpoint: Annotated[Path | None, typer.Option(help="Local checkpoint (e.g. from `freenet train`).")] = None,
    input_size: Annotated[int | None, typer.Option(help="Square input size (default: the model's).")] = None,
    model_set: Annotated[list[str] | None, typer.Option("--set", help="Model constructor option KEY=VALUE (repeatable), e.g. --set equimo=true --set act=gelu_tanh.")] = None,
    nhwc: Annotated[bool, typer.Option("--nhwc/--nchw", help="TFLite input/output layout (NHWC removes the input TRANSPOSE).")] = True,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Worker processes (default: what cores and memory allow, ~3.7 GB each; 0: in this process).")] = None,
    cluster: Annotated[str | None, typer.Option(help="Run the conversions on a Dask cluster, e.g. tcp://10.0.0.5:8786 (pip install 'freenet-deploy\\[cluster]').")] = None,
    steps: Annotated[bool, typer.Option("--steps", help="Also print where each artifact's time went (prepare, convert, parity, ...).")] = False,
) -> None:
    """Export models to ONNX / Core ML / TFLite / ExecuTorch with rewrite passes, verify every artifact."""
    from .api import ExportError, ExportPlan, export_bundle, summarize
    from .passes import DEFAULT_PASSES

    if force and reuse:
        raise typer.BadParameter("--force and --reuse exclude each other")
    try:
        model_kwargs = _model_kwargs(model_set or [])
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    selected = [] if no_passes else (list(DEFAULT_PASSES) if passes is None else _csv(passes))
    plan = ExportPlan(
        models=models, formats=_csv(formats), precisions=_csv(precision), targets=_csv(targets) if targets else None,
        passes=selected, out_dir=out, on_existing="overwrite" if force else "reuse" if reuse else "error",
        checkpoint=checkpoint, input_size=input_size, channels_last_io=nhwc, model_kwargs=model_kwargs,
    )
    try:
        total = len(plan.jobs())
    except (ExportError, ValueError) as e:
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None
    from .parallel import default_jobs

    workers = default_jobs(total) if jobs is None else max(0, jobs)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("exporting", total=total)

        def report(what: str, done: int, _total: int) -> None:
            progress.update(task, completed=done, description=what)

        try:
            manifest = export_bundle(plan, report, workers=workers, cluster=cluster)
        except ExportError as e:
            from rich.markup import escape

            console.print(f"[red]error:[/] {escape(str(e))}")  # "freenet-deploy[cluster]" is not markup
            raise typer.Exit(2) from None
    console.print(status_table(summarize(manifest.artifacts)))
    if steps:
        console.print(steps_table(manifest.artifacts))
    failed = [a for a in manifest.artifacts if a.status != "ok"]
    console.print(f"bundle {out} ({manifest.bundle_id}): {len(manifest.artifacts) - len(failed)} ok, {len(failed)} failed"
                  + (f"; converter output of each artifact in {out / 'logs'}" if failed else ""))
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
