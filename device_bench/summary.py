"""FreeNet vs StarNet vs MobileNet tables: stored runs grouped and compared.

This module owns how stored runs become comparison tables: one table per device x runtime x
accelerator, one row per model x precision (emulated runs in rows of their own), the raw samples
of a row's latest runs pooled and summarised by `device_bench.stats`, and ratio columns against
FreeNet-S2, StarNet-S4 and an optional chosen baseline (same table, same precision). Emulated,
error-only and aggregate-only rows are shown but never enter a ratio. The server's compare
endpoint, the dashboard and the `freenet compare` report (`summarize_run`: one run's reports,
read back from the store) all render these objects: there is no second table builder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from device_bench import stats
from device_bench.stats import Comparison, Stability, Summary, compare_runs, row_verdict, stability, summarize

if TYPE_CHECKING:
    from device_bench.store import Store

PAIR = ("freenet_s2", "starnet_s4")  # the headline pair: FreeNet-S2 against StarNet-S4
FAMILY_ORDER = {"FreeNet": 0, "StarNet": 1, "MobileNet": 2, "other": 3}
LINKED_RUNS = 5


@dataclass
class ModelRow:
    model: str
    family: str
    precision: str
    emulated: bool
    runs: int
    errors: int
    samples_kind: str  # "raw", "aggregate" or "none" (only error runs)
    stats: Summary
    aggregate_mean_ms: float | None
    macs: int | None
    run_ids: list[str]
    error_run_ids: list[str]
    # Pooled raw samples of the window (a float64 array); None when every number of the row came
    # from a StatsMemo without reading them.
    samples: Sequence[float] | None = field(repr=False, default_factory=list)
    ratios: dict[str, Comparison | None] = field(default_factory=dict)
    window: tuple[str, ...] = field(repr=False, default=())  # run ids pooled, newest first
    # Issue 14: every report of the window is one independent run. `run_samples` holds them apart
    # (None when served from the memo), `stability` says whether they agree (stats.stability; None
    # without ratios), `verdicts` is stats.row_verdict of each ratio: "unstable: ..." when this row's
    # or the reference's runs disagree beyond their intervals, never faster/slower then.
    run_samples: list[np.ndarray] | None = field(repr=False, default=None)
    stability: Stability | None = None
    verdicts: dict[str, str] = field(default_factory=dict)
    # Per ratio: whether it pairs this row's reports with the reference's on their host-runner
    # process ("<session>/<process>", see `_pairing`), and then the stability of the per-process
    # ratios (what the ratio's verdict is judged on, as in the `freenet compare` headline; the
    # row's own `stability` is then only about its latency, which drift between runs moves).
    paired: dict[str, bool] = field(default_factory=dict)
    ratio_stability: dict[str, Stability] = field(default_factory=dict)
    process_keys: tuple[str | None, ...] = field(repr=False, default=())  # of the window's runs, in window order

    @property
    def comparable(self) -> bool:
        """Whether this row may enter a ratio: real hardware and raw samples."""
        return not self.emulated and self.stats.n > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "family": self.family, "precision": self.precision,
            "emulated": self.emulated, "runs": self.runs, "errors": self.errors,
            "samples_kind": self.samples_kind,
            "stats": {f"{k}_ms" if k not in ("n", "cv") else k: v for k, v in self.stats.as_dict().items()},
            "aggregate_mean_ms": self.aggregate_mean_ms, "macs": self.macs,
            "reports": [f"/reports/{r}" for r in self.run_ids],
            "error_reports": [f"/reports/{r}" for r in self.error_run_ids],
            "ratios": {k: (None if c is None else c.as_dict()) for k, c in self.ratios.items()},
            "stability": None if self.stability is None else self.stability.as_dict(),
            "verdicts": self.verdicts,
            "paired": self.paired,
            "ratio_stability": {k: v.as_dict() for k, v in self.ratio_stability.items()},
        }


@dataclass
class Group:
    device: str
    runtime: str
    accelerator: str
    rows: list[ModelRow]
    pair: Comparison | None
    pair_verdict: str | None = None  # stats.row_verdict of `pair` ("unstable: ..." when either side's runs disagree)

    @property
    def emulated(self) -> bool:
        """Every row ran on an emulated accelerator (never a speed result)."""
        return bool(self.rows) and all(r.emulated for r in self.rows)

    def row(self, model: str, precision: str = "fp32", *, emulated: bool = False) -> ModelRow | None:
        return next((r for r in self.rows if (r.model, r.precision, r.emulated) == (model, precision, emulated)), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device, "runtime": self.runtime, "accelerator": self.accelerator,
            "pair": {"a": PAIR[0], "b": PAIR[1], "comparison": None if self.pair is None else self.pair.as_dict(),
                     "verdict": self.pair_verdict},
            "models": [r.as_dict() for r in self.rows],
        }


log = logging.getLogger(__name__)


class MemoBackend(Protocol):
    """Where a StatsMemo keeps its entries across restarts (the store's summary_cache table):
    `persist_key` hashes -> JSON text."""

    def load(self, keys: list[str]) -> dict[str, str]: ...

    def save(self, items: dict[str, str]) -> None: ...


@cache
def stats_version() -> str:
    """What a persisted result depends on besides its samples: the statistics code (stats.py,
    byte for byte: resample counts, seeds, methods) and the numpy/scipy that ran it. Any change
    gives every key a new hash, so results computed by other code are never read back."""
    import scipy

    text = Path(stats.__file__).read_bytes() + f"|numpy {np.__version__}|scipy {scipy.__version__}".encode()
    return hashlib.sha256(text).hexdigest()


def persist_key(key: tuple) -> str:
    """The fingerprint a memo entry is persisted under: sha256 of the statistics version and the
    key, i.e. of the ordered run ids whose pooled samples the result was computed from."""
    return hashlib.sha256(json.dumps([stats_version(), *key]).encode()).hexdigest()


def _encode(value: Summary | Comparison | Stability) -> str:
    # JSON writes floats with repr(): they read back bit for bit.
    return json.dumps([type(value).__name__, value.as_dict()])


def _decode(text: str) -> Summary | Comparison | Stability:
    kind, d = json.loads(text)
    if kind == "Stability":  # JSON has no tuples: the intervals come back as lists
        d["intervals"] = [tuple(i) for i in d["intervals"]]
    return {"Summary": Summary, "Comparison": Comparison, "Stability": Stability}[kind](**d)


class StatsMemo:
    """Results of `summarize` and `compare` keyed by the ordered run ids they were computed from.

    Exact, not approximate: a stored report never changes (ingest is insert-or-ignore on run_id;
    nothing updates or deletes a report), so the pooled samples of a given ordered run-id tuple,
    and every number computed from them, are the same forever. A window that gains a run has a
    new key and is computed afresh; nothing has to be invalidated. Bounded (least recently used
    entries are dropped); thread-safe.

    With a `backend` (the store's summary_cache table) entries also survive a restart: `prefetch`
    reads the missing ones of a summary in one query, `flush` writes the new ones. The persisted
    key is the same fingerprint (`persist_key`), so the argument above holds for it too: a crash
    between ingest and `flush` leaves the new window without an entry (recomputed), never with a
    wrong one."""

    def __init__(self, max_entries: int = 20_000, backend: MemoBackend | None = None):
        self.max_entries = max_entries
        self.backend = backend
        self._data: OrderedDict[tuple, Any] = OrderedDict()
        self._unsaved: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        self.loaded = 0  # entries read back from the backend

    def prefetch(self, keys: Iterable[tuple]) -> None:
        """Read the entries of `keys` that are not in memory from the backend (one query)."""
        if self.backend is None:
            return
        with self._lock:
            missing = {persist_key(k): k for k in keys if k not in self._data}
        if not missing:
            return
        found = self.backend.load(list(missing))
        with self._lock:
            for h, text in found.items():
                self._data[missing[h]] = _decode(text)
                self._data.move_to_end(missing[h])
            self.loaded += len(found)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def flush(self) -> None:
        """Persist the entries computed since the last flush. A failure (say, a locked database)
        is logged, not raised: the entries are recomputed next time."""
        with self._lock:
            items, self._unsaved = self._unsaved, {}
        if self.backend is None or not items:
            return
        try:
            self.backend.save({persist_key(k): _encode(v) for k, v in items.items()})
        except Exception as exc:  # noqa: BLE001 - a cache write never fails a summary
            log.warning("could not persist %d summary results: %s", len(items), exc)

    def get(self, key: tuple) -> Any | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            # Only statistics are persisted; other callers' entries (the dashboard's rendered HTML,
            # keyed by group versions of one database) live in memory only: one unencodable entry
            # used to make the whole flush fail, so no statistic was kept once the dashboard rendered.
            if self.backend is not None and isinstance(value, (Summary, Comparison, Stability)):
                self._unsaved[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def clear(self) -> None:
        """Forget the in-memory entries (as a restart does); persisted ones stay."""
        with self._lock:
            self._data.clear()


def summarize_groups(
    runs: list[dict[str, Any]],
    *,
    baseline: str | None = None,
    with_ratios: bool = True,
    memo: StatsMemo | None = None,
    load_samples: Callable[[list[Any]], dict[Any, Any]] | None = None,
) -> list[Group]:
    """Build the tables from `Store.group_samples()` rows (one dict per stored report).

    with_ratios=False skips the bootstrap (for the plot, which needs only medians).
    memo: reuse statistics of windows seen before (see StatsMemo). Runs may then come without
    "samples" (with their "id"): `load_samples(ids) -> {id: samples}` reads only those that a
    memo miss needs, and a row whose numbers all came from the memo has `samples=None`."""
    by_row: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        by_row[(r["device"], r["runtime"], r["accelerator"], r["model"], r["precision"], bool(r["emulated"]))].append(r)

    tables: dict[tuple, list[ModelRow]] = defaultdict(list)
    raw_of: dict[int, list[dict[str, Any]]] = {}
    for (dev, rt, acc, model, precision, emulated), items in by_row.items():
        # Newest first; the id breaks ties in created_at so the pooled order is deterministic.
        items.sort(key=lambda r: (r["created_at"], r.get("id", 0)), reverse=True)
        ok = [r for r in items if r["status"] == "ok"]
        raw = [r for r in ok if r["samples_kind"] == "raw"]
        agg = [r for r in ok if r["samples_kind"] == "aggregate"]
        # Aggregate-only runs have no samples: show the tool's mean, never mix it into samples.
        agg_mean = (sum(r["mean_ms"] for r in agg) / len(agg)) if agg and not raw else None
        macs = next((r["macs"] for r in items if r["macs"] is not None), None)
        row = ModelRow(
            model=model, family=items[0]["family"], precision=precision, emulated=emulated,
            runs=len(ok), errors=len(items) - len(ok),
            samples_kind="raw" if raw else "aggregate" if agg else "none",
            stats=None, aggregate_mean_ms=agg_mean, macs=macs,  # type: ignore[arg-type]  # set below
            run_ids=[r["run_id"] for r in ok[:LINKED_RUNS]],
            error_run_ids=[r["run_id"] for r in items if r["status"] != "ok"][:LINKED_RUNS],
            samples=None,  # type: ignore[arg-type]
        )
        row.window = tuple(r["run_id"] for r in raw)
        row.process_keys = tuple(r.get("process_key") for r in raw)
        raw_of[id(row)] = raw
        tables[(dev, rt, acc)].append(row)

    def fill_samples(rows: list[ModelRow]) -> None:
        rows = [r for r in rows if r.samples is None]
        runs_needed = [run for r in rows for run in raw_of[id(r)] if "samples" not in run]
        loaded = load_samples([run["id"] for run in runs_needed]) if runs_needed and load_samples else {}
        for r in rows:
            parts = [np.asarray(run["samples"] if "samples" in run else loaded[run["id"]], dtype=np.float64) for run in raw_of[id(r)]]
            r.run_samples = parts
            # One float64 array (the store hands each run's samples as an array): no per-float Python.
            r.samples = np.concatenate(parts) if parts else np.empty(0)
            # Read-only: stats.compare may then keep its sorted copy for the row's other ratios.
            r.samples.flags.writeable = False

    all_rows = [r for rows in tables.values() for r in rows]
    plans = []
    for (dev, rt, acc), rows in sorted(tables.items()):
        rows.sort(key=lambda r: (FAMILY_ORDER.get(r.family, 9), r.model, r.precision, r.emulated))
        real = {(r.model, r.precision): r for r in rows if not r.emulated}
        refs = {"freenet_s2": PAIR[0], "starnet_s4": PAIR[1]}
        if baseline:
            refs["baseline"] = baseline
        plans.append(((dev, rt, acc), rows, real, refs))
    if memo is not None:  # a persisted memo: read back the statistics of every row in one query
        memo.prefetch([("summary", r.window) for r in all_rows])
    for r in all_rows:
        r.stats = memo.get(("summary", r.window)) if memo is not None else None
    fill_samples([r for r in all_rows if r.stats is None or memo is None])
    for r in all_rows:
        if r.stats is None:
            r.stats = summarize(r.samples)
            if memo is not None:
                memo.put(("summary", r.window), r.stats)

    if memo is not None and with_ratios:  # and every ratio (which rows may enter one needs their stats)
        memo.prefetch([("stability", row.window) for _, rows, _, _ in plans for row in rows if row.comparable]
                      + [key for _, rows, real, refs in plans for row, _, ref in _pairs(rows, real, refs) if ref is not None
                         for key in _ratio_keys(row, ref, _pairing(row, ref))])
    groups = []
    for (dev, rt, acc), rows, real, refs in plans:
        if with_ratios:
            _stability(rows, memo, fill_samples)
            _ratios(rows, real, refs, memo, fill_samples)
        pair = verdict = None
        for precision in ("fp32", "fp16", "int8"):
            a, b = real.get((PAIR[0], precision)), real.get((PAIR[1], precision))
            if with_ratios and a is not None and b is not None:
                pair, verdict = a.ratios["starnet_s4"], a.verdicts.get("starnet_s4")
                break
        groups.append(Group(dev, rt, acc, rows, pair, verdict))
    # Rows served from the memo still carry their samples when the caller handed them in.
    fill_samples([r for r in all_rows if all("samples" in run for run in raw_of[id(r)])])
    if memo is not None:
        memo.flush()
    return groups


def _pairs(rows: list[ModelRow], real: dict[tuple, ModelRow],
           refs: dict[str, str]) -> Iterator[tuple[ModelRow, str, ModelRow | None]]:
    """(row, ratio name, reference row) of every ratio cell of one table; the reference is None
    where the cell stays empty (no reference measured, or a side that may not enter a ratio)."""
    for row in rows:
        for k, name in refs.items():
            ref = real.get((name, row.precision))
            yield row, k, ref if ref is not None and row.comparable and ref.comparable else None


def _pairing(row: ModelRow, ref: ModelRow) -> list[int] | None:
    """For each run of `row` (window order), the index of the reference's run measured by the same
    host-runner process of the same session — or None when the two windows cannot be paired run
    for run: some report without a process key (phones, browsers, one process), a key twice, or
    windows that are not the same processes (a session measured one model but not yet the other).
    Paired runs ran in the same batch, so drift of the machine that hit both cancels in their ratio."""
    a, b = row.process_keys, ref.process_keys
    if len(a) < 2 or len(a) != len(b) or None in a or None in b or len(set(a)) != len(a) or set(a) != set(b):
        return None
    at = {k: i for i, k in enumerate(b)}
    return [at[k] for k in a]


def _ratio_keys(row: ModelRow, ref: ModelRow, order: list[int] | None) -> list[tuple]:
    """The memo keys of one ratio cell (`order` = `_pairing(row, ref)`): the comparison, and for a
    paired one the stability of its per-process ratios (a pure function of the two windows' run
    ids: process keys never change)."""
    if order is None:
        return [("compare_runs", row.window, ref.window)]
    return [("compare_runs_paired", row.window, ref.window), ("ratio_stability", row.window, ref.window)]


def _stability(rows: list[ModelRow], memo: StatsMemo | None, fill_samples: Callable[[list[ModelRow]], None]) -> None:
    """row.stability of every comparable row: do its runs (reports) agree (stats.stability)?"""
    todo = []
    for row in rows:
        row.stability = None
        if row.comparable:
            row.stability = memo.get(("stability", row.window)) if memo is not None else None
            if row.stability is None:
                todo.append(row)
    fill_samples(todo)
    for row in todo:
        row.stability = stability(row.run_samples)
        if memo is not None:
            memo.put(("stability", row.window), row.stability)


def _ratios(rows: list[ModelRow], real: dict[tuple, ModelRow], refs: dict[str, str],
            memo: StatsMemo | None, fill_samples: Callable[[list[ModelRow]], None]) -> None:
    """row.ratios for every row of one table: compare_runs(row, reference) over their runs (one
    report = one run; hierarchical interval, so it widens when runs disagree) where both are
    comparable, from the memo when this pair of windows was compared before; row.verdicts: the
    report's stats.row_verdict. When the two windows are the same host-runner processes
    (`_pairing`), the runs are drawn in pairs and the verdict is judged on the stability of the
    per-process ratios (drift between runs that moved both models cancels, as in the report's
    headline); otherwise (phones, browsers) on both rows' own stability."""
    todo: list[tuple[ModelRow, str, ModelRow, list[int] | None]] = []
    for row in rows:
        row.ratios, row.paired, row.ratio_stability = {}, {}, {}
    for row, k, ref in _pairs(rows, real, refs):
        if ref is None:
            row.ratios[k] = None
            continue
        order = _pairing(row, ref)
        keys = _ratio_keys(row, ref, order)
        hits = [memo.get(key) for key in keys] if memo is not None else [None] * len(keys)
        row.paired[k] = order is not None
        row.ratios[k] = hits[0]
        if order is not None and hits[1] is not None:
            row.ratio_stability[k] = hits[1]
        if any(h is None for h in hits):
            todo.append((row, k, ref, order, keys))
    fill_samples([r for row, _, ref, _, _ in todo for r in (row, ref)])
    for row, k, ref, order, keys in todo:
        if order is None:
            row.ratios[k] = compare_runs(row.run_samples, ref.run_samples)
            values = [row.ratios[k]]
        else:
            ref_runs = [ref.run_samples[j] for j in order]
            row.ratios[k] = compare_runs(row.run_samples, ref_runs, paired=True)
            row.ratio_stability[k] = stability(row.run_samples, ref_runs)
            values = [row.ratios[k], row.ratio_stability[k]]
        if memo is not None:
            for key, value in zip(keys, values):
                memo.put(key, value)
    for row in rows:
        row.verdicts = {}
        for k, name in refs.items():
            c, ref = row.ratios.get(k), real.get((name, row.precision))
            if c is None or ref is None:
                continue
            if row.paired.get(k):  # judged on the per-process ratios, as the report's headline
                row.verdicts[k] = row_verdict(c, row.ratio_stability[k])
            else:
                row.verdicts[k] = row_verdict(c, *(s for s in (row.stability, ref.stability) if s is not None))


def summarize_run(store: Store, run_ids: Iterable[str], *, device: str | None = None, **kw: Any) -> list[Group]:
    """The tables of one run's reports (e.g. one `freenet compare` over one bundle), read back from
    the store so the report shows exactly what was stored. Older runs of the same groups are left
    out: the report describes this run, the dashboard pools the latest runs. `device` (the store's
    device label) narrows the read to the device the run measured."""
    wanted = {str(r) for r in run_ids}
    rows = [r for r in store.group_samples(device=device) if r["run_id"] in wanted]
    missing = len(wanted) - len(rows)
    if missing:
        raise RuntimeError(f"{missing} of this run's {len(wanted)} reports are not in the store (or not among "
                           "the latest of their groups): the report would not match what was stored")
    return summarize_groups(rows, **kw)
