"""`freenet bench` (host runner) and `freenet compare` (the main job): thin typer layers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console() if Console().is_terminal else Console(width=160)


def _csv(v: str) -> list[str]:
    return [x.strip() for x in v.split(",") if x.strip()]


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)


def bench(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory made by `freenet export`.")],
    runtimes: Annotated[str, typer.Option(help="Comma list: onnxruntime,litert,executorch,pytorch,litert-gpu-emulated.")] = "onnxruntime,litert,executorch,pytorch",
    models: Annotated[str | None, typer.Option(help="Comma list of models in the bundle (default: all).")] = None,
    precision: Annotated[str, typer.Option(help="Comma list of precisions to measure.")] = "fp32",
    server: Annotated[str | None, typer.Option(help="Aggregator URL; reports are POSTed there with --token.")] = None,
    token: Annotated[str | None, typer.Option(help="Device token for --server (`freenet token create`).", envvar="FREENET_TOKEN")] = None,
    db: Annotated[str | None, typer.Option(help="Embedded mode: store URL (default SQLite under ./freenet-data).")] = None,
    warmup: int = 10,
    rounds: int = 5,
    runs: Annotated[int, typer.Option(help="Timed runs per model per round.")] = 10,
    threads: int = 1,
    processes: Annotated[int, typer.Option(help="Fresh worker processes per artifact (independent repetitions; intervals from their disagreement).")] = 1,
    pin: Annotated[bool, typer.Option(help="Pin each worker to one core (os.sched_setaffinity) where the OS allows.")] = True,
) -> None:
    """Measure a bundle's artifacts with this machine's runtimes and report them (schema reports)."""
    from .runner import BenchPlan, http_sink, run_bench, store_sink
    from .stats import fmt, summarize

    if server and not token:
        raise typer.BadParameter("--server needs --token (or FREENET_TOKEN)")
    plan = BenchPlan(bundle, _csv(runtimes), _csv(models) if models else None, _csv(precision), warmup, rounds, runs, threads,
                     processes=processes, pin=pin)
    sink = http_sink(server, token) if server else store_sink(db)
    with _progress() as p:
        task = p.add_task("measuring", total=None)
        try:
            reports = run_bench(plan, sink, lambda w, d, t: p.update(task, description=w, completed=d, total=t))
        except (ValueError, FileNotFoundError, RuntimeError) as e:
            console.print(f"[red]error:[/] {e}")
            raise typer.Exit(2) from None
    from rich.table import Table

    table = Table(title=f"host latency ({'sent to ' + server if server else 'stored locally'})")
    for c in ("model", "runtime", "precision", "status", "median ms", "p10", "p90", "load ms", "parity"):
        table.add_column(c)
    for r in reports:
        s = summarize(r.timing.samples_ms)
        table.add_row(r.model.name, f"{r.runtime.name}/{r.runtime.accelerator}" + (" (emulated)" if r.runtime.emulated else ""),
                      r.model.precision, r.status, fmt(s.median), fmt(s.p10), fmt(s.p90), fmt(r.timing.load_ms),
                      fmt(r.parity.max_abs_diff if r.parity else None) if r.status == "ok" else (r.error or "")[:60])
    console.print(table)


def compare_cmd(
    models: Annotated[str | None, typer.Option(help="Comma list (default: FreeNet S1-S4, StarNet S1-S4, MobileNetV2, V3-Large, V4-Conv-S).")] = None,
    formats: Annotated[str, typer.Option(help="Export formats.")] = "onnx,coreml,tflite,executorch",
    precision: Annotated[str, typer.Option(help="Export precisions (measurements use fp32 on this CPU).")] = "fp32,fp16",
    runtimes: Annotated[str, typer.Option(help="Host runtimes to measure.")] = "onnxruntime,litert,executorch,pytorch",
    work_dir: Annotated[Path, typer.Option(help="Bundle, database and report live here.")] = Path("freenet-data"),
    db: Annotated[str | None, typer.Option(help="Store URL (default SQLite in WORK_DIR; postgresql+psycopg://... for a team).")] = None,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds per process.")] = 2,
    runs: int = 10,
    warmup: int = 10,
    processes: Annotated[int, typer.Option(help="Fresh worker processes per artifact; the headline interval comes from their disagreement.")] = 5,
    anomalies: Annotated[bool, typer.Option(help="Name the op behind a runtime anomaly with a per-op profile (a few minutes).")] = True,
) -> None:
    """The main job: export the suite to every format, verify, measure here, store, and report."""
    from .compare import SUITE, ComparePlan, run_compare

    plan = ComparePlan(models=_csv(models) if models else list(SUITE), formats=_csv(formats), precisions=_csv(precision),
                       runtimes=_csv(runtimes), work_dir=work_dir, db_url=db, rounds=rounds, runs_per_round=runs, warmup=warmup,
                       processes=processes, profile_anomalies=anomalies)
    with _progress() as p:
        tasks: dict[str, int] = {}

        def update(phase: str, what: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = p.add_task(phase, total=total)
            p.update(tasks[phase], description=f"{phase}: {what}", completed=done, total=total)

        try:
            out = run_compare(plan, update)
        except (ValueError, FileNotFoundError) as e:
            console.print(f"[red]error:[/] {e}")
            raise typer.Exit(2) from None
    from rich.markdown import Markdown

    md = (out / "report.md").read_text()
    head = "\n".join(line for line in md.split("## Every model")[0].splitlines() if not line.startswith("!["))  # no images in a terminal
    console.print(Markdown(head))
    console.print(f"report: {out / 'report.md'} · {out / 'report.html'} · plots in {out}")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
    app.command("compare")(compare_cmd)
