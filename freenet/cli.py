"""The one `freenet` command line.

This module owns the root typer application and the model commands (`models`, `train`).
Downstream packages (export, device_bench) add their own sub-commands through the
`freenet.commands` entry-point group declared in pyproject.toml, so the model package never
imports the packages that consume it.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

app = typer.Typer(
    name="freenet",
    help="FreeNet models, mobile export and on-device latency benchmarking.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def register(root: typer.Typer) -> None:
    """Add the model commands (`freenet models`, `freenet train`)."""
    from freenet import commands

    commands.register(root)


def build_app() -> typer.Typer:
    """Load every registered command group into the root app (once)."""
    if not getattr(app, "_loaded", False):
        for ep in sorted(entry_points(group="freenet.commands"), key=lambda e: e.name):
            ep.load()(app)
        app._loaded = True  # type: ignore[attr-defined]
    return app


def _quiet_third_party_warnings() -> None:
    """Converters warn about their own internals on every export (torch's pytree LeafSpec
    deprecation, ExecuTorch's "experimental API"); a user can do nothing about them, and they bury
    the progress bars. Our own warnings and errors are untouched."""
    import warnings

    warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"This API is experimental", category=Warning)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(coremltools|executorch|torch|onnxscript|litert_torch)\b.*")


def main() -> None:
    _quiet_third_party_warnings()
    build_app()()
