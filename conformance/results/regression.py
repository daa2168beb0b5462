"""Did a run get worse than a baseline? Two results documents in, a ``Regression`` out.

Results are matched by ``test_id`` (``case[adapter-device-dtype]``), or with
``by_case`` by ``case[device-dtype]``, the adapter left out, so that two
adapters of one framework (tf-keras and keras-tensorflow) compare case by
case; a run whose adapters then share a key is refused. Pure data: no
rendering here (``conformance.report.render_regression`` draws it,
``summary_text`` prints it).

The rules, stated once:

- *Documented*: a fail or error is documented when its record carries a
  known-differences reason (``known``) or, failing that, when an entry of the
  lists handed to ``compare_runs`` applies to it, judged with the versions
  that run recorded for its adapter (``document["adapters"][adapter]["versions"]``).
- A *status change* puts a result in ``newly_failing`` / ``newly_erroring`` /
  ``newly_unsupported`` / ``newly_skipped`` / ``newly_passing`` by its current
  status, whatever it was before (so unsupported -> fail is newly failing),
  unless the current result is documented: then it is ``still_documented``
  when the baseline's was documented too (fail -> error, both known), else
  ``newly_documented``. A documented fail or error that is still a fail or
  error but no longer documented (its entry's versions no longer hold) is
  newly failing / erroring.
- *Error growth* compares, for a result with the same status in both runs,
  each tensor's ``max_abs`` by name. It grew when
  ``current > growth_factor * baseline`` and ``current >= floor``, where the
  floor is ``NOISE_FLOOR * atol`` of the result's tolerance (1e-7 for a short
  float32 case, 1e-12 for float64; ``DEFAULT_FLOOR`` = 1e-7 when a record has
  no tolerance), so rounding noise growing from 1e-9 to 1e-8 is not flagged.
  Growth of a documented result is ``documented_error_grew``; only an
  undocumented one is ``error_grew``. It shrank by the mirror rule. Results
  whose status changed are listed by status only.
- ``added`` / ``removed``: results in only one of the runs, counted only when
  both runs selected the whole of the same thing. When the selections differ
  (``-k``, ``--device``, ``--dtype``, the adapters, a ``--plan``), either
  run used ``-k`` or a plan, either is incomplete, or the fixtures differ,
  only the results both runs hold are compared, and a note says why and how
  many were left out.
- ``regressed`` is true when anything is newly failing or newly erroring, an
  undocumented error grew, or a result that passed in the baseline no longer
  passes for another reason (now unsupported, skipped, or removed): a pass that
  disappears could be hiding a failure. Newly passing, newly or still
  documented, added, shrinking errors, documented growth, and removed results
  that were not passing are reported but are not regressions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from conformance.jsonsafe import json_safe
from conformance.results.records import UNEXPECTED, Record, records_of
from conformance.verdict.known_differences import KnownDifferences

NOISE_FLOOR = 1e-2  # fraction of a result's atol below which error changes are noise
DEFAULT_FLOOR = 1e-7
SUMMARY_LIMIT = 20


@dataclass(frozen=True)
class StatusChange:
    """One result whose status differs between the runs (``None``: absent from that run).

    ``before_known`` / ``after_known``: the documented reason in that run, for a fail or error.
    """

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
    before_known: str | None = None
    after_known: str | None = None

    def line(self) -> str:
        errors = f"  max abs {_sci(self.before_max_abs)} -> {_sci(self.after_max_abs)}" \
            if self.before_max_abs is not None or self.after_max_abs is not None else ""
        if self.after_known:
            message = f"  documented: {_first_line(self.after_known)}"
        else:
            message = f"  {_first_line(self.message)}" if self.message and self.after != "pass" else ""
        return (f"{self.test_id}  {_status_text(self.before, self.before_known)} -> "
                f"{_status_text(self.after, self.after_known)}{errors}{message}")


def _status_text(status: str | None, known: str | None) -> str:
    return f"{status} (documented)" if known else status or "absent"


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
    """Everything that changed between two runs, by category; ``regressed`` is the verdict.

    ``matched`` results were in both runs; with ``common_only`` the
    ``only_in_baseline`` / ``only_in_current`` ones were left out rather than
    counted as removed / added. ``documented`` holds each run's documented
    reasons by test id (``"baseline"`` / ``"current"``), for the report to draw.
    """

    growth_factor: float
    baseline_count: int = 0
    current_count: int = 0
    newly_failing: list[StatusChange] = field(default_factory=list)
    newly_erroring: list[StatusChange] = field(default_factory=list)
    newly_unsupported: list[StatusChange] = field(default_factory=list)
    newly_skipped: list[StatusChange] = field(default_factory=list)
    newly_passing: list[StatusChange] = field(default_factory=list)
    newly_documented: list[StatusChange] = field(default_factory=list)
    still_documented: list[StatusChange] = field(default_factory=list)
    error_grew: list[ErrorChange] = field(default_factory=list)
    documented_error_grew: list[ErrorChange] = field(default_factory=list)
    error_shrank: list[ErrorChange] = field(default_factory=list)
    added: list[StatusChange] = field(default_factory=list)
    removed: list[StatusChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    by_case: bool = False
    common_only: bool = False
    matched: int = 0
    only_in_baseline: int = 0
    only_in_current: int = 0
    documented: dict[str, dict[str, str]] = field(default_factory=lambda: {"baseline": {}, "current": {}},
                                                  repr=False)

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
                ("newly documented difference", self.newly_documented),
                ("documented difference, status changed", self.still_documented),
                (f"error grew >{self.growth_factor:g}x in a documented difference", self.documented_error_grew),
                (f"error shrank >{self.growth_factor:g}x", self.error_shrank), ("added", self.added),
                ("removed", not_lost(self.removed))]

    def reasons(self) -> list[str]:
        """Why ``regressed`` is true, one phrase per kind, e.g. '2 newly failing'."""
        return [f"{len(items)} {label}" for label, items in self.regressing_sections() if items]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"regressed": self.regressed, "reasons": self.reasons(),
                                "growth_factor": self.growth_factor, "noise_floor": NOISE_FLOOR,
                                "baseline_count": self.baseline_count, "current_count": self.current_count,
                                "by_case": self.by_case, "common_only": self.common_only,
                                "matched": self.matched, "only_in_baseline": self.only_in_baseline,
                                "only_in_current": self.only_in_current, "notes": list(self.notes)}
        for name in CATEGORIES:
            data[name] = [asdict(item) for item in getattr(self, name)]
        return json_safe(data)


CATEGORIES = ("newly_failing", "newly_erroring", "newly_unsupported", "newly_skipped", "newly_passing",
              "newly_documented", "still_documented", "error_grew", "documented_error_grew", "error_shrank",
              "added", "removed")
REGRESSING = ("newly_failing", "newly_erroring", "error_grew")  # lost passes: those of the others that passed
BY_STATUS = {"fail": "newly_failing", "error": "newly_erroring", "unsupported": "newly_unsupported",
             "skipped": "newly_skipped", "pass": "newly_passing"}


def error_magnitude(value: Any) -> float | None:
    """An error as a comparable number: results store non-finite numbers as 'inf' / 'nan' strings;
    NaN counts as infinitely wrong; None where there is no number."""
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


def _change(before: Record | None, after: Record | None, before_known: str | None = None,
            after_known: str | None = None) -> StatusChange:
    record = after or before
    assert record is not None
    return StatusChange(
        test_id=record.test_id, case_id=record.case_id, adapter=record.adapter, device=record.device,
        dtype=record.dtype, group=record.group, before=before and before.status,
        after=after and after.status,
        before_max_abs=before and error_magnitude(before.max_abs),
        after_max_abs=after and error_magnitude(after.max_abs),
        message=str(record.message or ""), before_known=before_known, after_known=after_known)


def noise_floor(record: Record) -> float:
    atol = error_magnitude((record.tolerance or {}).get("atol"))
    return NOISE_FLOOR * atol if atol else DEFAULT_FLOOR


def tensor_errors(record: Record) -> dict[str, float]:
    errors = {}
    for tensor in record.tensors:
        value = error_magnitude(tensor.get("max_abs"))
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


# --- which results are matched, and which are documented -----------------------------------------


def match_key(test_id: str, by_case: bool) -> str:
    """What a result is matched by across runs (compare, history): its test id, or with
    ``by_case`` ``case[device-dtype]``, so that two adapters' results of one case line up."""
    case_id, bracket, column = test_id.partition("[")
    parts = column.removesuffix("]").rsplit("-", 2)
    if not by_case or not bracket or len(parts) < 3:
        return test_id
    return f"{case_id}[{parts[1]}-{parts[2]}]"


def colliding_adapters(document: dict[str, Any]) -> list[str]:
    """The run's adapters when two of its results share a by-case key (else []): --by-case can't pair them."""
    records = records_of(document)
    owners: dict[str, str] = {}
    collide = False
    for record in records:
        collide = owners.setdefault(match_key(record.test_id, True), record.adapter) != record.adapter or collide
    return sorted({record.adapter for record in records}) if collide else []


def adapter_versions(document: dict[str, Any], adapter: str) -> Mapping[str, str] | None:
    """The versions a run recorded for ``adapter`` (None: it recorded none)."""
    entry = (document.get("adapters") or {}).get(adapter)
    versions = entry.get("versions") if isinstance(entry, dict) else None
    return versions if isinstance(versions, dict) else None


def documented_reason(record: Record, document: dict[str, Any], known: KnownDifferences | None) -> str | None:
    """Why this fail or error is a documented difference: its own ``known``, else the lists' first
    entry that applies to the run's versions of its adapter; None for any other result."""
    if record.status not in UNEXPECTED:
        return None
    if record.known:
        return record.known
    if known is None:
        return None
    return known.reason_for(record.test_id, adapter_versions(document, record.adapter))


def documented_reasons(document: dict[str, Any], known: KnownDifferences | None) -> dict[str, str]:
    """Test id -> documented reason, for every documented result of a run."""
    reasons = {r.test_id: documented_reason(r, document, known) for r in records_of(document)}
    return {test_id: reason for test_id, reason in reasons.items() if reason}


# --- the notes: what the comparison could count on ------------------------------------------------


def _adapters(document: dict[str, Any]) -> list[str]:
    return sorted({r.adapter for r in records_of(document)})


def _adapter_note(baseline: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Runs of different adapter sets compare fine, but every result of the odd ones out is added/removed."""
    old, new = set(_adapters(baseline)), set(_adapters(current))
    only_old, only_new = old - new, new - old
    if not (only_old or only_new):
        return []
    sides = [f"only in the baseline: {', '.join(sorted(only_old))}" if only_old else "",
             f"only in the current run: {', '.join(sorted(only_new))}" if only_new else ""]
    return ["the runs cover different adapters (" + "; ".join(s for s in sides if s)
            + "): their results show as removed/added"]


def _cases_text(selection: dict[str, Any]) -> str:
    """'-k 'gru'', '--plan', 'the covering plan' or 'all': which cases a run selected."""
    parts = ([f"-k {selection['keyword']!r}"] if selection.get("keyword") else []) + \
        (["--plan"] if selection.get("plan") else []) + \
        ([f"the covering plan ({', '.join(selection['covering']['adapters'])})"] if selection.get("covering")
         else [])
    return " ".join(parts) or "all"


def _selection_reason(baseline: dict[str, Any], current: dict[str, Any], by_case: bool) -> str | None:
    """Why the runs' missing results say nothing (different or narrowed selections), or None."""
    old, new = baseline.get("selection"), current.get("selection")
    if old is None and new is None:  # files older than the field: as they were always compared
        return None
    if old is None or new is None:
        side = "baseline" if old is None else "current run"
        return f"the {side} records no selection (a stream or an older file)"
    differences = [f"{_cases_text(old)} vs {_cases_text(new)}"] if _cases_text(old) != _cases_text(new) else []
    for option in ("device", "dtype"):
        if old.get(option) != new.get(option):
            differences.append(f"--{option} {old.get(option)} vs {new.get(option)}")
    if not by_case and sorted(old.get("adapters") or ()) != sorted(new.get("adapters") or ()):
        differences.append(f"adapters {', '.join(sorted(old.get('adapters') or ())) or 'none'} vs "
                           f"{', '.join(sorted(new.get('adapters') or ())) or 'none'}")
    if differences:
        return f"the runs selected different cases ({'; '.join(differences)})"
    if _cases_text(old) != "all":
        return f"both runs were narrowed ({_cases_text(old)})"
    return None


def _common_only_reasons(baseline: dict[str, Any], current: dict[str, Any], by_case: bool) -> list[str]:
    """Every reason to compare only the results both runs hold; [] when missing results mean something."""
    reasons = [_selection_reason(baseline, current, by_case)]
    for label, document in (("baseline", baseline), ("current", current)):
        if not document.get("complete", False):
            reasons.append(f"the {label} run is INCOMPLETE")
    # a .jsonl stream records no fixtures hash: only two known hashes can disagree
    old_sha, new_sha = baseline.get("fixtures_sha256"), current.get("fixtures_sha256")
    if old_sha and new_sha and old_sha != new_sha:
        reasons.append(f"the runs used different fixtures (fixtures_sha256 {old_sha[:12]}… vs {new_sha[:12]}…; "
                       "the expected values may have changed)")
    return [reason for reason in reasons if reason]


def _scope_notes(reasons: list[str], regression: Regression) -> list[str]:
    if not reasons:
        return []
    left_out = (f"{regression.only_in_baseline} only in the baseline and {regression.only_in_current} only "
                "in the current run are not counted as removed/added"
                if regression.only_in_baseline or regression.only_in_current else "none left out")
    counted = f"{reasons[0]}: compared the {regression.matched} results both ran; {left_out}"
    return [counted] + [f"{reason}: compared only the common cases" for reason in reasons[1:]]


def _version_note(baseline: dict[str, Any], current: dict[str, Any]) -> list[str]:
    old, new = baseline.get("suite_version"), current.get("suite_version")
    if old == new:
        return []
    return [f"the runs were made by different suite versions ({old or 'unknown'} vs {new or 'unknown'}): "
            "the cases, tolerances or rules may differ"]


def _by_case_note(baseline: dict[str, Any], current: dict[str, Any], matched: int) -> list[str]:
    old, new = (", ".join(_adapters(document)) or "no adapter" for document in (baseline, current))
    return [f"matched case by case (--by-case, the adapter left out): baseline {old}, current {new}; "
            f"{matched} results matched"]


# --- the comparison -------------------------------------------------------------------------------


def check_growth_factor(growth_factor: float) -> None:
    """A factor of 1 or less flags every wobble; inf or NaN flags nothing: both are mistakes."""
    if not (math.isfinite(growth_factor) and growth_factor > 1):
        raise ValueError(f"growth_factor={growth_factor!r} is not allowed; expected a finite number > 1")


def _classify(regression: Regression, before: Record, after: Record, before_known: str | None,
              after_known: str | None) -> None:
    """One result in both runs, put where the module docstring's rules say."""
    changed = before.status != after.status
    if after_known and (changed or not before_known):  # documented now: reported, never a regression
        name = "still_documented" if before_known else "newly_documented"
        getattr(regression, name).append(_change(before, after, before_known, after_known))
    elif changed or before_known and not after_known:  # a documented fail or error that lost its reason too
        getattr(regression, BY_STATUS[after.status]).append(_change(before, after, before_known, after_known))
    else:  # the same status, documented in both runs or in neither
        grew, shrank = error_changes(before, after, regression.growth_factor)
        if after_known:
            regression.documented_error_grew += grew
        else:
            regression.error_grew += grew
        regression.error_shrank += shrank


def compare_runs(baseline: dict[str, Any], current: dict[str, Any], growth_factor: float = 10.0,
                 known: KnownDifferences | None = None, by_case: bool = False) -> Regression:
    """What changed from ``baseline`` to ``current`` (both results documents).

    ``known``: the known-differences lists that document fails and errors
    beyond the records' own ``known``; ``by_case``: match by case, device and
    dtype, the adapter left out (ValueError when a run's adapters share a key).
    """
    check_growth_factor(growth_factor)
    for label, document in (("baseline", baseline), ("current", current)):
        if by_case and (adapters := colliding_adapters(document)):
            raise ValueError(f"--by-case needs one adapter per run; the {label} run holds {', '.join(adapters)}")
    # a result the run never ran is no result: not an error, not a regression, not compared
    old = {match_key(r.test_id, by_case): r for r in records_of(baseline) if r.status != "not_run"}
    new = {match_key(r.test_id, by_case): r for r in records_of(current) if r.status != "not_run"}
    reasons = _common_only_reasons(baseline, current, by_case)
    regression = Regression(growth_factor=growth_factor, baseline_count=len(old), current_count=len(new),
                            by_case=by_case, common_only=bool(reasons), matched=len(old.keys() & new.keys()),
                            only_in_baseline=len(old.keys() - new.keys()),
                            only_in_current=len(new.keys() - old.keys()),
                            documented={"baseline": documented_reasons(baseline, known),
                                        "current": documented_reasons(current, known)})
    was, now = regression.documented["baseline"], regression.documented["current"]
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before is None or after is None:
            if not regression.common_only:
                getattr(regression, "added" if before is None else "removed").append(_change(before, after))
            continue
        _classify(regression, before, after, was.get(before.test_id), now.get(after.test_id))
    if by_case:
        matching = _by_case_note(baseline, current, regression.matched)
    else:  # the odd adapters' results are added/removed only when missing results are counted
        matching = [] if reasons else _adapter_note(baseline, current)
    regression.notes = _scope_notes(reasons, regression) + _version_note(baseline, current) + matching
    return regression


def comparison_document(regression: Regression, sides: Mapping[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The regression JSON ``conformance compare`` writes: ``to_dict()`` and, per side (``baseline`` /
    ``current`` -> (path, document)), its file, adapters and their versions, suite version, fixtures hash
    and selection."""
    data = regression.to_dict()
    for label, (path, document) in sides.items():
        data[label] = {"path": path, "adapters": {name: adapter_versions(document, name) or {}
                                                  for name in _adapters(document)},
                       "suite_version": document.get("suite_version"),
                       "fixtures_sha256": document.get("fixtures_sha256") or None,
                       "selection": document.get("selection"), "complete": document.get("complete", False)}
    return json_safe(data)


def verdict_line(regression: Regression) -> str:
    """'REGRESSED: <reasons>' or 'OK: no regressions (...)': the line a CI log is searched for.

    Where only the results both runs hold were compared and some were left out, the line
    itself says how many were compared: a note below it is too easy to miss.
    """
    partial = regression.common_only and (regression.only_in_baseline or regression.only_in_current)
    scope = f" in the {regression.matched} results both runs hold" if partial else ""
    if regression.regressed:
        return "REGRESSED" + scope + ": " + "; ".join(regression.reasons())
    return (f"OK: no regressions{scope} ({regression.baseline_count} results in the baseline, "
            f"{regression.current_count} in the current run)")


def nothing_compared(regression: Regression, baseline: dict[str, Any], current: dict[str, Any]) -> str | None:
    """Why the comparison compared nothing (no result in common), or None: 'no regressions' would
    then be an answer about nothing."""
    if regression.matched:
        return None
    old, new = (", ".join(_adapters(document)) or "no results" for document in (baseline, current))
    hint = ("" if regression.by_case or old == new
            else "; to compare two adapters case by case, add --by-case")
    return f"nothing to compare: the runs have no result in common (baseline: {old}; current: {new}){hint}"


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
