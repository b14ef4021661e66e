"""`freenet bench` (host runner) and `freenet compare` (the main job): thin typer layers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from export.backends import FORMATS
from export.console import terminal_console

from .runtimes import RUNTIMES, default_runtimes

# Converters and runtimes write to per-artifact logs in the bundle (BUNDLE/logs/); this console
# stays on the terminal for progress and tables.
console = terminal_console(width=160)
_ALL_RUNTIMES, _DEFAULT_RUNTIMES = ",".join(RUNTIMES), ",".join(default_runtimes())


def _csv(v: str) -> list[str]:
    return [x.strip() for x in v.split(",") if x.strip()]


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)


def bench(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory made by `freenet export`.")],
    runtimes: Annotated[str, typer.Option(help=f"Comma list: {_ALL_RUNTIMES}; web = the browser runner in this machine's Chromium (all its runtimes), or web:litert-js:webgpu, web:onnxruntime-web:wasm, ...")] = _DEFAULT_RUNTIMES,
    models: Annotated[str | None, typer.Option(help="Comma list of models in the bundle (default: all).")] = None,
    precision: Annotated[str, typer.Option(help="Comma list of precisions to measure.")] = "fp32",
    server: Annotated[str | None, typer.Option(help="Aggregator URL; reports are POSTed there with --token.")] = None,
    token: Annotated[str | None, typer.Option(help="Device token for --server (`freenet token create`).", envvar="FREENET_TOKEN")] = None,
    db: Annotated[str | None, typer.Option(help="Embedded mode: store URL (default SQLite under ./freenet-data).")] = None,
    warmup: int = 10,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds (per process).")] = 5,
    runs: Annotated[int, typer.Option(help="Timed runs per model per round.")] = 10,
    threads: int = 1,
    processes: Annotated[int, typer.Option(help="Fresh worker processes per artifact, one report each (independent runs: "
                                           "intervals from their disagreement). Host runtimes only.")] = 1,
    pin: Annotated[bool, typer.Option(help="Pin each worker process to --threads cores (os.sched_setaffinity) where the OS allows.")] = True,
) -> None:
    """Measure a bundle's artifacts with this machine's runtimes and report them (schema reports)."""
    from .runner import BenchPlan, http_sink, run_bench, store_sink
    from .stats import fmt, summarize

    if server and not token:
        raise typer.BadParameter("--server needs --token (or FREENET_TOKEN)")
    rts = _csv(runtimes)
    web = [r for r in rts if r == "web" or r.startswith("web:")]
    if web:  # the browser runner (web_app/) in Chromium: its own driver, same reports
        rts = [r for r in rts if r not in web]
        _bench_web(bundle, models, precision, server, token, db, warmup, rounds, runs,
                   None if "web" in web else [r.split(":", 1)[1] for r in web])
        if not rts:
            return
    plan = BenchPlan(bundle, rts, _csv(models) if models else None, _csv(precision), warmup, rounds, runs, threads,
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
                      fmt(r.parity.max_abs_diff if r.parity else None) if r.status == "ok" else (r.error or ""))
    console.print(table)


def _bench_web(bundle: Path, models: str | None, precision: str, server: str | None, token: str | None, db: str | None,
               warmup: int, rounds: int, runs: int, web_runs: list[str] | None) -> None:
    from rich.table import Table

    from .stats import fmt, summarize
    from .web_driver import bench_web

    try:
        reports = bench_web(bundle, models=_csv(models) if models else None, precisions=_csv(precision), warmup=warmup,
                            rounds=rounds, runs_per_round=runs, db=db, server=server, token=token, runs=web_runs,
                            log=lambda m: console.print(f"[dim]{m}[/]"))
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None
    table = Table(title=f"browser runner in Chromium ({'sent to ' + server if server else 'stored locally'})")
    for c in ("model", "runtime", "precision", "status", "median ms", "parity", "note"):
        table.add_column(c)
    for r in reports:
        rt = r["runtime"]
        s = summarize(r["timing"]["samples_ms"])
        used = f" -> {rt['accelerator_used']}" if rt.get("accelerator_used") else ""
        table.add_row(r["model"]["name"], f"{rt['name']}/{rt['accelerator']}{used}" + (" (emulated)" if rt["emulated"] else ""),
                      r["model"]["precision"], r["status"], fmt(s.median), fmt(r["parity"].get("rel_diff")), (r.get("error") or "")[:60])
    console.print(table)


def compare_cmd(
    models: Annotated[str | None, typer.Option(help="Comma list (default: FreeNet S1-S4, StarNet S1-S4, MobileNetV2, V3-Large, V4-Conv-S).")] = None,
    formats: Annotated[str, typer.Option(help="Export formats.")] = ",".join(FORMATS),
    precision: Annotated[str, typer.Option(help="Export precisions (measurements use fp32 on this CPU).")] = "fp32,fp16",
    runtimes: Annotated[str, typer.Option(help=f"Host runtimes to measure ({_ALL_RUNTIMES}).")] = _DEFAULT_RUNTIMES,
    work_dir: Annotated[Path, typer.Option(help="Bundle, database and report live here.")] = Path("freenet-data"),
    db: Annotated[str | None, typer.Option(help="Store URL (default SQLite in WORK_DIR; postgresql+psycopg://... for a team).")] = None,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds per process (host protocol).")] = 2,
    runs: int = 10,
    warmup: Annotated[int, typer.Option(help="Warm-up runs per process (host protocol).")] = 10,
    processes: Annotated[int | None, typer.Option(help="Fresh worker processes per artifact; the headline interval comes from their "
                                                  "disagreement. Default: the protocol's (host 3, starnet 5, which splits its 500 runs).")] = None,
    anomalies: Annotated[bool, typer.Option(help="Name the op behind a runtime anomaly of the headline's models with a per-op profile.")] = True,
    input_size: Annotated[int | None, typer.Option(help="Input side in pixels (default: each model's own, 224); smaller only for quick checks.")] = None,
    protocol: Annotated[str, typer.Option(help="host: the options above. starnet: StarNet's published protocol (ONNX Runtime CPU, "
                                          "4 threads capped at the cores; CUDA EP with exhaustive cuDNN search where a CUDA GPU is "
                                          "present; 50 warm-ups, 500 runs); it sets runtimes, threads, warm-up and runs itself.")] = "host",
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Export worker processes (default: what cores and memory allow; 0: in this process).")] = None,
    cluster: Annotated[str | None, typer.Option(help="Export on a Dask cluster at this address (pip install 'freenet-deploy\\[cluster]').")] = None,
    remeasure: Annotated[bool, typer.Option(help="Measure every artifact again. Default: a runtime whose artifacts the store already "
                                            "measured (same sha256, runtime version, device and protocol) reuses those reports.")] = False,
) -> None:
    """The main job: export the suite to every format, verify, measure here, store, and report."""
    from .compare import SUITE, ComparePlan, run_compare
    from .protocols import PROTOCOLS

    if protocol not in PROTOCOLS:
        raise typer.BadParameter(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}", param_hint="--protocol")
    plan = ComparePlan(models=_csv(models) if models else list(SUITE), formats=_csv(formats), precisions=_csv(precision),
                       runtimes=_csv(runtimes), work_dir=work_dir, db_url=db, rounds=rounds, runs_per_round=runs, warmup=warmup,
                       input_size=input_size, protocol=protocol, processes=processes, profile_anomalies=anomalies,
                       export_jobs=jobs, cluster=cluster, remeasure=remeasure)
    try:
        plan.measurement()  # an uneven split of a protocol's runs is refused before anything is exported
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--processes") from None
    if protocol != "host":
        console.print(f"[bold]protocol:[/] {plan.measurement().describe()}")
    with _progress() as p:
        tasks: dict[str, int] = {}

        def update(phase: str, what: str, done: int, total: int) -> None:
            if phase == "reuse":  # which numbers were not measured in this run, said once, above the bars
                p.console.print(f"[bold]reused:[/] {what}")
                return
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
