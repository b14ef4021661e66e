"""The aggregator HTTP server (`freenet serve`): report ingest, queries, dashboard, bundles.

This module owns the FastAPI application of the protocol in docs/protocol.md: token-checked,
size-limited, idempotent `POST /api/v1/reports`; report listing and comparison JSON; the HTML
dashboard and report pages; and the read-only model bundle file server that phones download
artifacts from (every file with an `X-Content-SHA256` header). Validation and storage live in
`schema` and `store`; this module only maps them to HTTP status codes and messages.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from device_bench.schema import SCHEMA_VERSION, Report, parse_report
from device_bench.store import Store
from device_bench.summary import StatsMemo

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024  # a report at the schema's bounds (100k samples) fits
MAX_BATCH = 1000  # reports per batch request
MAX_PAGE = 1000  # rows per page of GET /api/v1/reports
BATCH_BODY_FACTOR = 16  # a batch may be this many times the single-report body limit
INLINE_PARSE_BYTES = 64 * 1024  # larger report bodies are validated in a worker thread
TOKEN_CACHE_S = 1.0  # a revocation by another process (the CLI) is refused within this


class _BodyTooLarge(Exception):
    pass


class _BatchBody(BaseModel):
    """The batch body when every item is a valid report (other keys are ignored, as below)."""

    reports: Annotated[list[Report], Field(max_length=MAX_BATCH)]


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    # Inputs are left out: they may hold NaN (not JSON) or a multi-megabyte list.
    return [
        {"loc": ["body", *e["loc"]], "field": ".".join(str(p) for p in e["loc"]),
         "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


class _Sha256Cache:
    """sha256 of bundle files, recomputed only when size or mtime change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[int, int, str]] = {}

    def get(self, path: Path) -> str:
        st = path.stat()
        with self._lock:
            hit = self._cache.get(path)
        if hit and hit[:2] == (st.st_size, st.st_mtime_ns):
            return hit[2]
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        with self._lock:
            self._cache[path] = (st.st_size, st.st_mtime_ns, h.hexdigest())
        return h.hexdigest()


def create_app(
    db_url: str | None = None,
    bundles_dir: str | os.PathLike[str] | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    store: Store | None = None,
) -> FastAPI:
    """The aggregator app. `db_url`: sqlite:///PATH (default ./freenet-data/freenet.db) or
    postgresql+psycopg://...; `bundles_dir`: folder of model bundle directories to serve."""
    if max_body_bytes < 1024:
        raise ValueError(f"max_body_bytes must be at least 1024, got {max_body_bytes}")
    store = store or Store(db_url)
    bundles = Path(bundles_dir).resolve() if bundles_dir else None
    hashes = _Sha256Cache()
    compare_cache = StatsMemo(max_entries=256)  # (summary version, query) -> rendered JSON
    app = FastAPI(
        title="FreeNet benchmark aggregator",
        version=SCHEMA_VERSION,
        description="Latency reports from the FreeNet runner apps. Protocol: docs/protocol.md.",
    )
    app.state.store = store

    # ---- API ----------------------------------------------------------------------------

    @app.get("/api/v1/health", tags=["api"])
    def health() -> dict[str, str]:
        return {"status": "ok", "schema_version": SCHEMA_VERSION}

    @app.post(
        "/api/v1/reports",
        tags=["api"],
        status_code=201,
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Report"}}}},
            "responses": {
                "200": {"description": "Already stored (same run_id): not counted again"},
                "401": {"description": "Missing, unknown or revoked device token"},
                "413": {"description": "Body larger than the server limit"},
                "422": {"description": "Invalid report; `detail` lists every field error"},
            },
        },
    )
    async def post_report(request: Request) -> JSONResponse:
        """Store one report. Header `Authorization: Bearer <device token>`."""
        info = await _device_token(request)
        try:
            body = await _read_limited(request, max_body_bytes)
        except _BodyTooLarge:
            return JSONResponse({"detail": f"report body larger than {max_body_bytes} bytes"}, status_code=413)
        try:
            # A report of usual size validates in tens of microseconds: on the event loop, without
            # a worker-thread hop; a large one (up to max_body_bytes) in a worker thread.
            report = parse_report(body) if len(body) <= INLINE_PARSE_BYTES else await run_in_threadpool(parse_report, body)
        except ValidationError as exc:
            return JSONResponse({"detail": _field_errors(exc)}, status_code=422)
        # Answered only once the group-commit transaction holding it has committed.
        (new,) = await asyncio.wrap_future(store.ingest_future([report], token_id=info.id))
        run_id = str(report.run_id)
        return JSONResponse({"run_id": run_id, "stored": new, "url": f"/reports/{run_id}"},
                            status_code=201 if new else 200)

    @app.post("/api/v1/reports/batch", tags=["api"])
    async def post_reports_batch(request: Request) -> JSONResponse:
        """Store up to MAX_BATCH reports in one request (a runner flushing its offline queue).
        Body `{"reports": [...]}`. Each item is judged alone: the answer lists, in order, per item
        `{"index", "run_id", "status": 201 | 200 | 422, "detail"?}`; one bad report never refuses
        the others, and resending a batch stores nothing twice (idempotent per run_id)."""
        info = await _device_token(request)
        limit = max_body_bytes * BATCH_BODY_FACTOR
        try:
            body = await _read_limited(request, limit)
        except _BodyTooLarge:
            return JSONResponse({"detail": f"batch body larger than {limit} bytes; send fewer reports per batch"}, status_code=413)

        def ingest() -> JSONResponse:
            try:
                # Usual case, every report valid: one validation pass over the whole body.
                reports = _BatchBody.model_validate_json(body).reports
            except ValidationError:
                pass  # malformed, too long, or some report invalid: judged one by one below
            else:
                news = store.ingest(reports, token_id=info.id)
                return JSONResponse({"results": [
                    {"index": i, "run_id": str(r.run_id), "status": 201 if new else 200, "url": f"/reports/{r.run_id}"}
                    for i, (r, new) in enumerate(zip(reports, news))]})
            try:
                items = json.loads(body)["reports"]
                if not isinstance(items, list):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                return JSONResponse({"detail": 'the body must be a JSON object {"reports": [report, ...]}'}, status_code=422)
            if len(items) > MAX_BATCH:
                return JSONResponse({"detail": f"at most {MAX_BATCH} reports per batch, got {len(items)}"}, status_code=413)
            results: list[dict[str, Any]] = []
            valid: list[tuple[int, Report]] = []
            for i, item in enumerate(items):
                try:
                    if not isinstance(item, dict):
                        raise ValueError("each item must be a report object")
                    valid.append((i, parse_report(item)))
                    results.append({"index": i})
                except ValidationError as exc:
                    results.append({"index": i, "run_id": item.get("run_id") if isinstance(item, dict) else None,
                                    "status": 422, "detail": _field_errors(exc)})
                except ValueError as exc:
                    results.append({"index": i, "run_id": None, "status": 422, "detail": str(exc)})
            news = store.ingest([r for _, r in valid], token_id=info.id)
            for (i, r), new in zip(valid, news):
                results[i].update(run_id=str(r.run_id), status=201 if new else 200, url=f"/reports/{r.run_id}")
            return JSONResponse({"results": results})

        return await run_in_threadpool(ingest)

    async def _device_token(request: Request):
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(401, "missing device token: send 'Authorization: Bearer <token>' "
                                "(create one with `freenet token create --device NAME`)",
                                headers={"WWW-Authenticate": 'Bearer realm="freenet"'})
        token = token.strip()
        # A known token seen in the last TOKEN_CACHE_S is checked without a query (see lookup_token).
        info = store.cached_token(token, max_age=TOKEN_CACHE_S) or await run_in_threadpool(
            lambda: store.lookup_token(token, max_age=TOKEN_CACHE_S))
        if info is None:
            raise HTTPException(401, "unknown device token", headers={"WWW-Authenticate": 'Bearer realm="freenet"'})
        if info.revoked:
            raise HTTPException(401, f"device token {info.id} was revoked", headers={"WWW-Authenticate": 'Bearer realm="freenet"'})
        return info

    @app.get("/api/v1/reports", tags=["api"])
    def list_reports(
        model: str | None = None,
        device: str | None = None,
        runtime: str | None = None,
        accelerator: str | None = None,
        platform: str | None = None,
        status: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> dict[str, Any]:
        """Stored reports (indexed fields), newest first, one page at a time: pass the answer's
        `next_cursor` as `cursor` for the next (older) page; it is null on the last page. Full
        JSON at /api/v1/reports/{run_id}."""
        try:
            page = store.page(model=model, device=device, runtime=runtime, accelerator=accelerator,
                              platform=platform, status=status, limit=limit, cursor=cursor or None)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"reports": [r.as_dict() for r in page.rows], "limit": limit, "next_cursor": page.next_cursor}

    @app.get("/api/v1/reports/{run_id}", tags=["api"], response_model=Report)
    def get_report(run_id: str) -> Report:
        report = store.get_report(run_id)
        if report is None:
            raise HTTPException(404, f"no report with run_id {run_id}")
        return report

    @app.get("/api/v1/compare", tags=["api"])
    def compare_endpoint(
        device: str | None = None,
        runtime: str | None = None,
        accelerator: str | None = None,
        model: str | None = None,
        baseline: str | None = None,
        max_runs: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> Response:
        """Per device x runtime x accelerator statistics, FreeNet-S2/StarNet-S4 and baseline ratios."""
        filters = {"device": device, "runtime": runtime, "accelerator": accelerator, "model": model}
        # Keyed by the summary version (see Store.summary_version): an unchanged answer is reused.
        key = (store.summary_version(**filters), baseline, max_runs, tuple(filters.items()))
        body = compare_cache.get(key)
        if body is None:
            groups = store.summary(baseline=baseline, max_runs=max_runs, with_samples=False, **filters)
            body = JSONResponse({"baseline": baseline, "max_runs": max_runs, "groups": [g.as_dict() for g in groups]})
            compare_cache.put(key, body)
        return Response(body.body, media_type="application/json")

    # ---- bundles -------------------------------------------------------------------------

    def _bundle_file(bundle: str, rel: str) -> Path:
        if bundles is None:
            raise HTTPException(404, "this server serves no bundles (start it with --bundles DIR)")
        root = (bundles / bundle).resolve()
        path = (root / rel).resolve()
        # Reject ../ and absolute paths: only files inside the bundle directory are served.
        if not root.is_relative_to(bundles) or not path.is_relative_to(root) or not path.is_file():
            raise HTTPException(404, f"no file {rel!r} in bundle {bundle!r}")
        return path

    def _send(path: Path, media_type: str | None = None) -> FileResponse:
        return FileResponse(path, media_type=media_type, headers={"X-Content-SHA256": hashes.get(path)})

    @app.get("/api/v1/bundles", tags=["bundles"])
    def list_bundles() -> dict[str, list[str]]:
        if bundles is None:
            return {"bundles": []}
        return {"bundles": sorted(p.name for p in bundles.iterdir() if (p / "manifest.json").is_file())}

    @app.get("/api/v1/bundles/{bundle}/manifest.json", tags=["bundles"])
    def bundle_manifest(bundle: str) -> FileResponse:
        return _send(_bundle_file(bundle, "manifest.json"), "application/json")

    @app.get("/api/v1/bundles/{bundle}/files/{path:path}", tags=["bundles"])
    def bundle_file(bundle: str, path: str) -> FileResponse:
        return _send(_bundle_file(bundle, path), "application/octet-stream")

    # ---- HTML ----------------------------------------------------------------------------

    from device_bench import dashboard

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(baseline: str | None = None, device: str | None = None, runtime: str | None = None,
              accelerator: str | None = None, cursor: Annotated[str | None, Query(max_length=200)] = None) -> HTMLResponse:
        try:
            return HTMLResponse(dashboard.render_index(store, baseline=baseline or None, device=device or None,
                                                       runtime=runtime or None, accelerator=accelerator or None,
                                                       cursor=cursor or None))
        except ValueError as exc:  # a cursor this server did not hand out
            raise HTTPException(422, str(exc)) from None

    @app.get("/plots/latency_vs_macs.svg", include_in_schema=False)
    def plot(device: str | None = None, runtime: str | None = None, accelerator: str | None = None) -> Response:
        svg = dashboard.latency_vs_macs_svg(store, device=device, runtime=runtime, accelerator=accelerator)
        return Response(svg, media_type="image/svg+xml")

    @app.get("/reports/{run_id}", include_in_schema=False)
    def report_page(run_id: str, format: str = "html") -> Response:
        report = store.get_report(run_id)
        if report is None:
            raise HTTPException(404, f"no report with run_id {run_id}")
        if format == "json":
            return Response(report.model_dump_json(indent=2), media_type="application/json")
        return HTMLResponse(dashboard.render_report(report))

    from device_bench import web

    web.mount(app, store)  # the browser runner: /run, /pair, POST /api/v1/pair

    def openapi() -> dict[str, Any]:
        # The report body is read raw (for the size limit and JSON-mode strict validation), so
        # its schema is added to the OpenAPI document by hand.
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            report_schema = Report.model_json_schema(ref_template="#/components/schemas/{model}")
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            comps.update(report_schema.pop("$defs", {}))
            comps["Report"] = report_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """The app of one `freenet serve --workers N` process, configured by the parent through the
    FREENET_SERVE_APP environment variable (JSON). Each process has its own Store: SQLite writers
    of different processes queue on the database's write lock (WAL, 30 s busy timeout), and a
    revocation made through one process reaches the others within TOKEN_CACHE_S."""
    cfg = json.loads(os.environ["FREENET_SERVE_APP"])
    app = create_app(store=Store(cfg["db"], migrate=False), bundles_dir=cfg["bundles"],
                     max_body_bytes=cfg["max_body_bytes"])
    for name in ("runner_urls", "pair_ttl_s", "lab_ca"):
        if cfg.get(name) is not None:
            setattr(app.state, name, cfg[name])
    return app


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks, size = [], 0
    # Also count the bytes actually received: chunked bodies carry no Content-Length.
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)
