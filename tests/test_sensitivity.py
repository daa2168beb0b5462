"""The default matrix catches every classic porting bug, as a failure on the right tensor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.verdict.check import check_case
from tests.faulty_adapters import FAULTS
from tests.fixture_cases import fixture_cases
from tests.oracle_adapters import OracleAdapter

CASES = fixture_cases()
REPORT = Path("reports/sensitivity.json")


def run_matrix(adapter) -> list[tuple[str, object]]:
    outcomes = []
    for case in CASES:
        for dtype in case.dtypes:
            outcomes.append((case.id, check_case(adapter, case.for_dtype(dtype), "cpu")))
    return outcomes


def failing_tensor(outcome) -> str | None:
    """The first tensor the verdict blames; None when the list itself is wrong."""
    for tensor in outcome.verdict.tensors:
        if tensor.problem:
            return tensor.name
    return None


def test_the_correct_oracle_adapter_passes_everything():
    assert {o.status for _, o in run_matrix(OracleAdapter())} == {"pass"}


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_the_matrix_flags_the_fault_as_a_failure_on_the_right_tensor(fault, sensitivity_scores):
    outcomes = run_matrix(fault())
    statuses = {o.status for _, o in outcomes}
    failures = [(case_id, o) for case_id, o in outcomes if o.status == "fail"]
    sensitivity_scores[fault.name] = {"fault": fault.fault, "caught_by": len(failures),
                                      "example": failures[0][0] if failures else None}
    assert "error" not in statuses, "a fault must show as a wrong answer, not a crash"
    assert failures, f"no case catches {fault.fault!r}: a case is missing"
    blamed = {failing_tensor(o) for _, o in failures}
    assert fault.points_at in blamed, f"report blames {blamed}, expected {fault.points_at}"


NEW_FAMILY_FAULTS = [fault for fault in FAULTS if getattr(fault, "caught_only_by", None)]


@pytest.mark.parametrize("fault", NEW_FAMILY_FAULTS, ids=lambda f: f.name)
def test_a_fault_only_a_new_family_can_catch_passes_every_other_case(fault):
    """The whole-range and same-size families are needed: without them these bugs pass every case
    designed by hand. (A case adopted from the unseen draws, ``-drawnKEY-``, combines options
    freely and may catch one too: a b2t2 case has batch == timesteps.)"""
    outcomes = run_matrix(fault())
    caught_by = {case_id for case_id, o in outcomes if o.status == "fail" and "-drawn" not in case_id}
    family = {case_id for case_id, _ in outcomes if fault.caught_only_by in case_id}
    assert caught_by and caught_by <= family, sorted(caught_by - family)[:5]


@pytest.fixture(scope="module")
def sensitivity_scores(request):
    scores: dict[str, dict] = {}
    yield scores
    caught = sum(1 for s in scores.values() if s["caught_by"])
    line = f"sensitivity: {caught}/{len(FAULTS)} injected faults caught"
    request.config._conformance_sensitivity = line
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps({"summary": line, "faults": scores}, indent=1))
