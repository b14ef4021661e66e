"""Keep the terminal to our own progress and tables: third-party output goes to log files.

Converters and runtimes talk a lot (litert-torch stage timers, TensorFlow and XNNPACK/cpuinfo
messages, Python warnings, logging records, tqdm bars): `capture_output(path)` routes all of it, at
the file-descriptor level (so native writes are caught too) and at the Python level, to one log file
while the block runs. `terminal_console()` gives the CLIs a rich Console on a private duplicate of
the terminal, so their progress bars keep drawing while fd 1/2 point at a log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def capture_output(path: Path) -> Iterator[Path]:
    """Send fd 1, fd 2, sys.stdout/sys.stderr, warnings and root logging to `path` (appended)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    log = open(path, "a", buffering=1, errors="replace")  # noqa: SIM115 - closed below
    saved_fds = []
    for fd in (1, 2):
        try:
            saved_fds.append((fd, os.dup(fd)))
            os.dup2(log.fileno(), fd)
        except OSError:  # no such descriptor (embedded interpreters): Python-level capture only
            pass
    saved_streams = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = log
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    # handlers that print to the terminal (a library's own StreamHandler on the old stderr object)
    muted = [(h, h.level) for h in root.handlers if h is not handler and isinstance(h, logging.StreamHandler)
             and not isinstance(h, logging.FileHandler) and getattr(h, "stream", None) in saved_streams]
    for h, _ in muted:
        h.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: log.write(
                warnings.formatwarning(message, category, filename, lineno, line))
            yield path
    finally:
        for h, level in muted:
            h.setLevel(level)
        root.removeHandler(handler)
        sys.stdout, sys.stderr = saved_streams
        with contextlib.suppress(Exception):
            log.flush()
        for fd, saved in saved_fds:
            os.dup2(saved, fd)
            os.close(saved)
        log.close()


def terminal_console(width: int):
    """A rich Console that writes to the terminal even while `capture_output` holds fd 1 and 2
    (a private duplicate of stdout); `width` applies when the output is not a terminal (a log)."""
    from rich.console import Console

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a test runner's in-memory stdout
        return Console() if Console().is_terminal else Console(width=width)
    stream = os.fdopen(os.dup(fd), "w", buffering=1, encoding=getattr(sys.stdout, "encoding", None) or "utf-8")
    probe = Console(file=stream)
    return probe if probe.is_terminal else Console(file=stream, width=width)
