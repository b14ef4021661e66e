"""The format registry: one `Format` object per module (see `base.py`), collected here.

Everything else that needs a format fact (the planner, tool versions, parity, the host runtimes,
the docs' format table) reads it from these objects. The modules import only numpy/torch at load
time; converters and runtimes are imported inside `export`/`open`, so a missing converter fails
only its own format.
"""

from __future__ import annotations

from .base import Format
from .coreml import FORMAT as _COREML
from .executorch import FORMAT as _EXECUTORCH
from .onnx import FORMAT as _ONNX
from .tflite import FORMAT as _TFLITE

FORMATS: dict[str, Format] = {f.name: f for f in (_ONNX, _COREML, _TFLITE, _EXECUTORCH)}


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; valid: {', '.join(FORMATS)}") from None


def load_format(name: str) -> Format:
    """The format, or ImportError naming the packages to install."""
    fmt = get_format(name)
    fmt.ensure_installed()
    return fmt


def all_targets() -> dict[str, Format]:
    """target name -> the format that owns it."""
    return {t.name: f for f in FORMATS.values() for t in f.targets}


def format_table() -> str:
    """The docs' format table (Markdown), generated from the objects (tests check the docs hold it)."""
    hosts = {("linux", "darwin"): "Linux, macOS", ("darwin",): "macOS only", (): "device only"}
    rows = ["| format | extension | target | runs on | precisions | host parity/timing | needs |",
            "|---|---|---|---|---|---|---|"]
    for f in FORMATS.values():
        for t in f.targets:
            default = " (default)" if t.name in f.default_targets else ""
            needs = ", ".join(f"`{req}`" for req in f.requires.values())
            rows.append(f"| {f.title} | `{f.extension}` | `{t.name}`{default} | {t.device} | {', '.join(t.precisions)} "
                        f"| {hosts.get(tuple(t.hosts), ', '.join(t.hosts))} | {needs} |")
    return "\n".join(rows)
