"""device_bench commands of the `freenet` CLI."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the device_bench commands to the root CLI."""
