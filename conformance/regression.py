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

    def line(self) -> str:
        factor = self.factor
        ratio = f"x{factor:.3g}" if factor >= 1 else f"/{1 / factor:.3g}" if factor else "-> exact"
        return (f"{self.test_id} {self.tensor}: max abs {_sci(self.before)} -> {_sci(self.after)} "
                f"({ratio}, {self.status})")


@dataclass
class Regression:
    growth_factor: float
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

    def reasons(self) -> list[str]:
        """Why ``regressed`` is true, one phrase per kind, e.g. '2 newly failing'."""
        kinds = (("newly failing", self.newly_failing), ("newly erroring", self.newly_erroring),
                 (f"error grew >{self.growth_factor:g}x", self.error_grew),
                 ("passed before, now unsupported/skipped/removed", self.lost_passes))
        return [f"{len(items)} {label}" for label, items in kinds if items]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"regressed": self.regressed, "reasons": self.reasons(),
                                "growth_factor": self.growth_factor, "noise_floor": NOISE_FLOOR,
                                "notes": list(self.notes)}
        for name in CATEGORIES:
            data[name] = [_json_safe(asdict(item)) for item in getattr(self, name)]
        return data


CATEGORIES = ("newly_failing", "newly_erroring", "newly_unsupported", "newly_skipped", "newly_passing",
              "error_grew", "error_shrank", "added", "removed")
BY_STATUS = {"fail": "newly_failing", "error": "newly_erroring", "unsupported": "newly_unsupported",
             "skipped": "newly_skipped", "pass": "newly_passing"}


def _json_safe(data: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, float) and not math.isfinite(v) else v for k, v in data.items()}


def _number(value: Any) -> float | None:
    """Results store non-finite numbers as 'inf' / 'nan' strings; NaN counts as infinitely wrong."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return math.inf if math.isnan(number) else number


def _sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:200] if lines else ""


def _change(before: dict[str, Any] | None, after: dict[str, Any] | None) -> StatusChange:
    record = after or before or {}
    return StatusChange(
        test_id=record.get("test_id", ""), case_id=record.get("case_id", ""),
        adapter=record.get("adapter", ""), device=record.get("device", ""), dtype=record.get("dtype", ""),
        group=record.get("group", ""), before=before and before.get("status"),
        after=after and after.get("status"),
        before_max_abs=before and _number(before.get("max_abs")),
        after_max_abs=after and _number(after.get("max_abs")),
        message=str(record.get("message") or ""))


def noise_floor(record: dict[str, Any]) -> float:
    atol = _number((record.get("tolerance") or {}).get("atol"))
    return NOISE_FLOOR * atol if atol else DEFAULT_FLOOR


def tensor_errors(record: dict[str, Any]) -> dict[str, float]:
    errors = {}
    for tensor in record.get("tensors") or []:
        value = _number(tensor.get("max_abs"))
        if value is not None:
            errors[str(tensor.get("name"))] = value
    return errors


def error_changes(before: dict[str, Any], after: dict[str, Any],
                  growth_factor: float) -> tuple[list[ErrorChange], list[ErrorChange]]:
    """(grew, shrank) per tensor of one result, by the rule in the module docstring."""
    floor = noise_floor(after)
    old, new = tensor_errors(before), tensor_errors(after)
    grew, shrank = [], []
    for name in old.keys() & new.keys():
        change = ErrorChange(after["test_id"], name, after["status"], old[name], new[name], floor)
        if new[name] >= floor and new[name] > growth_factor * old[name]:
            grew.append(change)
        elif old[name] >= floor and old[name] > growth_factor * new[name]:
            shrank.append(change)
    order = list(new)
    key = (lambda c: order.index(c.tensor))
    return sorted(grew, key=key), sorted(shrank, key=key)


def _notes(baseline: dict[str, Any], current: dict[str, Any]) -> list[str]:
    notes = []
    if baseline.get("fixtures_sha256") != current.get("fixtures_sha256"):
        notes.append("the runs used different fixtures (fixtures_sha256 differs): the expected values "
                     "may have changed")
    for label, document in (("baseline", baseline), ("current", current)):
        if not document.get("complete", False):
            notes.append(f"the {label} run is INCOMPLETE: missing results show as added/removed")
    return notes


def compare_runs(baseline: dict[str, Any], current: dict[str, Any],
                 growth_factor: float = 10.0) -> Regression:
    """What changed from ``baseline`` to ``current`` (both results documents)."""
    if not growth_factor > 1:
        raise ValueError(f"growth_factor={growth_factor!r} is not allowed; expected a number > 1")
    old = {r["test_id"]: r for r in baseline.get("results", [])}
    new = {r["test_id"]: r for r in current.get("results", [])}
    regression = Regression(growth_factor=growth_factor, notes=_notes(baseline, current))
    for test_id in sorted(old.keys() | new.keys()):
        before, after = old.get(test_id), new.get(test_id)
        if before is None:
            regression.added.append(_change(None, after))
        elif after is None:
            regression.removed.append(_change(before, None))
        elif before["status"] != after["status"]:
            getattr(regression, BY_STATUS[after["status"]]).append(_change(before, after))
        else:
            grew, shrank = error_changes(before, after, growth_factor)
            regression.error_grew += grew
            regression.error_shrank += shrank
    return regression


def summary_text(regression: Regression, limit: int = SUMMARY_LIMIT) -> str:
    """The terminal summary: the verdict, then each non-empty category, ``limit`` lines each."""
    if regression.regressed:
        lines = ["REGRESSED: " + "; ".join(regression.reasons())]
    else:
        lines = ["No regression."]
    lines += [f"note: {note}" for note in regression.notes]
    titles = {"error_grew": f"error grew >{regression.growth_factor:g}x",
              "error_shrank": f"error shrank >{regression.growth_factor:g}x"}
    for name in CATEGORIES:
        items = getattr(regression, name)
        if not items:
            continue
        lines.append(f"{titles.get(name, name.replace('_', ' '))} ({len(items)}):")
        lines += [f"  {item.line()}" for item in items[:limit]]
        if len(items) > limit:
            lines.append(f"  ... and {len(items) - limit} more")
    return "\n".join(lines)
