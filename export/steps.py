"""Where an export's time goes: named steps timed into the artifact's manifest entry.

The orchestrator (export/api.py) opens one recording per artifact and times its own stages
(`prepare`, `convert`, `parity`, `package`, `write`); a format's `export()` may time its sub-steps
(`convert.trace`, `convert.quantize`, `convert.coverage`, `convert.gpu_check`, ...) with the same
`step(name)`: they nest inside `convert`, so `convert` is the total and the dotted names say where
it went. Outside a recording `step` only runs the block (a backend called directly pays nothing).

    with recording() as seconds:
        with step("convert"):
            ...
    seconds  # {"convert": 12.3, "convert.trace": 8.1}

Also a small per-process memo for conversions that several artifacts of one model repeat
(`memo`), so that a worker that exports fp32 and then fp16 of the same model traces it once.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

_current: ContextVar[dict[str, float] | None] = ContextVar("freenet_export_steps", default=None)

T = TypeVar("T")


@contextlib.contextmanager
def recording() -> Iterator[dict[str, float]]:
    """Collect the steps timed inside the block into the dict it yields (seconds, summed by name)."""
    seconds: dict[str, float] = {}
    token = _current.set(seconds)
    try:
        yield seconds
    finally:
        _current.reset(token)


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Time the block as step `name` of the current recording (summed when repeated)."""
    seconds = _current.get()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        if seconds is not None:
            seconds[name] = round(seconds.get(name, 0.0) + time.perf_counter() - t0, 3)


def record(name: str, value: float) -> None:
    """Add a step measured elsewhere (e.g. by a worker before the recording began)."""
    seconds = _current.get()
    if seconds is not None:
        seconds[name] = round(seconds.get(name, 0.0) + value, 3)


# ---------------------------------------------------------------------------------------------
# per-process memo of repeated conversions

_MEMO: OrderedDict[tuple, Any] = OrderedDict()
MEMO_ENTRIES = 8  # a few models' traced graphs (tens of MB each), never the whole zoo


MEMO_ATTR = "_freenet_memo_token"


def memo(model: Any, key: tuple, build: Callable[[], T]) -> T:
    """`build()` once per (model, `key`) in this process (the most recent MEMO_ENTRIES kept).

    Only a model the orchestrator tagged (`tag(model)`, once per prepared model) is memoised: a
    model object's id() can be reused after it is freed, a random token cannot. `key` holds every
    option that changes the result; callers treat the value as read-only (bytes, or copy it). A hit
    is recorded as the step `memo_hits`, so the manifest shows which artifacts reused work."""
    token = getattr(model, MEMO_ATTR, None)
    if token is None or os.environ.get("FREENET_EXPORT_NO_MEMO"):  # the benchmark's "before" (no reuse)
        return build()
    key = (token, *key)
    if key in _MEMO:
        _MEMO.move_to_end(key)
        record("memo_hits", 1)
        return _MEMO[key]
    value = build()
    _MEMO[key] = value
    while len(_MEMO) > MEMO_ENTRIES:
        _MEMO.popitem(last=False)
    return value


def tag(model: Any) -> None:
    """Mark `model` as memoisable (a fresh token: nothing cached for an earlier model can match)."""
    import uuid

    setattr(model, MEMO_ATTR, uuid.uuid4().hex)


def clear_memo() -> None:
    _MEMO.clear()
