"""Did a run get worse than a baseline? Two results documents in, a ``Regression`` out.

Results are matched by ``test_id`` (``case[adapter-device-dtype]``). Pure
data: no rendering here (``conformance.report.render_regression`` draws it,
``summary_text`` prints it).

The rules, stated once:

- A *status change* puts a result in ``newly_failing`` / ``newly_erroring`` /
  ``newly_unsupported`` / ``newly_skipped`` / ``newly_passing`` by its current
  status, whatever it was before (so unsupported -> fail is newly failing).
- *Error growth* compares, for a result with the same status in both runs,
  each tensor's ``max_abs`` by name. It grew when
  ``current > growth_factor * baseline`` and ``current >= floor``, where the
  floor is ``NOISE_FLOOR * atol`` of the result's tolerance (1e-7 for a short
  float32 case, 1e-12 for float64; ``DEFAULT_FLOOR`` = 1e-7 when a record has
  no tolerance), so rounding noise growing from 1e-9 to 1e-8 is not flagged.
  It shrank by the mirror rule. Results whose status changed are listed by
  status only.
- ``added`` / ``removed``: test ids in only one of the runs.
- ``regressed`` is true when anything is newly failing or newly erroring, an
  error grew, or a result that passed in the baseline no longer passes for
  another reason (now unsupported, skipped, or removed): a pass that disappears
  could be hiding a failure. Newly passing, added, shrinking errors, and
  removed results that were not passing are reported but are not regressions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from conformance.jsonsafe import json_safe
from conformance.results.records import Record, records_of

NOISE_FLOOR = 1e-2  # fraction of a result's atol below which error changes are noise
DEFAULT_FLOOR = 1e-7
SUMMARY_LIMIT = 20


@dataclass(frozen=True)
class StatusChange:
    """One result whose status differs between the runs (``None``: absent from that run)."""

    test_id: str
    case_id: str
    adapter: str
    device: str
    dtype: str
    group: str
    before: str | None
    after: str | None
    before_max_abs: float | None
    after_max_abs: float | None
    message: str

    def line(self) -> str:
        errors = f"  max abs {_sci(self.before_max_abs)} -> {_sci(self.after_max_abs)}" \
            if self.before_max_abs is not None or self.after_max_abs is not None else ""
        message = f"  {_first_line(self.message)}" if self.message and self.after != "pass" else ""
        return f"{self.test_id}  {self.before or 'absent'} -> {self.after or 'absent'}{errors}{message}"


@dataclass(frozen=True)
class ErrorChange:
    """One tensor of one result whose max abs error moved by more than the growth factor."""

    test_id: str
    tensor: str
    status: str
    before: float
    after: float
    floor: float

    @property
    def factor(self) -> float:
        """after / before (inf when before was exact; 0 when after is)."""
        if self.before == 0:
            return math.inf
        return self.after / self.before

    def ratio_text(self) -> str:
        """'x500' for growth, '/500' for shrinkage; 'now exact' only when the error became 0."""
        if self.after == 0:
            return "now exact"
        factor = self.factor
        if factor >= 1:
            return f"x{factor:.3g}"
        return f"/{1 / factor:.3g}" if factor else "/inf"  # factor 0: it was infinitely wrong before

    def line(self) -> str:
        return (f"{self.test_id} {self.tensor}: max abs {_sci(self.before)} -> {_sci(self.after)} "
                f"({self.ratio_text()}, {self.status})")


@dataclass
class Regression:
    """Everything that changed between two runs, by category; ``regressed`` is the verdict."""

    growth_factor: float
    baseline_count: int = 0
    current_count: int = 0
    newly_failing: list[StatusChange] = field(default_factory=list)
    newly_erroring: list[StatusChange] = field(default_factory=list)
    newly_unsupported: list[StatusChange] = field(default_factory=list)
    newly_skipped: list[StatusChange] = field(default_factory=list)
    newly_passing: list[StatusChange] = field(default_factory=list)
    error_grew: list[ErrorChange] = field(default_factory=list)
    error_shrank: list[ErrorChange] = field(default_factory=list)
    added: list[StatusChange] = field(default_factory=list)
    removed: list[StatusChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def lost_passes(self) -> list[StatusChange]:
        """Results that passed in the baseline and are now unsupported, skipped or gone."""
        changes = self.newly_unsupported + self.newly_skipped + self.removed
        return [c for c in changes if c.before == "pass"]

    @property
    def regressed(self) -> bool:
        return bool(self.newly_failing or self.newly_erroring or self.error_grew or self.lost_passes)

    def regressing_sections(self) -> list[tuple[str, list]]:
        """The kinds of change that make ``regressed`` true, each with its items."""
        return [("newly failing", self.newly_failing), ("newly erroring", self.newly_erroring),
                (f"error grew >{self.growth_factor:g}x", self.error_grew),
                ("passed before, now unsupported/skipped/removed", self.lost_passes)]

    def other_sections(self) -> list[tuple[str, list]]:
        """Changes reported but not regressions (lost passes are left out: they are listed above)."""
        def not_lost(items: list[StatusChange]) -> list[StatusChange]:
            return [c for c in items if c.before != "pass"]

        return [("newly unsupported", not_lost(self.newly_unsupported)),
                ("newly skipped", not_lost(self.newly_skipped)), ("newly passing", self.newly_passing),
                (f"error shrank >{self.growth_factor:g}x", self.error_shrank), ("added", self.added),
                ("removed", not_lost(self.removed))]

    def reasons(self) -> list[str]:
        """Why ``regressed`` is true, one phrase per kind, e.g. '2 newly failing'."""
        return [f"{len(items)} {label}" for label, items in self.regressing_sections() if items]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"regressed": self.regressed, "reasons": self.reasons(),
                                "growth_factor": self.growth_factor, "noise_floor": NOISE_FLOOR,
                                "baseline_count": self.baseline_count, "current_count": self.current_count,
                                "notes": list(self.notes)}
        for name in CATEGORIES:
            data[name] = [asdict(item) for item in getattr(self, name)]
        return json_safe(data)


CATEGORIES = ("newly_failing", "newly_erroring", "newly_unsupported", "newly_skipped", "newly_passing",
              "error_grew", "error_shrank", "added", "removed")
BY_STATUS = {"fail": "newly_failing", "error": "newly_erroring", "unsupported": "newly_unsupported",
             "skipped": "newly_skipped", "pass": "newly_passing"}


def _number(value: Any) -> float | None:
    """Results store non-finite numbers as 'inf' / 'nan' strings; NaN counts as infinitely wrong."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        return math.inf
    except (TypeError, ValueError):
        return None
    return math.inf if math.isnan(number) else abs(number)


def _sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:200] if lines else ""


def _change(before: Record | None, after: Record | None) -> StatusChange:
    record = after or before
    assert record is not None
    return StatusChange(
        test_id=record.test_id, case_id=record.case_id, adapter=record.adapter, device=record.device,
        dtype=record.dtype, group=record.group, before=before and before.status,
        after=after and after.status,
        before_max_abs=before and _number(before.max_abs), after_max_abs=after and _number(after.max_abs),
        message=str(record.message or ""))


def noise_floor(record: Record) -> float:
    atol = _number((record.tolerance or {}).get("atol"))
    return NOISE_FLOOR * atol if atol else DEFAULT_FLOOR


def tensor_errors(record: Record) -> dict[str, float]:
    errors = {}
    for tensor in record.tensors:
        value = _number(tensor.get("max_abs"))
        if value is not None:
            errors[str(tensor.get("name"))] = value
    return errors


def error_changes(before: Record, after: Record,
                  growth_factor: float) -> tuple[list[ErrorChange], list[ErrorChange]]:
    """(grew, shrank) per tensor of one result, by the rule in the module docstring."""
    floor = noise_floor(after)
    old, new = tensor_errors(before), tensor_errors(after)
    grew, shrank = [], []
    for name in old.keys() & new.keys():
        change = ErrorChange(after.test_id, name, after.status, old[name], new[name], floor)
        if new[name] >= floor and new[name] > growth_factor * old[name]:
            grew.append(change)
        elif old[name] >= floor and old[name] > growth_factor * new[name]:
            shrank.append(change)
    order = list(new)
    key = (lambda c: order.index(c.tensor))
    return sorted(grew, key=key), sorted(shrank, key=key)


def _adapters(document: dict[str, Any]) -> set[str]:
    return {r.adapter for r in records_of(document)}


def _adapter_note(baseline: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Runs of different adapter sets compare fine, but every result of the odd ones out is added/removed."""
    only_old, only_new = _adapters(baseline) - _adapters(current), _adapters(current) - _adapters(baseline)
    if not (only_old or only_new):
        return []
    sides = [f"only in the baseline: {', '.join(sorted(only_old))}" if only_old else "",
             f"only in the current run: {', '.join(sorted(only_new))}" if only_new else ""]
    return ["the runs cover different adapters (" + "; ".join(s for s in sides if s)
            + "): their results show as removed/added"]


def _notes(baseline: dict[str, Any], current: dict[str, Any]) -> list[str]:
    notes = []
    # a .jsonl stream records no fixtures hash: only two known hashes can disagree
    old_sha, new_sha = baseline.get("fixtures_sha256"), current.get("fixtures_sha256")
    if old_sha and new_sha and old_sha != new_sha:
        notes.append("the runs used different fixtures (fixtures_sha256 differs): the expected values "
                     "may have changed")
    for label, document in (("baseline", baseline), ("current", current)):
        if not document.get("complete", False):
            notes.append(f"the {label} run is INCOMPLETE: missing results show as added/removed")
    return notes + _adapter_note(baseline, current)


def check_growth_factor(growth_factor: float) -> None:
    """A factor of 1 or less flags every wobble; inf or NaN flags nothing: both are mistakes."""
    if not (math.isfinite(growth_factor) and growth_factor > 1):
        raise ValueError(f"growth_factor={growth_factor!r} is not allowed; expected a finite number > 1")


def compare_runs(baseline: dict[str, Any], current: dict[str, Any],
                 growth_factor: float = 10.0) -> Regression:
    """What changed from ``baseline`` to ``current`` (both results documents)."""
    check_growth_factor(growth_factor)
    old = {r.test_id: r for r in records_of(baseline)}
    new = {r.test_id: r for r in records_of(current)}
    regression = Regression(growth_factor=growth_factor, baseline_count=len(old), current_count=len(new),
                            notes=_notes(baseline, current))
    for test_id in sorted(old.keys() | new.keys()):
        before, after = old.get(test_id), new.get(test_id)
        if before is None:
            regression.added.append(_change(None, after))
        elif after is None:
            regression.removed.append(_change(before, None))
        elif before.status != after.status:
            getattr(regression, BY_STATUS[after.status]).append(_change(before, after))
        else:
            grew, shrank = error_changes(before, after, growth_factor)
            regression.error_grew += grew
            regression.error_shrank += shrank
    return regression


def verdict_line(regression: Regression) -> str:
    """'REGRESSED: <reasons>' or 'OK: no regressions (...)': the line a CI log is searched for."""
    if regression.regressed:
        return "REGRESSED: " + "; ".join(regression.reasons())
    return (f"OK: no regressions ({regression.baseline_count} results in the baseline, "
            f"{regression.current_count} in the current run)")


def _section_lines(title: str, items: list, limit: int) -> list[str]:
    lines = [f"{title} ({len(items)}):"] + [f"  {item.line()}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more")
    return lines


def summary_text(regression: Regression, limit: int = SUMMARY_LIMIT) -> str:
    """The terminal summary: the verdict, notes, what regressed (named first), then the other changes.

    Each section shows at most ``limit`` lines, so a huge change can't flood a CI log; the HTML
    report has them all.
    """
    lines = [verdict_line(regression)] + [f"note: {note}" for note in regression.notes]
    for title, items in regression.regressing_sections():
        if items:
            lines += _section_lines(title, items, limit)
    others = [(title, items) for title, items in regression.other_sections() if items]
    if others:
        lines.append("other changes (not regressions):")
        for title, items in others:
            lines += _section_lines(title, items, limit)
    return "\n".join(lines)
