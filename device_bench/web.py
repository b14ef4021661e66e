"""The browser runner's side of the aggregator: `/run`, pairing, and HTTPS for phones.

This module owns what `web_app/` (the zero-install browser runner) needs from `freenet serve`:
the built page and the runtimes' .wasm/.mjs files under `/run` (from `web_app/dist`, never a CDN);
`POST /api/v1/pair`, which exchanges a short-lived single-use pairing code for a device token;
`/pair`, a page with a fresh code as a QR code (served to the server's own machine only); the
runner URLs and QR code `freenet serve` prints; and the TLS set-up (`--tls-cert/--tls-key`, or a
generated lab CA + server certificate with `--self-signed-tls`). `server.create_app` mounts the
routes with `mount()`; the page itself speaks only the report protocol (docs/protocol.md).
"""

from __future__ import annotations

import html
import ipaddress
import os
import socket
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from device_bench.store import DEFAULT_DB_DIR, PairingRefused, Store

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIST = ROOT / "web_app" / "dist"
DEFAULT_PAIR_TTL_S = 900
MEDIA_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".css": "text/css",
               ".html": "text/html; charset=utf-8", ".json": "application/json", ".map": "application/json"}
NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>browser runner not built</title>
<h1>The browser runner is not built</h1>
<p>This server has no <code>{dist}</code>. Build it once (Node.js 20+ and npm needed, no internet at run time):</p>
<pre>make web            # or: cd web_app &amp;&amp; npm ci &amp;&amp; npm run build</pre>
<p>then reload this page. (<code>make setup</code>, <code>make compare</code> and <code>make test</code> build it too.)</p>"""


def dist_dir() -> Path:
    return Path(os.environ.get("FREENET_WEB_DIST", DEFAULT_DIST)).resolve()


def mount(app: FastAPI, store: Store) -> None:
    """Add the browser-runner routes to the aggregator app."""
    dist = dist_dir()

    @app.get("/run", include_in_schema=False)
    def run_page() -> Response:
        index = dist / "index.html"
        if not index.is_file():
            return HTMLResponse(NOT_BUILT.format(dist=html.escape(str(dist))), status_code=503)
        return FileResponse(index, media_type=MEDIA_TYPES[".html"], headers={"Cache-Control": "no-cache"})

    @app.get("/run/lab-ca.pem", include_in_schema=False)
    def lab_ca() -> Response:
        ca = getattr(app.state, "lab_ca", None)
        if not ca:
            raise HTTPException(404, "this server was not started with --self-signed-tls: there is no lab CA")
        return FileResponse(ca, media_type="application/x-x509-ca-cert", filename="freenet-lab-ca.pem")

    @app.get("/run/{path:path}", include_in_schema=False)
    def run_asset(path: str) -> Response:
        f = (dist / path).resolve()
        if not f.is_relative_to(dist) or not f.is_file():
            if not dist.is_dir():
                return HTMLResponse(NOT_BUILT.format(dist=html.escape(str(dist))), status_code=503)
            raise HTTPException(404, f"no file {path!r} in the browser runner build")
        return FileResponse(f, media_type=MEDIA_TYPES.get(f.suffix, "application/octet-stream"),
                            headers={"Cache-Control": "no-cache"})

    @app.post("/api/v1/pair", tags=["api"], status_code=201)
    async def pair(request: Request) -> JSONResponse:
        """Exchange a pairing code (from the runner URL / QR code) for a device token, once.
        Body `{"code": "...", "device": "name"}`; `201 {"token", "token_id", "device"}`,
        `410` for an expired or already used code, `404` for an unknown one."""
        try:
            body = await request.json()
            code, device = str(body["code"]).strip(), str(body.get("device") or "web browser").strip()[:180]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"detail": 'send {"code": "...", "device": "name"}'}, status_code=422)
        if not code or len(code) > 64:
            return JSONResponse({"detail": "unknown pairing code"}, status_code=404)
        try:
            info, token = await run_in_threadpool(store.redeem_pairing_code, code, device or "web browser")
        except PairingRefused as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404 if "unknown" in str(exc) else 410)
        return JSONResponse({"token": token, "token_id": info.id, "device": info.device}, status_code=201)

    @app.get("/pair", include_in_schema=False)
    def pair_page(request: Request) -> HTMLResponse:
        # A pairing code is a device token in waiting: only the server's own machine may mint one.
        host = request.client.host if request.client else ""
        if not _is_loopback(host):
            return HTMLResponse("<!doctype html><meta charset='utf-8'><h1>Pairing codes are shown on the server's machine only</h1>"
                                "<p>Open this page on the computer that runs <code>freenet serve</code>, or run "
                                "<code>freenet pair</code> there, and scan the QR code with the phone.</p>", status_code=403)
        code, expires = store.create_pairing_code(getattr(app.state, "pair_ttl_s", DEFAULT_PAIR_TTL_S))
        urls = getattr(app.state, "runner_urls", None) or [str(request.base_url).rstrip("/") + "/run"]
        return HTMLResponse(render_pair_page(urls, code, expires))


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost", "testclient")


def with_code(url: str, code: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}pair={code}"


def qr_svg(data: str) -> str:
    import segno

    return segno.make(data, error="m").svg_inline(scale=5, dark="#111", light="#fff")


def render_pair_page(urls: list[str], code: str, expires: datetime) -> str:
    items = "".join(
        f"<li><a href='{html.escape(with_code(u, code))}'>{html.escape(with_code(u, code))}</a></li>" for u in urls)
    return f"""<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Pair a phone</title><style>body{{font:15px system-ui,sans-serif;max-width:760px;margin:1em auto}}code{{background:#eee}}</style>
<h1>Pair a phone with this aggregator</h1>
<p>Scan with the phone's camera; the page it opens measures the phone's GPU and CPU and reports here.
Code <code>{code}</code>, single use, valid until {expires:%H:%M:%S} UTC. Reload this page for another.</p>
<div class="qr">{qr_svg(with_code(urls[0], code))}</div>
<ul>{items}</ul>
<p>WebGPU needs a secure context: <code>http://localhost:PORT/run</code> on Android after
<code>adb reverse tcp:PORT tcp:PORT</code>, or an <code>https://</code> URL
(<code>freenet serve --tls-cert/--tls-key</code> or <code>--self-signed-tls</code>; see web_app/README.md).</p>
<p><a href="/">dashboard</a></p></html>"""


# ---- what `freenet serve` prints, and HTTPS ---------------------------------------------------


def lan_ip() -> str | None:
    """This machine's address on the network a phone would use (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
        return None if ip.startswith("127.") else ip
    except OSError:
        return None


def runner_urls(host: str, port: int, tls: bool) -> list[str]:
    """The /run URLs to offer, the one a phone most likely uses first."""
    scheme = "https" if tls else "http"
    wildcard = host in ("0.0.0.0", "::", "")
    urls: list[str] = []
    if tls:
        ip = lan_ip() if wildcard else host
        if ip and not _is_loopback(ip):
            urls.append(f"https://{ip}:{port}/run")
        urls.append(f"https://localhost:{port}/run")
    else:
        urls.append(f"http://localhost:{port}/run")  # secure context: this machine, or a phone after adb reverse
        ip = lan_ip() if wildcard else (host if not _is_loopback(host) and host != "localhost" else None)
        if ip:
            urls.append(f"{scheme}://{ip}:{port}/run")  # plain HTTP on the LAN: wasm only, no WebGPU
    return urls


def announce(store: Store, urls: list[str], ttl_s: int, *, tls: bool, fingerprint: str | None = None, out=None) -> str:
    """Print the runner URLs and a QR code carrying a fresh pairing code; returns the code."""
    import segno

    out = out or sys.stdout
    code, expires = store.create_pairing_code(ttl_s)
    first = with_code(urls[0], code)
    print(f"\nBrowser runner (pairing code {code}, single use, valid until {expires:%H:%M:%S} UTC):", file=out)
    for u in urls:
        print(f"  {with_code(u, code)}", file=out)
    if not tls:
        port = urls[0].rsplit(":", 1)[1].split("/")[0]
        print(f"  WebGPU needs a secure context: on Android run `adb reverse tcp:{port} tcp:{port}` and open the localhost URL,\n"
              "  or restart with --tls-cert/--tls-key or --self-signed-tls for an https:// URL on the LAN.", file=out)
    if fingerprint:
        print(f"  lab CA (install on the phone first): {urls[0].rsplit('/run', 1)[0]}/run/lab-ca.pem  sha256 {fingerprint}", file=out)
    print("  more codes: `freenet pair`, or /pair on this machine's dashboard\n", file=out)
    segno.make(first, error="m").terminal(out=out, compact=True)
    out.flush()
    return code


def self_signed(dir_: Path, hosts: list[str]) -> tuple[Path, Path, Path, str]:
    """A lab CA (kept across restarts, so a phone installs it once) and a server certificate it
    signs for `hosts` (names or IPs). Returns (cert, key, ca_cert, ca_sha256_fingerprint)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    dir_.mkdir(parents=True, exist_ok=True)
    ca_cert_p, ca_key_p = dir_ / "lab-ca.pem", dir_ / "lab-ca.key"
    now = datetime.now(timezone.utc)
    pem = serialization.Encoding.PEM
    nokey = serialization.NoEncryption()
    if ca_cert_p.is_file() and ca_key_p.is_file():
        ca_key = serialization.load_pem_private_key(ca_key_p.read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(ca_cert_p.read_bytes())
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"freenet lab CA ({socket.gethostname()})")])
        ca_cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + timedelta(days=825))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .sign(ca_key, hashes.SHA256()))
        ca_key_p.write_bytes(ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, nokey))
        ca_key_p.chmod(0o600)
        ca_cert_p.write_bytes(ca_cert.public_bytes(pem))
    sans: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=397))  # iOS: at most 398 days
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_p, key_p = dir_ / "server.pem", dir_ / "server.key"
    key_p.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, nokey))
    key_p.chmod(0o600)
    cert_p.write_bytes(cert.public_bytes(pem) + ca_cert.public_bytes(pem))  # chain: server, then CA
    return cert_p, key_p, ca_cert_p, ca_cert.fingerprint(hashes.SHA256()).hex(":")


def serve_options(app: FastAPI, store: Store, *, host: str, port: int, tls_cert: Path | None, tls_key: Path | None,
                  self_signed_tls: bool, pair_ttl_s: int, tls_dir: Path | None = None, quiet: bool = False) -> dict[str, Any]:
    """Prepare TLS and the runner URLs for `freenet serve`; returns uvicorn's ssl keyword arguments."""
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    if tls_cert and self_signed_tls:
        raise ValueError("use either --tls-cert/--tls-key or --self-signed-tls")
    ssl: dict[str, Any] = {}
    fingerprint = None
    if self_signed_tls:
        names = [h for h in (lan_ip() if host in ("0.0.0.0", "::", "") else host, "localhost", "127.0.0.1", socket.gethostname()) if h]
        cert, key, ca, fingerprint = self_signed(tls_dir or Path(os.environ.get("FREENET_TLS_DIR", DEFAULT_DB_DIR / "tls")), names)
        ssl = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
        app.state.lab_ca = str(ca)
    elif tls_cert:
        ssl = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)}
    urls = runner_urls(host, port, bool(ssl))
    app.state.runner_urls, app.state.pair_ttl_s = urls, pair_ttl_s
    if not quiet:
        if not (dist_dir() / "index.html").is_file():
            print(f"\nnote: the browser runner is not built ({dist_dir()} missing): run `make web`; /run explains it too.")
        announce(store, urls, pair_ttl_s, tls=bool(ssl), fingerprint=fingerprint)
    return ssl


def pair_cmd(db: str | None = None, url: str | None = None, ttl: int = DEFAULT_PAIR_TTL_S) -> None:
    """Print a fresh single-use pairing code, its runner URL and a QR code (for `freenet pair`)."""
    with Store(db) as store:
        urls = [url.rstrip("/") + ("" if url.rstrip("/").endswith("/run") else "/run")] if url else runner_urls("0.0.0.0", 8787, False)
        announce(store, urls, ttl, tls=urls[0].startswith("https"))
