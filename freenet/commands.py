"""Model commands: `freenet models`, `freenet train`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
