"""Where did a behaviour change? Several runs in order (one per release, say), a ``History`` out.

``conformance sweep`` runs one adapter's matrix under each release of a package;
``conformance history`` reads any results files. Both hand the runs, oldest first,
to ``build_history``: one row per result, one column per run. Pure data: no
rendering here (``conformance.report.render_history`` draws it).

The rules, stated once:

- A row is a ``test_id`` (``case[adapter-device-dtype]``), or with ``by_case`` a
  ``case_id[device-dtype]``, so that two adapters' runs (tf-keras beside
  keras-tensorflow) line up. Every key of any run has a row; rows are in the
  first run's order, then the new ones of each later run.
- A row *changed* at a column when its cell there differs from its cell in the
  previous column that has one: a **status** change when the status or the
  outcome differs (fail -> known counts: a known-differences entry now explains
  it), else **drift** when some tensor's max abs error moved by more than
  ``drift_factor`` either way, above the noise floor (``regression.error_changes``,
  the rule ``conformance compare`` applies). An absent cell (the run has no such
  result, or the run has no results at all) is no change point: the next cell is
  compared across it.
- ``first_change`` is the label of the first column where the row changed: the
  release in which the behaviour appeared.
- A run whose document is ``None`` (its install failed, say) is a column of
  absent cells whose note says why.
- Lining up by case needs one adapter per run: a run with two results for one
  row is a ValueError, as is a drift factor that is not a finite number > 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conformance.jsonsafe import json_safe
from conformance.results.messages import short_message
from conformance.results.records import Record, records_of
from conformance.results.regression import (
    ErrorChange,
    check_growth_factor,
    error_changes,
    error_magnitude,
    match_key,
)

SCHEMA = "rnn-conformance/history/1"
CHANGE_KINDS = ("status", "drift")


@dataclass(frozen=True)
class HistoryRun:
    """One column as given: its label, its results document (None: no results, ``note`` says why)."""

    label: str
    document: dict[str, Any] | None
    note: str = ""
    forced: bool = False


@dataclass(frozen=True)
class HistoryCell:
    """One result in one run; ``record`` is kept for the drift rule and the report, not written out."""

    status: str
    outcome: str
    max_abs: float | None  # NaN reads as inf: infinitely wrong
    known: str
    message: str  # its first meaningful line
    adapter: str
    test_id: str
    record: Record = field(repr=False, compare=False)

    @classmethod
    def of(cls, record: Record) -> HistoryCell:
        return cls(record.status, record.outcome, error_magnitude(record.max_abs),
                   str(record.known or "") if record.outcome == "known" else "", short_message(record.message),
                   record.adapter, record.test_id, record)

    @property
    def status_text(self) -> str:
        """'fail', or 'fail (known)' where the outcome says more than the status."""
        return self.status if self.status == self.outcome else f"{self.status} ({self.outcome})"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "outcome": self.outcome, "max_abs": self.max_abs, "known": self.known,
                "message": self.message, "adapter": self.adapter, "test_id": self.test_id}


@dataclass(frozen=True)
class Change:
    """Where a row changed: the column, its label, the kind (``CHANGE_KINDS``) and what changed."""

    column: int
    label: str
    kind: str
    detail: str


@dataclass
class HistoryRow:
    key: str
    case_id: str
    group: str
    cells: list[HistoryCell | None]
    changes: list[Change] = field(default_factory=list)

    @property
    def first_change(self) -> str | None:
        return self.changes[0].label if self.changes else None

    def kinds(self) -> set[str]:
        return {change.kind for change in self.changes}

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "case_id": self.case_id, "group": self.group,
                "cells": [cell and cell.to_dict() for cell in self.cells],
                "changes": [vars(change) for change in self.changes], "first_change": self.first_change}


@dataclass(frozen=True)
class HistoryColumn:
    """One run as a column header: what ran (adapter and framework versions) and how it went."""

    label: str
    note: str
    forced: bool
    adapter: str  # the adapters that ran, comma-separated
    versions: dict[str, str]
    counts: dict[str, int] | None  # None: no results
    complete: bool
    results: int | None  # how many results; None: no document
    suite_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {"label": self.label, "note": self.note, "forced": self.forced, "adapter": self.adapter,
                "versions": dict(self.versions), "counts": self.counts, "complete": self.complete,
                "results": self.results}
        if self.suite_version:
            data["suite_version"] = self.suite_version
        return data


@dataclass
class History:
    drift_factor: float
    by_case: bool
    columns: list[HistoryColumn]
    rows: list[HistoryRow]

    def changed_rows(self) -> list[HistoryRow]:
        return [row for row in self.rows if row.changes]

    def column_changes(self) -> list[dict[str, int]]:
        """Per column, how many rows changed there, by kind."""
        counts = [dict.fromkeys(CHANGE_KINDS, 0) for _ in self.columns]
        for row in self.rows:
            for change in row.changes:
                counts[change.column][change.kind] += 1
        return counts

    def summary(self) -> dict[str, Any]:
        changes = [change for row in self.rows for change in row.changes]
        return {"rows": len(self.rows), "changed": len(self.changed_rows()),
                "status_changes": sum(c.kind == "status" for c in changes),
                "drift": sum(c.kind == "drift" for c in changes),
                "by_column": {column.label: counts for column, counts in zip(self.columns, self.column_changes())}}

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"schema": SCHEMA, "drift_factor": self.drift_factor, "by_case": self.by_case,
                          "runs": [column.to_dict() for column in self.columns],
                          "rows": [row.to_dict() for row in self.rows], "summary": self.summary()})


# --- building it ------------------------------------------------------------------------------


def unique_labels(labels: list[str]) -> list[str]:
    """The labels, a repeated one numbered ('torch 2.5 #2'): each column's counts are keyed by it."""
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return unique


def run_adapters(document: dict[str, Any], records: list[Record]) -> list[str]:
    """The adapters of a run: the document's, then any only its records name."""
    names = list(document.get("adapters") or {})
    return names + sorted({r.adapter for r in records} - set(names))


def column_of(run: HistoryRun, label: str, records: list[Record]) -> HistoryColumn:
    document = run.document
    if document is None:
        return HistoryColumn(label, run.note or "no results", run.forced, "", {}, None, False, None)
    adapters = run_adapters(document, records)
    versions: dict[str, str] = {}
    for name in adapters:
        versions.update((document.get("adapters") or {}).get(name, {}).get("versions") or {})
    return HistoryColumn(label, run.note, run.forced, ", ".join(adapters), versions,
                         dict(document.get("counts") or {}), bool(document.get("complete", False)), len(records),
                         document.get("suite_version"))


def drift_detail(changes: list[ErrorChange]) -> str:
    """'output: max abs 4.9e-09 -> 2e-06 (x408)', one per tensor that moved."""
    return "; ".join(f"{c.tensor}: max abs {c.before:.2g} -> {c.after:.2g} ({c.ratio_text()})" for c in changes)


def change_between(before: HistoryCell, after: HistoryCell, drift_factor: float) -> tuple[str, str] | None:
    """(kind, detail) of the change from ``before`` to ``after``; None when the result behaves the same."""
    if (before.status, before.outcome) != (after.status, after.outcome):
        return "status", f"{before.status_text} -> {after.status_text}"
    grew, shrank = error_changes(before.record, after.record, drift_factor)
    if not (grew or shrank):
        return None
    order = [str(tensor.get("name")) for tensor in after.record.tensors]
    return "drift", drift_detail(sorted(grew + shrank, key=lambda c: order.index(c.tensor)))


def row_changes(row: HistoryRow, labels: list[str], drift_factor: float) -> list[Change]:
    changes, previous = [], None
    for column, cell in enumerate(row.cells):
        if cell is None:
            continue
        found = previous and change_between(previous, cell, drift_factor)
        if found:
            changes.append(Change(column, labels[column], *found))
        previous = cell
    return changes


def build_history(runs: list[HistoryRun], drift_factor: float = 10.0, by_case: bool = False) -> History:
    """The history of ``runs`` (oldest first) by the rules in the module docstring."""
    check_growth_factor(drift_factor)
    labels = unique_labels([run.label for run in runs])
    columns, rows = [], {}
    for n, (run, label) in enumerate(zip(runs, labels)):
        records = records_of(run.document) if run.document is not None else []
        columns.append(column_of(run, label, records))
        for record in records:
            key = match_key(record.test_id, by_case)
            if key not in rows:
                rows[key] = HistoryRow(key, record.case_id, record.group, [None] * len(runs))
            elif rows[key].cells[n] is not None:
                raise ValueError(f"run {label!r} has two results for row {key} (adapters "
                                 f"{rows[key].cells[n].adapter} and {record.adapter}): lining up by case "
                                 "needs runs of one adapter each")
            rows[key].cells[n] = HistoryCell.of(record)
    for row in rows.values():
        row.changes = row_changes(row, labels, drift_factor)
    return History(drift_factor, by_case, columns, list(rows.values()))
