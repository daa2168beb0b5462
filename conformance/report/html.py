"""The HTML reports: self-contained files that open from disk, with no network access.

``render_report(document, out_dir)`` draws a results document (see
``conformance.results.records``) as a matrix: cases grouped by cell and flags down the
side, adapter x device x dtype across the top, one coloured cell per result.
Every result that did not pass gets a diff panel. A merge of results from several
machines lists them (``machine_views``) and names each column's and each panel's
machine; one machine's run shows its one machine card. ``render_regression`` draws a
``conformance.results.regression.Regression`` with the baseline beside the current run.
Cells, totals and filters are by outcome (``conformance.results.records.Record.outcome``), so
a known difference is never drawn or counted as an unexpected fail or error.

Adapter messages and stderr are untrusted text, so the templates are rendered
with autoescaping on and nothing is embedded in ``<script>``: the page's script
reads what it needs from the markup. A Content-Security-Policy forbids any
network access, so the file behaves the same on any machine.

Size: a passing result is one ``<td>`` with a status class and its max error;
only results that did not pass carry a panel. A large report (more than INLINE_PANELS
panels) keeps them in details files beside ``index.html`` (``details_files``: scripts the
page loads when a panel is needed, allowed by the policy's ``'self'``), and a matrix of more
than WHOLE_MATRIX_ROWS cases draws its first FIRST_ROWS, then more as the reader scrolls: the
merged report of the full matrix (22,176 results) opens in about a second instead of seven.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from conformance.files import REPORT_FILES, OutputPathError, write_texts_atomic
from conformance.matrix.case import is_reduced_precision
from conformance.matrix.spec import CELLS
from conformance.matrix.unseen import is_unseen
from conformance.results.junit import junit_xml
from conformance.results.messages import short_message
from conformance.results.records import (
    OUTCOMES,
    UNEXPECTED,
    Record,
    document_machines,
    json_text,
    outcome_counts,
    records_of,
    reduced_precision_label,
    unexpected_count,
    write_text_atomic,
)
from conformance.results.regression import CATEGORIES, NOISE_FLOOR, REGRESSING, match_key
from conformance.results.user_lists import CALLED_OUT_SHARE
from conformance.verdict.compare import WINDOW

TEMPLATES = Path(__file__).parent / "templates"
OUTCOME_CODES = {"pass": "p", "fail": "f", "error": "e", "known": "k", "unsupported": "u", "skipped": "s",
                 "not_run": "n"}
CELL_TEXT = {"unsupported": "n/a", "error": "err", "skipped": "skip", "not_run": "not run"}
DEVICE_ORDER = ("cpu", "cuda")
DTYPE_ORDER = ("float32", "float64", "float16", "bfloat16")
MACHINE_ORDER = ("runner_name", "runner_os", "runner_arch", "os", "platform", "python", "cpu", "gpu", "gpus",
                 "hostname", "node")
MAX_STDERR_CHARS = 8000
# A large report keeps its first paint cheap: past INLINE_PANELS panels they go to details files of
# about DETAILS_FILE_CHARS each beside index.html, and a matrix of more than WHOLE_MATRIX_ROWS cases
# draws its first FIRST_ROWS, then more as the reader scrolls (BENCHMARKS.md, "Opening the HTML report").
INLINE_PANELS = 500
DETAILS_FILE_CHARS = 500_000
DETAILS_PREFIX = "index-details-"
WHOLE_MATRIX_ROWS = 250
FIRST_ROWS = 50  # about what a laptop screen shows of the matrix
HEAT_LEVELS = 10  # 1..5: within atol by decade, 6..10: above atol by decade; 0: exact


# --- numbers ---------------------------------------------------------------------------------


def as_float(value: Any) -> float | None:
    """A record's number: results store non-finite values as the strings 'inf' / 'nan'.

    An integer too large for a float (JSON allows one) is infinite, not a crash.
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
    except (TypeError, ValueError):
        return None


def sci(value: Any, digits: int = 2) -> str:
    """``3.2e-7``: ``digits`` significant digits, exponent unpadded; '–' for a missing value."""
    number = as_float(value)
    if number is None:
        return "–"
    if number == 0:
        return "0"
    if not math.isfinite(number):
        return str(number)
    mantissa, exponent = f"{number:.{digits - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def short(value: Any) -> str:
    """One significant digit, for a matrix cell."""
    return sci(value, 1)


def shape_text(shape: Any) -> str:
    if shape is None:
        return "–"
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def heat_level(error: float | None, atol: float) -> int:
    """0 for exact; else 5 + ceil(log10(error / atol)) clamped to 1..10 (5 = the decade up to atol)."""
    if error is None or error == 0:
        return 0
    ratio = error / atol if atol > 0 else math.inf
    if not math.isfinite(ratio):
        return HEAT_LEVELS
    return max(1, min(HEAT_LEVELS, 5 + math.ceil(math.log10(ratio))))


def natural_key(text: str) -> list:
    """'b3t5' before 'b4t48': digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


# --- what the templates draw -----------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    adapter: str
    device: str
    dtype: str
    device_name: str = ""
    machines: tuple[str, ...] = ()  # the ids of the machines whose results fill it

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.adapter, self.device, self.dtype)

    @property
    def label(self) -> str:
        return f"{self.device} {self.dtype.replace('float', 'f')}"


@dataclass
class MatrixCell:
    status: str
    code: str
    text: str
    panel: str | None = None


@dataclass
class MatrixRow:
    case_id: str
    label: str
    describe: str
    cell: str
    cells: list[MatrixCell | None]


@dataclass
class MatrixGroup:
    name: str
    cell: str
    rows: list[MatrixRow]


@dataclass
class Divergence:
    index: str
    expected: float | None
    actual: float | None
    axis: str
    labels: list[int]
    focus: int
    expected_window: list[float]
    actual_window: list[float]
    differences: list[float | None]


@dataclass
class Heatmap:
    """|error| drawn as units (rows) x timesteps (columns), so drift along time reads left to right."""

    ticks: list[str]
    rows: list[tuple[str, list[tuple[int, str]]]]
    truncated: bool


@dataclass
class TensorView:
    name: str
    expected_shape: str
    expected_dtype: str
    actual_shape: str
    actual_dtype: str
    problem: str | None
    max_abs: Any
    max_rel: Any
    max_rel_text: str
    max_ulp: Any
    mismatched: int
    total: int
    worst_index: str
    verdict: str
    divergence: Divergence | None
    heatmap: Heatmap | None


@dataclass
class Panel:
    id: str
    record: Record
    outcome: str
    code: str
    known: str  # the known-differences reason, or ""
    expected: list[dict[str, str]]
    tensors: list[TensorView]
    stderr: str
    stderr_truncated: bool
    run_info: str
    tolerance: str
    machine: str = ""  # shown where results come from several machines


@dataclass
class RunSummary:
    created: str
    complete: bool
    fixtures: str
    counts: dict[str, int]  # by outcome
    planned: int | None = None  # None: a file that does not say (older, or a raw stream)
    produced: int = 0
    reduced_precision: str = ""  # the label of a run with reduced-precision defaults left on, or ""

    @property
    def unexpected(self) -> int:
        return unexpected_count(self.counts)

    @property
    def shortfall(self) -> str:
        """'N of M planned results produced' when the run produced fewer than it planned, else ''."""
        if self.planned is None or self.produced == self.planned:
            return ""
        return f"{self.produced} of {self.planned} planned results produced"


def run_summary(document: dict[str, Any]) -> RunSummary:
    records = records_of(document)
    planned = document.get("planned")
    return RunSummary(str(document.get("created") or ""), bool(document.get("complete", False)),
                      str(document.get("fixtures_sha256") or ""), outcome_counts(records),
                      planned if isinstance(planned, int) else None, sum(r.produced for r in records),
                      reduced_precision_label(records))


@dataclass
class MachineView:
    """One machine of a merge: its facts, and the results and adapters it produced."""

    id: str
    facts: list[tuple[str, str]]
    results: int
    adapters: list[str]


@dataclass(frozen=True)
class DetailsFile:
    """A file of panels beside a large report's ``index.html``, loaded when a reader needs one of
    them: panels ``r{first}`` to ``r{last}``, all shown or all folded (unsupported, skipped, not run)."""

    name: str
    first: int
    last: int
    folded: bool

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass
class ReportView:
    document: dict[str, Any]
    run: RunSummary
    columns: list[Column]
    adapter_spans: list[tuple[str, int]]
    groups: list[MatrixGroup]
    panels: list[Panel]
    totals: dict[str, int]
    adapter_rows: list[dict[str, Any]]
    machine: list[tuple[str, str]]  # the one machine, or what every machine shares
    machines: list[MachineView]  # several machines only; empty for one machine's run
    cells: list[str]
    known_unmatched: list[str]  # known-differences entries that matched no result
    # The float16/bfloat16 rows, counted apart from the float32 verdict: totals and one row per
    # adapter that has any (None and [] when the run has none).
    reduced_totals: dict[str, int] | None = None
    reduced_adapter_rows: list[dict[str, Any]] = field(default_factory=list)
    outcomes: tuple[str, ...] = OUTCOMES
    codes: dict[str, str] = field(default_factory=lambda: dict(OUTCOME_CODES))
    details_files: list[DetailsFile] = field(default_factory=list)  # []: every panel is in the page
    first_rows: int = FIRST_ROWS

    @property
    def row_count(self) -> int:
        """The matrix's rows: one per case."""
        return sum(len(g.rows) for g in self.groups)

    @property
    def shown_panels(self) -> list[Panel]:
        """The panels a reader opens the report for: unexpected fails and errors first, then known ones."""
        return [p for p in self.panels if p.outcome not in FOLDED]

    @property
    def folded_panels(self) -> list[Panel]:
        """Unsupported, skipped and not-run results: folded away until asked for (a failing run's
        hundreds of them would otherwise bury its failures)."""
        return [p for p in self.panels if p.outcome in FOLDED]

    @property
    def unexpected_panels(self) -> list[Panel]:
        return [p for p in self.panels if p.outcome in UNEXPECTED]

    @property
    def unseen(self) -> dict[str, Any] | None:
        """A run with unseen cases (``--unseen``): their seed and count, how many fixed and unseen
        cases it judged, and the unseen results' outcomes, counted apart; None for any other run."""
        drawn = (self.document.get("selection") or {}).get("unseen")
        if not drawn:
            return None
        records = records_of(self.document)
        unseen = [record for record in records if is_unseen(record.case_id)]
        return dict(drawn, fixed=len({r.case_id for r in records if not is_unseen(r.case_id)}),
                    unseen=len({r.case_id for r in unseen}), outcomes=outcome_counts(unseen))


FOLDED = ("unsupported", "skipped", "not_run")
PANEL_ORDER = ("fail", "error", "known", "unsupported", "skipped", "not_run")


# --- building the view -----------------------------------------------------------------------


def _order(value: str, preferred: tuple[str, ...]) -> tuple[int, str]:
    return (preferred.index(value), "") if value in preferred else (len(preferred), value)


def columns_of(records: list[Record], adapter_order: list[str]) -> list[Column]:
    names: dict[tuple[str, str, str], str] = {}
    machines: dict[tuple[str, str, str], dict[str, None]] = {}
    for record in records:
        key = (record.adapter, record.device, record.dtype)
        names[key] = names.get(key) or record.device_name
        machines.setdefault(key, {})[record.machine] = None
    adapters = tuple(adapter_order)
    keys = sorted(names, key=lambda k: (_order(k[0], adapters), _order(k[1], DEVICE_ORDER),
                                        _order(k[2], DTYPE_ORDER)))
    return [Column(*key, device_name=names[key], machines=tuple(sorted(m for m in machines[key] if m)))
            for key in keys]


def _row_label(case_id: str, group: str) -> str:
    prefix = group.replace(" ", "-") + "-"
    return case_id[len(prefix):] if case_id.startswith(prefix) and len(case_id) > len(prefix) else case_id


def matrix_cell(record: Record, panel_id: str | None) -> MatrixCell:
    status = record.status
    code = OUTCOME_CODES[record.outcome]
    if status in CELL_TEXT:
        text = CELL_TEXT[status]
    elif record.max_abs is not None:
        text = short(record.max_abs)
    else:
        text = "list" if not record.tensors else "shape"
    return MatrixCell(status, code, text, panel_id)


def build_groups(records: list[Record], columns: list[Column],
                 panel_ids: dict[str, str]) -> list[MatrixGroup]:
    position = {column.key: n for n, column in enumerate(columns)}
    rows: dict[str, MatrixRow] = {}
    group_of: dict[str, str] = {}
    for record in records:
        case_id, group = record.case_id, record.group
        if case_id not in rows:
            rows[case_id] = MatrixRow(case_id, _row_label(case_id, group), record.describe, record.cell,
                                      [None] * len(columns))
            group_of[case_id] = group
        key = (record.adapter, record.device, record.dtype)
        rows[case_id].cells[position[key]] = matrix_cell(record, panel_ids.get(record.test_id))
    groups: dict[str, MatrixGroup] = {}
    for case_id in sorted(rows, key=natural_key):
        row = rows[case_id]
        groups.setdefault(group_of[case_id], MatrixGroup(group_of[case_id], row.cell, [])).rows.append(row)
    return sorted(groups.values(), key=lambda g: (_order(g.cell, CELLS), natural_key(g.name)))


def _divergence(first: dict[str, Any] | None) -> Divergence | None:
    if not first or not first.get("index"):
        return None
    index = list(first["index"])
    at = index[1] if first.get("window_axis") == "time" and len(index) == 3 else index[-1]
    low = max(0, at - WINDOW)
    want = [as_float(v) for v in first.get("expected_window", [])]
    got = [as_float(v) for v in first.get("actual_window", [])]
    differences = [None if w is None or g is None else abs(g - w) for w, g in zip(want, got)]
    return Divergence(shape_text(index), as_float(first.get("expected")), as_float(first.get("actual")),
                      first.get("window_axis", "time"), list(range(low, low + len(want))), at - low,
                      want, got, differences)


def _heatmap(error_map: list[list[Any]] | None, expected_shape: list[int], atol: float) -> Heatmap | None:
    if not error_map or not error_map[0]:
        return None
    steps, units = len(error_map), len(error_map[0])
    sequence = len(expected_shape) == 3
    ticks = [str(t) if t % (1 if steps <= 16 else 8) == 0 else "" for t in range(steps)] if sequence \
        else ["final"]
    rows = []
    for unit in range(units):  # a short row (a file the schema check did not see) draws blank cells
        values = [as_float(error_map[t][unit]) if unit < len(error_map[t]) else None for t in range(steps)]
        rows.append((f"u{unit}", [(heat_level(v, atol), sci(v)) for v in values]))
    truncated = bool(expected_shape) and (units < expected_shape[-1]
                                          or (sequence and steps < expected_shape[1]))
    return Heatmap(ticks, rows, truncated)


def tensor_verdict(tensor: dict[str, Any], dtype: str) -> str:
    """The problem in a word or two; the full sentence is in the record's message."""
    if not tensor.get("problem"):
        return "ok"
    if tensor.get("actual_shape") != tensor.get("expected_shape"):
        return "wrong shape"
    if tensor.get("actual_dtype") != dtype:
        return "wrong dtype"
    return "values differ"


def max_rel_text(tensor: dict[str, Any]) -> str:
    """'n/a' where values were compared but every expected value is 0 (see compare.relative_error)."""
    if tensor.get("max_rel") is None and tensor.get("max_abs") is not None:
        return "n/a"
    return sci(tensor.get("max_rel"), 3)


def tensor_view(tensor: dict[str, Any], dtype: str, atol: float) -> TensorView:
    expected_shape = tensor.get("expected_shape") or []
    return TensorView(
        name=str(tensor.get("name", "?")), expected_shape=shape_text(expected_shape),
        expected_dtype=dtype, actual_shape=shape_text(tensor.get("actual_shape")),
        actual_dtype=str(tensor.get("actual_dtype") or "–"), problem=tensor.get("problem"),
        max_abs=tensor.get("max_abs"), max_rel=tensor.get("max_rel"), max_rel_text=max_rel_text(tensor),
        max_ulp=tensor.get("max_ulp"),
        mismatched=int(tensor.get("mismatched") or 0), total=int(tensor.get("total") or 0),
        worst_index=shape_text(tensor.get("worst_index")), verdict=tensor_verdict(tensor, dtype),
        divergence=_divergence(tensor.get("first_divergence")),
        heatmap=_heatmap(tensor.get("error_map"), expected_shape, atol))


def build_panel(record: Record, panel_id: str, several_machines: bool = False) -> Panel:
    tolerance = record.tolerance or {}
    atol = as_float(tolerance.get("atol")) or 0.0
    bound = f"{sci(atol)} + {sci(tolerance.get('rtol'))}·|want|" if tolerance else ""
    truncated = len(record.stderr) > MAX_STDERR_CHARS
    run_info = ", ".join(f"{k}={v}" for k, v in sorted(record.run_info.items()))
    expected = [{"name": str(e.get("name", "?")), "shape": shape_text(e.get("shape"))} for e in record.expected]
    kind = record.outcome
    known = str(record.known) if kind == "known" else ""
    return Panel(panel_id, record, kind, OUTCOME_CODES[kind], known, expected,
                 [tensor_view(t, record.dtype, atol) for t in record.tensors],
                 record.stderr[-MAX_STDERR_CHARS:], truncated, run_info, bound,
                 record.machine if several_machines else "")


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_text(v)}" for k, v in value.items())
    return "" if value is None else str(value)


def machine_rows(machine: dict[str, Any]) -> list[tuple[str, str]]:
    keys = sorted(machine, key=lambda k: _order(k, MACHINE_ORDER))
    return [(str(k), _text(machine[k])) for k in keys]


def machine_views(document: dict[str, Any], records: list[Record]) -> list[MachineView]:
    """Every machine of a merge of several, with what it produced; [] for one machine's run."""
    machines = document_machines(document)
    if len(machines) < 2:
        return []
    return [MachineView(name, machine_rows(info), sum(r.machine == name for r in records),
                        sorted({r.adapter for r in records if r.machine == name}))
            for name, info in machines.items()]


def seen_devices(info: dict[str, Any], records: list[Record]) -> dict[str, str]:
    """Device -> name, as the adapter reported them; else from the rows that ran.

    Skipped rows don't count: a cuda row skipped on a CPU machine is no cuda device.
    """
    if info.get("devices"):
        names = info.get("device_names") or {}
        return {device: str(names.get(device) or "") for device in info["devices"]}
    devices: dict[str, str] = {}
    for record in records:
        if record.status != "skipped":
            devices[record.device] = devices.get(record.device) or record.device_name
    return devices


def adapter_rows(document: dict[str, Any], records: list[Record],
                 columns: list[Column]) -> list[dict[str, Any]]:
    """One row per adapter: its versions, the devices it saw and totals by outcome."""
    adapters = document.get("adapters") or {}
    names = list(adapters) + sorted({c.adapter for c in columns} - set(adapters))
    rows = []
    for name in names:
        info = adapters.get(name) or {}
        own = [r for r in records if r.adapter == name]
        devices = seen_devices(info, own)
        rows.append({"name": name, "versions": info.get("versions") or {},
                     "devices": [f"{d} ({n})" if n and n != d else d for d, n in devices.items()],
                     "machines": sorted({r.machine for r in own if r.machine}), "counts": outcome_counts(own)})
    return rows


def panel_ids_for(records: list[Record], prefix: str = "r") -> dict[str, str]:
    """Every result that did not pass gets a panel, numbered in panel order (``PANEL_ORDER``, then
    record order), so that each details file of a large report holds a run of consecutive numbers."""
    failing = sorted((r for r in records if r.status != "pass"), key=lambda r: PANEL_ORDER.index(r.outcome))
    return {r.test_id: f"{prefix}{n}" for n, r in enumerate(failing)}


def build_view(document: dict[str, Any]) -> ReportView:
    records = records_of(document)
    columns = columns_of(records, list(document.get("adapters") or {}))
    panel_ids = panel_ids_for(records)
    spans: list[tuple[str, int]] = []
    for column in columns:
        if spans and spans[-1][0] == column.adapter:
            spans[-1] = (column.adapter, spans[-1][1] + 1)
        else:
            spans.append((column.adapter, 1))
    machines = machine_views(document, records)
    panels = sorted((build_panel(r, panel_ids[r.test_id], bool(machines)) for r in records if r.test_id in panel_ids),
                    key=lambda p: int(p.id[1:]))  # the ids are numbered in panel order
    groups = build_groups(records, columns, panel_ids)
    cells = sorted({g.cell for g in groups}, key=lambda c: _order(c, CELLS))
    full = [r for r in records if not is_reduced_precision(r.dtype)]
    reduced = [r for r in records if is_reduced_precision(r.dtype)]
    reduced_rows = [row for row in adapter_rows(document, reduced, columns) if sum(row["counts"].values())]
    return ReportView(document, run_summary(document), columns, spans, groups, panels,
                      outcome_counts(full),
                      adapter_rows(document, full, columns),
                      machine_rows(document.get("machine") or {}), machines, cells,
                      [str(p) for p in document.get("known_unmatched") or []],
                      outcome_counts(reduced) if reduced else None, reduced_rows)


# --- the regression report ------------------------------------------------------------------

MAX_PANELS_PER_CATEGORY = 200
CATEGORY_TITLES = {
    "newly_failing": "Newly failing", "newly_erroring": "Newly erroring",
    "newly_unsupported": "Newly unsupported", "newly_skipped": "Newly skipped",
    "newly_passing": "Newly passing", "newly_documented": "Newly documented difference (not a regression)",
    "still_documented": "Documented difference, status changed (not a regression)",
    "error_grew": "Error grew", "documented_error_grew": "Error grew in a documented difference (not a regression)",
    "error_shrank": "Error shrank", "added": "Added (not in the baseline)",
    "removed": "Removed (not in the current run)",
}


@dataclass
class RunSide:
    run: RunSummary
    machine: list[tuple[str, str]]
    adapter_rows: list[dict[str, Any]]
    suite_version: str
    selection: str


@dataclass
class Entry:
    test_id: str
    before: MatrixCell | None
    after: MatrixCell | None
    gist: str
    baseline_panel: Panel | None
    current_panel: Panel | None


@dataclass
class Category:
    name: str
    title: str
    regressing: bool
    entries: list[Entry]
    panels_capped: bool


@dataclass
class RegressionView:
    regression: Any
    baseline: RunSide
    current: RunSide
    categories: list[Category]


def selection_text(selection: dict[str, Any] | None) -> str:
    """'-k 'gru' · --device cpu · --dtype all · torch': what a run was asked to run ('–': unknown)."""
    if not selection:
        return "–"
    parts = ([f"-k {selection['keyword']!r}"] if selection.get("keyword") else ["all cases"]) + \
        (["--plan"] if selection.get("plan") else []) + \
        ([f"the covering plan for {', '.join(selection['covering']['adapters'])}"] if selection.get("covering")
         else []) + \
        ([f"{selection['unseen']['count']} unseen cases (seed {selection['unseen']['seed']})"]
         if selection.get("unseen") else []) + \
        [f"--device {selection.get('device')}", f"--dtype {selection.get('dtype')}",
         ", ".join(selection.get("adapters") or ()) or "no adapter"]
    return " · ".join(parts)


def run_side(document: dict[str, Any]) -> RunSide:
    records = records_of(document)
    columns = columns_of(records, list(document.get("adapters") or {}))
    machines = document_machines(document)
    several = [("machines", ", ".join(machines))] if len(machines) > 1 else []  # the rest: what they share
    return RunSide(run_summary(document), several + machine_rows(document.get("machine") or {}),
                   adapter_rows(document, records, columns), document.get("suite_version") or "–",
                   selection_text(document.get("selection")))


def documented_records(document: dict[str, Any], reasons: dict[str, str], by_case: bool) -> dict[str, Record]:
    """A run's records by match key, each documented one carrying its reason as ``known`` (drawn as known)."""
    records = {}
    for record in records_of(document):
        reason = reasons.get(record.test_id)
        records[match_key(record.test_id, by_case)] = \
            replace(record, known=reason) if reason and not record.known else record
    return records


def _entry(item, old: Record | None, new: Record | None, number: int,
           with_panels: bool) -> Entry:
    if hasattr(item, "tensor"):  # an ErrorChange
        gist = f"{item.tensor}: max abs {sci(item.before)} → {sci(item.after)}"
    elif item.after_known:
        gist = f"documented: {short_message(item.after_known)}"
    else:
        gist = short_message((new or old).message)
    return Entry(item.test_id, old and matrix_cell(old, None), new and matrix_cell(new, None), gist,
                 build_panel(old, f"b{number}") if old and with_panels else None,
                 build_panel(new, f"c{number}") if new and with_panels else None)


def build_regression_view(regression, baseline: dict[str, Any], current: dict[str, Any]) -> RegressionView:
    by_case = regression.by_case
    old = documented_records(baseline, regression.documented["baseline"], by_case)
    new = documented_records(current, regression.documented["current"], by_case)
    lost = {c.test_id for c in regression.lost_passes}
    categories, number = [], 0
    for name in CATEGORIES:
        items = getattr(regression, name)
        entries = []
        for n, item in enumerate(items):
            number += 1
            key = match_key(item.test_id, by_case)
            entries.append(_entry(item, old.get(key), new.get(key), number, n < MAX_PANELS_PER_CATEGORY))
        regressing = name in REGRESSING or any(item.test_id in lost for item in items)
        categories.append(Category(name, CATEGORY_TITLES[name], regressing, entries,
                                   len(items) > MAX_PANELS_PER_CATEGORY))
    return RegressionView(regression, run_side(baseline), run_side(current), categories)


# --- rendering -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """Autoescaping on for every template: messages and stderr come from adapters."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(sci=sci, short=short, shape=shape_text, short_message=short_message)
    env.globals.update(OUTCOME_CODES=OUTCOME_CODES, OUTCOMES=OUTCOMES, UNEXPECTED=UNEXPECTED)
    return env


def render_report(document: dict[str, Any], out_dir: Path) -> Path:
    """Write ``out_dir/index.html`` (and a large report's details files), atomically; return its path."""
    path = Path(out_dir) / "index.html"
    write_files_atomic(Path(out_dir), report_files(document))
    return path


def write_report(document: dict[str, Any], out_dir: Path, names: tuple[str, ...] = REPORT_FILES) -> Path:
    """The report files ``names`` of a results document, replaced together: a write that fails
    (a full disk) leaves the report there before whole, and is one line (OutputPathError), not a
    traceback. ``index.html`` brings its details files along. Returns the path of ``index.html``."""
    out_dir = Path(out_dir)
    texts = {"results.json": lambda: {"results.json": json_text(document, indent=1) + "\n"},
             "junit.xml": lambda: {"junit.xml": junit_xml(records_of(document), document.get("user_known_lists"))},
             "index.html": lambda: report_files(document)}
    files = {name: text for wanted in names for name, text in texts[wanted]().items()}
    try:
        write_files_atomic(out_dir, files)
    except OSError as exc:
        raise OutputPathError(f"could not write the report in {out_dir}: {exc.strerror or exc}; "
                              "the report there before is unchanged") from None
    return out_dir / "index.html"


def write_files_atomic(out_dir: Path, files: dict[str, str]) -> None:
    """``files`` (name -> text) replaced together, ``index.html`` renamed in last so that it never
    names a details file not yet there; then the details files of an earlier report are removed
    (a planted link is removed itself, never followed)."""
    ordered = sorted(files, key=lambda name: name == "index.html")
    write_texts_atomic({out_dir / name: files[name] for name in ordered})
    if "index.html" in files:
        for stale in out_dir.glob(f"{DETAILS_PREFIX}*.js"):
            if stale.name not in files:
                stale.unlink(missing_ok=True)


def report_html(document: dict[str, Any]) -> str:
    """The HTML report of a results document: ``index.html`` of ``report_files``."""
    return report_files(document)["index.html"]


def report_files(document: dict[str, Any]) -> dict[str, str]:
    """``index.html`` and, for a report of more than INLINE_PANELS panels, its details files."""
    view = build_view(document)
    view.first_rows = view.row_count if view.row_count <= WHOLE_MATRIX_ROWS else FIRST_ROWS
    files = {}
    if len(view.panels) > INLINE_PANELS:
        files = details_files(view)
    html = environment().get_template("report.html.j2").render(
        view=view, title="RNN conformance report", called_out_share=CALLED_OUT_SHARE,
        extra_script_src=markupsafe.Markup(" 'self'" if files else ""))  # the details files beside it
    return {**files, "index.html": html}


def details_files(view: ReportView) -> dict[str, str]:
    """The panels as files of about DETAILS_FILE_CHARS, each a script that hands its (escaped) markup
    to the page: ``conformanceDetails(first, "<details ...>...")``. Sets ``view.details_files``.

    Their names carry a digest of their content, so that a page never loads another run's panels."""
    runs = panel_runs(view.panels)
    scripts = [f"conformanceDetails({run[0][0]}, {json.dumps(''.join(m for _, m in run))});\n" for _, run in runs]
    digest = hashlib.sha256("".join(scripts).encode()).hexdigest()[:12]
    view.details_files = [DetailsFile(f"{DETAILS_PREFIX}{digest}-{n}.js", run[0][0], run[-1][0], folded)
                          for n, (folded, run) in enumerate(runs)]
    return {f.name: script for f, script in zip(view.details_files, scripts)}


def panel_runs(panels: list[Panel]) -> list[tuple[bool, list[tuple[int, str]]]]:
    """The panels' markup, numbered, cut into runs of about DETAILS_FILE_CHARS that are all shown or
    all folded: (folded, [(number, markup), ...]) each."""
    panel = environment().get_template("macros.html.j2").make_module({"OUTCOME_CODES": OUTCOME_CODES}).panel
    runs: list[tuple[bool, list[tuple[int, str]]]] = []
    size = 0
    for number, p in enumerate(panels):
        folded, markup = p.outcome in FOLDED, str(panel(p))
        if not runs or runs[-1][0] != folded or size + len(markup) > DETAILS_FILE_CHARS:
            runs.append((folded, []))
            size = 0
        runs[-1][1].append((number, markup))
        size += len(markup)
    return runs


def render_regression(regression, baseline: dict[str, Any], current: dict[str, Any],
                      out_path: Path) -> Path:
    """Write the regression report (baseline beside current) to ``out_path``; return it."""
    view = build_regression_view(regression, baseline, current)
    html = environment().get_template("regression.html.j2").render(
        view=view, title="RNN conformance: regression check", reg_floor=NOISE_FLOOR,
        max_panels=MAX_PANELS_PER_CATEGORY)
    path = Path(out_path)
    write_text_atomic(path, html)
    return path
