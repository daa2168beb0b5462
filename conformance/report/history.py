"""The history report: cases down the side, runs (releases) across the top, one file that opens from disk.

``render_history(history, out_dir)`` draws a ``conformance.results.history.History``
as ``history.html`` and writes its data as ``history.json`` beside it. A cell is a
result drawn as the main report draws it (``html.matrix_cell``: coloured by outcome,
its max abs error); the cell where a row changed is outlined, one style for a status
change and another for drift, and says what changed in its title. The page's own
script filters the rows (text on the key, changed / status changes / drift only, by
status); like the other reports it reads everything from the markup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.files import write_text_atomic
from conformance.report.html import CELL_TEXT, OUTCOME_CODES, environment, matrix_cell, natural_key, sci
from conformance.results.history import CHANGE_KINDS, History, HistoryCell, HistoryColumn, HistoryRow
from conformance.results.records import OUTCOMES, write_json_atomic

HTML_NAME, JSON_NAME = "history.html", "history.json"


@dataclass
class CellView:
    code: str  # the outcome's code, as the main report's cells
    text: str  # the outcome and max abs ('fail 3e-2'), or 'n/a' / 'err' / 'skip'
    change: str  # "", or the kind of change at this cell
    title: str  # '' for a pass that did not change


@dataclass
class RowView:
    key: str
    group: str
    cells: list[CellView | None]
    changes: str  # the kinds of change in the row, space-separated: what the filter reads
    codes: str  # the outcome codes of its cells, space-separated
    first_change: str
    details: list[str]


@dataclass
class ColumnView:
    column: HistoryColumn
    status_changes: int
    drift: int


@dataclass
class HistoryView:
    history: History
    columns: list[ColumnView]
    groups: list[tuple[str, list[RowView]]]
    summary: dict[str, Any]
    totals: dict[str, int]  # cells by outcome, over every run
    outcomes: tuple[str, ...] = OUTCOMES
    codes: dict[str, str] = field(default_factory=lambda: dict(OUTCOME_CODES))


def cell_view(cell: HistoryCell, change: tuple[str, str] | None) -> CellView:
    """The cell as drawn; only a cell that did not pass or that changed carries a title (a full
    matrix's thousands of passing cells would weigh more than the table)."""
    drawn = matrix_cell(cell.record, None)
    text = drawn.text if cell.status in CELL_TEXT else f"{cell.outcome} {drawn.text}"
    if cell.status == "pass" and not change:
        return CellView(drawn.code, text, "", "")
    title = [cell.test_id, f"{cell.status_text}, max abs {sci(cell.max_abs, 3)}"]
    title += [f"known difference: {cell.known}"] if cell.known else []
    title += [cell.message] if cell.message and cell.status != "pass" else []
    title += [f"changed here ({change[0]}): {change[1]}"] if change else []
    return CellView(drawn.code, text, change[0] if change else "", "\n".join(title))


def row_view(row: HistoryRow) -> RowView:
    at = {change.column: (change.kind, change.detail) for change in row.changes}
    cells = [cell and cell_view(cell, at.get(n)) for n, cell in enumerate(row.cells)]
    return RowView(row.key, row.group, cells, " ".join(sorted(row.kinds())),
                   " ".join(sorted({c.code for c in cells if c})), row.first_change or "",
                   [f"{change.label}: {change.detail}" for change in row.changes])


def build_history_view(history: History) -> HistoryView:
    groups: dict[str, list[RowView]] = {}
    for row in sorted(history.rows, key=lambda r: (natural_key(r.group), natural_key(r.key))):
        groups.setdefault(row.group, []).append(row_view(row))
    totals = dict.fromkeys(OUTCOMES, 0)
    for row in history.rows:
        for cell in row.cells:
            if cell:
                totals[cell.outcome] += 1
    columns = [ColumnView(column, counts["status"], counts["drift"])
               for column, counts in zip(history.columns, history.column_changes())]
    return HistoryView(history, columns, list(groups.items()), history.summary(), totals)


def render_history(history: History, out_dir: Path) -> Path:
    """Write ``history.json`` and ``history.html`` (each atomically) into ``out_dir``; return the page's path."""
    out_dir = Path(out_dir)
    write_json_atomic(out_dir / JSON_NAME, history.to_dict())
    html = environment().get_template("history.html.j2").render(
        view=build_history_view(history), title="RNN conformance history", change_kinds=CHANGE_KINDS)
    path = out_dir / HTML_NAME
    write_text_atomic(path, html)
    return path
