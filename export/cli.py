"""`freenet export` command (filled in by the export work)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the export commands to the root CLI."""
