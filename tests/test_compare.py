"""The verdict: list, then shape, dtype and values, with error figures recorded."""

import dataclasses

import numpy as np
import pytest

from conformance.verdict.compare import compare_outputs, ulp_distance
from tests.fixture_cases import fixture_cases

CASES = {c.id: c for c in fixture_cases()}


def case(case_id: str):
    return CASES[case_id]


def expected_as(case_obj, dtype="float32"):
    return [np.asarray(e, dtype=dtype) for e in case_obj.expected]


def test_gru_with_return_state_and_three_tensors_names_the_expected_list():
    gru = case("gru-seq0-state1-random-b3t5")
    gru = dataclasses.replace(gru, spec=dataclasses.replace(gru.spec, units=4))
    outputs = expected_as(gru)
    verdict = compare_outputs(gru, outputs + [outputs[-1]])
    assert not verdict.passed
    assert verdict.message == "GRU(4, return_state=True) returns 2 tensors [output, h]; got 3"


def test_a_bare_array_instead_of_a_list_is_named():
    lstm = case("lstm-seq1-state0-random-b3t5")
    verdict = compare_outputs(lstm, expected_as(lstm)[0])
    assert "got a ndarray" in verdict.message


def test_a_wrong_shape_is_reported_before_values():
    lstm = case("lstm-seq1-state1-random-b3t5")
    outputs = expected_as(lstm)
    outputs[0] = outputs[0][:, -1]
    verdict = compare_outputs(lstm, outputs)
    assert "output: shape (3, 4), expected (3, 5, 4)" in verdict.message


def test_a_wrong_dtype_fails():
    lstm = case("lstm-seq0-state0-random-b3t5")
    verdict = compare_outputs(lstm, expected_as(lstm, "float64"))
    assert not verdict.passed and "dtype float64, expected float32" in verdict.message


def test_float32_rounding_of_the_answer_passes_with_error_figures():
    lstm = case("lstm-seq1-state1-random-b4t48")
    verdict = compare_outputs(lstm, expected_as(lstm))
    assert verdict.passed
    assert all(t.max_ulp is not None and t.max_ulp <= 1 for t in verdict.tensors)


def test_a_drift_is_located_at_its_first_time_step():
    lstm = case("lstm-seq1-state0-random-b4t48")
    outputs = expected_as(lstm)
    outputs[0][2, 30:, 1] += 1e-3
    verdict = compare_outputs(lstm, outputs)
    (tensor,) = verdict.tensors
    assert tensor.first_divergence["index"] == [2, 30, 1]
    assert tensor.mismatched == 18
    assert len(tensor.error_map) == 48 and len(tensor.error_map[0]) == 4
    assert tensor.error_map[29][1] < 1e-6 < tensor.error_map[30][1]


def test_nan_is_a_failure_not_a_pass():
    gru = case("gru-seq0-state0-random-b3t5")
    outputs = expected_as(gru)
    outputs[0][0, 0] = np.nan
    assert not compare_outputs(gru, outputs).passed


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adjacent_floats_are_one_ulp_apart(dtype):
    one = np.array([1.0], dtype=dtype)
    assert ulp_distance(np.nextafter(one, 2), one, dtype)[0] == 1.0
    assert ulp_distance(-np.nextafter(one, 2), -one, dtype)[0] == 1.0
    assert ulp_distance(np.array([-0.0], dtype), np.array([0.0], dtype), dtype)[0] == 0.0


@pytest.mark.parametrize("odd", [np.str_("wrong"), None, 1j], ids=["str", "object", "complex"])
def test_an_output_of_text_objects_or_complex_numbers_is_a_fail_naming_its_dtype(odd):
    """Not a harness error from converting it to float64 (issue 29, item 3)."""
    lstm = case("lstm-seq0-state0-random-b3t5")
    outputs = expected_as(lstm)
    outputs[0] = np.full(outputs[0].shape, odd)
    verdict = compare_outputs(lstm, outputs)
    assert not verdict.passed
    assert verdict.message == (f"output: dtype {outputs[0].dtype}, expected float32 "
                               "(no real numbers: the values are not compared)")


def test_numpy_set_to_raise_by_someone_else_does_not_reach_the_verdict():
    """check_case judges under numpy's default error state, whatever an adapter left (issue 29, item 2)."""
    from conformance.verdict.check import check_case
    from tests.oracle_adapters import OracleAdapter

    lstm = next(c for c in fixture_cases() if c.id == "lstm-seq1-state1-saturating-b3t5-reduced_precision")
    with np.errstate(all="raise"):
        outcome = check_case(RaisingAfterwardsOracle(OracleAdapter()), lstm.for_dtype("float16"), "cpu")
    assert outcome.status == "pass", outcome.message


class RaisingAfterwardsOracle:
    """The oracle, answering under an error state of its own (as a framework may)."""

    def __init__(self, oracle):
        self.oracle = oracle

    def __getattr__(self, member):
        return getattr(self.oracle, member)

    def run(self, case_obj, device):
        with np.errstate(all="ignore"):
            return self.oracle.run(case_obj, device)
