"""device_bench commands of the `freenet` CLI: `serve`, `token create/revoke/list`, `import`, `db`.

Commands stay thin: they parse options and call `server`, `store` and `importers`. Run without
installing the package as `python -m device_bench.cli COMMAND ...` (the tests do).
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="sqlite:///PATH or postgresql+psycopg://...; default ./freenet-data/freenet.db",
                 envvar="FREENET_DB"),
]


def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8787,
    bundles: Annotated[Path | None, typer.Option(help="Folder of model bundles to serve to phones.",
                                                 exists=True, file_okay=False)] = None,
    max_body_bytes: Annotated[int, typer.Option(help="Larger report bodies get 413.")] = 4 * 1024 * 1024,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    tls_cert: Annotated[Path | None, typer.Option(help="HTTPS certificate (PEM, chain) for phones on the LAN.", exists=True, dir_okay=False)] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Private key of --tls-cert (PEM).", exists=True, dir_okay=False)] = None,
    self_signed_tls: Annotated[bool, typer.Option(help="HTTPS with a generated lab CA + server certificate (freenet-data/tls); phones install the CA once (web_app/README.md).")] = False,
    pair_ttl: Annotated[int, typer.Option(help="Seconds a printed pairing code stays valid.")] = 900,
    workers: Annotated[int, typer.Option(min=1, help="Server processes (uvicorn workers), each with its own connection pool, group-commit writer and 1 s token cache; ingest is CPU-bound per process.")] = 1,
) -> None:
    """Run the aggregator: report API, dashboard at /, browser runner at /run, OpenAPI docs at /docs."""
    import uvicorn

    from device_bench import web
    from device_bench.server import create_app

    from device_bench.migrations import SchemaOutOfDate
    from device_bench.store import Store

    try:
        # The embedded SQLite default upgrades its schema here; PostgreSQL must be upgraded by the
        # operator (`freenet db upgrade`) and is refused while behind.
        store = Store(db)
    except SchemaOutOfDate as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from None
    app = create_app(store=store, bundles_dir=bundles, max_body_bytes=max_body_bytes)
    try:
        ssl = web.serve_options(app, app.state.store, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key,
                                self_signed_tls=self_signed_tls, pair_ttl_s=pair_ttl)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level=log_level, **ssl)
        return
    # Worker processes build their own app from this configuration (device_bench.server.
    # app_from_env); the schema was checked or upgraded above, once, before any of them starts.
    import json
    import os

    os.environ["FREENET_SERVE_APP"] = json.dumps({
        "db": store.url, "bundles": str(bundles) if bundles else None, "max_body_bytes": max_body_bytes,
        "runner_urls": getattr(app.state, "runner_urls", None), "pair_ttl_s": pair_ttl,
        "lab_ca": getattr(app.state, "lab_ca", None)})
    store.close()
    uvicorn.run("device_bench.server:app_from_env", factory=True, workers=workers, host=host, port=port,
                log_level=log_level, **ssl)


def pair(db: DbOption = None,
         url: Annotated[str | None, typer.Option(help="The server's runner URL as the phone reaches it, e.g. https://192.168.1.5:8787")] = None,
         ttl: Annotated[int, typer.Option(help="Seconds the code stays valid.")] = 900) -> None:
    """Print a fresh single-use pairing code for the browser runner (URL + QR code)."""
    from device_bench.web import pair_cmd

    pair_cmd(db, url, ttl)


token_app = typer.Typer(help="Device tokens for POST /api/v1/reports (only their hashes are stored).",
                        no_args_is_help=True)


@token_app.command("create")
def token_create(device: Annotated[str, typer.Option(help="Device name, e.g. pixel8-lab.")], db: DbOption = None) -> None:
    """Create a token for DEVICE and print it (it is shown only once)."""
    from device_bench.store import Store

    with Store(db) as store:
        info, token = store.create_token(device)
    typer.echo(f"created {info.id} for device {info.device!r}; the token (shown only now):", err=True)
    typer.echo(token)


@token_app.command("revoke")
def token_revoke(token_or_id: Annotated[str, typer.Argument(help="The token itself or its id (tok_...).")],
                 db: DbOption = None) -> None:
    """Revoke a token: later reports sent with it get 401."""
    from device_bench.store import Store

    with Store(db) as store:
        try:
            info = store.revoke_token(token_or_id)
        except KeyError as exc:
            raise typer.BadParameter(str(exc.args[0])) from None
    typer.echo(f"revoked {info.id} (device {info.device!r}) at {info.revoked_at:%Y-%m-%d %H:%M:%S} UTC")


@token_app.command("list")
def token_list(db: DbOption = None) -> None:
    """List tokens (ids, devices, state); token values are never stored."""
    from rich.console import Console
    from rich.table import Table

    from device_bench.store import Store

    with Store(db) as store:
        rows = store.list_tokens()
    table = Table("id", "device", "created (UTC)", "revoked (UTC)")
    for t in rows:
        table.add_row(t.id, t.device, f"{t.created_at:%Y-%m-%d %H:%M:%S}",
                      "—" if t.revoked_at is None else f"{t.revoked_at:%Y-%m-%d %H:%M:%S}")
    Console().print(table)


class ImportKind(str, Enum):
    tflite = "tflite"
    executorch = "executorch"


def import_reports(
    kind: Annotated[ImportKind, typer.Argument(help="tflite: benchmark_model log; executorch: benchmark_results.json")],
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The tool's output file.")],
    context: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False,
        help="JSON with the report fields the tool does not print (device, model.sha256, "
             "model.input_shape, runtime.version, ...); for executorch, per-model fields under "
             "'models': {name: {...}}.")] = None,
    server: Annotated[str | None, typer.Option(help="POST to this aggregator, e.g. http://127.0.0.1:8787")] = None,
    token: Annotated[str | None, typer.Option(envvar="FREENET_TOKEN", help="Device token for --server.")] = None,
    db: DbOption = None,
    dry_run: Annotated[bool, typer.Option(help="Print the reports as JSON, store nothing.")] = False,
) -> None:
    """Turn TFLite benchmark_model / ExecuTorch benchmark app output into reports and store them."""
    from pydantic import ValidationError

    from device_bench.importers import report_from_benchmark_model, reports_from_executorch

    ctx = json.loads(context.read_text()) if context else {}
    try:
        if kind is ImportKind.tflite:
            reports = [report_from_benchmark_model(path.read_text(errors="replace"), ctx)]
        else:
            reports = reports_from_executorch(path.read_bytes(), ctx)
    except ValidationError as exc:
        fields = "\n".join(f"  {'.'.join(map(str, e['loc'])) or 'report'}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(f"the imported report is incomplete; add these to --context:\n{fields}") from None
    if dry_run:
        typer.echo(json.dumps([json.loads(r.model_dump_json()) for r in reports], indent=2))
        return
    if server:
        import httpx

        if not token:
            raise typer.BadParameter("--server needs --token (or FREENET_TOKEN)")
        for r in reports:
            resp = httpx.post(server.rstrip("/") + "/api/v1/reports", content=r.model_dump_json(),
                              headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                              timeout=30)
            if resp.status_code not in (200, 201):
                raise typer.Exit(f"server answered {resp.status_code}: {resp.text[:2000]}")
            typer.echo(f"{r.run_id} {'stored' if resp.status_code == 201 else 'already stored'} ({r.status})")
        return
    from device_bench.store import Store

    with Store(db) as store:
        for r in reports:
            new = store.add_report(r)
            typer.echo(f"{r.run_id} {'stored' if new else 'already stored'} ({r.status})")


db_app = typer.Typer(help="The aggregator database's schema (Alembic migrations).", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None,
               revision: Annotated[str, typer.Option(help="Target revision (default: the newest).")] = "head") -> None:
    """Upgrade the database schema to the newest revision (back the database up first).

    A database made before migrations is recognised by its columns and stamped first."""
    from device_bench import migrations
    from device_bench.store import default_db_url, make_engine

    url = db or default_db_url()
    engine = make_engine(url)
    try:
        start = migrations.upgrade(engine, revision)
    finally:
        engine.dispose()
    typer.echo(f"upgraded {make_safe(url)} from {start or 'an empty database'} to {revision} "
               f"(newest: {migrations.HEAD})")


@db_app.command("current")
def db_current(db: DbOption = None) -> None:
    """Print the database's schema revision and the newest one this version knows."""
    from device_bench import migrations
    from device_bench.store import default_db_url, make_engine

    engine = make_engine(db or default_db_url())
    try:
        with engine.connect() as conn:
            rev = migrations.current_revision(conn)
            legacy = migrations.legacy_revision(conn) if rev is None else None
    finally:
        engine.dispose()
    state = rev or (f"none (made before migrations; matches {legacy})" if legacy else "none (empty)")
    typer.echo(f"revision: {state}\nhead: {migrations.HEAD}")


def make_safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def register(app: typer.Typer) -> None:
    """Add the device_bench commands to the root CLI."""
    app.command("serve")(serve)
    app.command("pair")(pair)
    app.add_typer(token_app, name="token")
    app.command("import")(import_reports)
    app.add_typer(db_app, name="db")


if __name__ == "__main__":
    _app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False)
    register(_app)
    _app()
