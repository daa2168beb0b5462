"""Unseen cases (``conformance.matrix.unseen``): drawn from a seed over every family's part of the
matrix's space, named as unseen, answered by the float64 oracle; and how far that oracle's answer
sits from the exact one the fixtures store (the figures SEMANTICS.md §7 cites).

Whether the same seed gives the same bytes under other kernels: ``test_unseen_independence.py``."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pytest

from conformance.commands.repro import TEST_ID
from conformance.fixtures import FORWARD_ULPS, case_arrays, scaled_ulps
from conformance.matrix.case import test_id as make_test_id  # aliased: pytest would collect test_id
from conformance.matrix.cases import FAMILIES, build_cases
from conformance.matrix.spec import BidirectionalSpec, EncoderDecoderSpec, LayerSpec, StackedSpec
from conformance.matrix.tolerance import tolerance_for
from conformance.matrix.unseen import (
    FAMILY_ORDER,
    FAMILY_SPACES,
    is_unseen,
    unseen_case,
    unseen_cases,
)
from conformance.reference import answered, exact_expected_outputs, expected_outputs
from conformance.verdict.known_differences import parse_known_differences
from tests.fixture_cases import fixture_cases

REPO = Path(__file__).resolve().parent.parent
ACCURACY = REPO / "reports" / "float64-oracle-accuracy.json"
SEEDS = (0, 7, 2 ** 64 - 1)


def _is_layer(case) -> bool:
    return isinstance(case.spec, LayerSpec)


# What shows that a case comes from each family's part of the space.
FAMILY_MARKS = {
    "tutorial_cases": lambda c: (c.batch, c.timesteps, c.features, c.layer.units) == (1, 3, 2, 1),
    "core_cases": lambda c: _is_layer(c) and c.mask is None and c.option == "plain",
    "option_cases": lambda c: _is_layer(c) and c.scheme in ("per_gate", "random") and c.mask_source == "argument",
    "bidirectional_cases": lambda c: isinstance(c.spec, BidirectionalSpec),
    "composite_cases": lambda c: isinstance(c.spec, (StackedSpec, EncoderDecoderSpec)),
    "whole_range_cases": lambda c: c.scheme == "saturating",
    "same_size_cases": lambda c: c.batch == c.timesteps == c.features == c.layer.units
    and c.initial_state is not None and "float64" in c.dtypes,
    "masking_layer_cases": lambda c: c.mask_source == "masking",
    "embedding_cases": lambda c: c.mask_source == "embedding",
    "stateful_cases": lambda c: c.earlier_x is not None,
    "reduced_precision_cases": lambda c: c.dtypes == ("float32", "float16", "bfloat16"),
    "adopted_cases": lambda c: len(c.dtypes) == 1,
}


@pytest.fixture(scope="module")
def two_hundred() -> list:
    """Answered as the judging process answers them."""
    return [answered(case) for case in unseen_cases(200, 42)]


def test_every_fixed_family_has_its_part_of_the_space():
    assert set(FAMILY_SPACES) == {family.__name__ for family in FAMILIES} == set(FAMILY_MARKS)


@pytest.mark.parametrize("seed", SEEDS)
def test_as_many_cases_as_families_reach_every_family_one_each(seed):
    cases = unseen_cases(len(FAMILY_ORDER), seed)
    assert [FAMILY_MARKS[family](case) for family, case in zip(FAMILY_ORDER, cases)] == [True] * len(cases)


def test_two_hundred_cases_cover_every_cell_flag_combination_composite_mask_source_scheme_and_dtype(two_hundred):
    seen = {(case.cell, case.layer.return_sequences, case.layer.return_state) for case in two_hundred}
    assert len(seen) == 12
    assert {type(case.spec) for case in two_hundred} == {LayerSpec, BidirectionalSpec, StackedSpec,
                                                           EncoderDecoderSpec}
    assert {case.mask_source for case in two_hundred if case.mask is not None} == {"argument", "masking", "embedding"}
    assert {case.scheme for case in two_hundred} == {"constant", "per_gate", "random", "saturating"}
    assert {dtype for case in two_hundred for dtype in case.dtypes} == {"float32", "float64", "float16", "bfloat16"}
    assert any(case.earlier_x is not None and case.reset_states for case in two_hundred)
    assert any(case.earlier_x is not None and not case.reset_states for case in two_hundred)


def test_dtype_rows_are_those_the_fixed_families_give_their_cases(two_hundred):
    fixed_rows = {case.dtypes for case in build_cases()} | {(dtype,) for dtype in ("float32", "float64")}
    assert {case.dtypes for case in two_hundred} <= fixed_rows | {("float16",), ("bfloat16",)}


def test_ids_say_unseen_and_are_unique_within_a_seed_and_between_seeds(two_hundred):
    ids = [case.id for case in two_hundred] + [case.id for case in unseen_cases(200, 43)]
    assert len(set(ids)) == len(ids)
    assert all(is_unseen(case_id) and "-unseen42-" in case_id for case_id in ids[:200])
    assert not any(is_unseen(case.id) for case in build_cases())


def test_ids_keep_the_fixed_grammar_so_test_ids_and_known_difference_patterns_apply(two_hundred):
    known = parse_known_differences("lstm-*[torch-cpu-float32]  # every LSTM on torch\n"
                                 "*-stateful_reset[torch-cpu-float32]  # one option, by its label\n")
    for case in two_hundred:
        key = make_test_id(case.id, "torch", "cpu", "float32")
        assert TEST_ID.fullmatch(key).group("case") == case.id
        assert known.entries[0].matches(key) == (case.cell == "lstm")
        assert known.entries[1].matches(key) == case.id.endswith("-stateful_reset")


def test_the_same_seed_gives_the_same_cases_whatever_count_asked_for_them(two_hundred):
    again = [answered(case) for case in unseen_cases(30, 42)]
    for first, second in zip(two_hundred, again):
        assert first.id == second.id and first.dtypes == second.dtypes
        assert _same_arrays(case_arrays(first, list(first.expected)), case_arrays(second, list(second.expected)))
    assert unseen_case(42, 199).id == two_hundred[199].id


def test_another_seed_gives_other_cases(two_hundred):
    other = unseen_cases(len(FAMILY_ORDER), 43)
    assert not any(np.array_equal(a.x, b.x) for a, b in zip(two_hundred, other))


def test_every_case_is_one_the_oracle_answers_with_its_output_list(two_hundred):
    for case in two_hundred:
        assert [a.shape[0] for a in case.expected] == [case.batch] * len(case.output_names)
        assert all(a.dtype == np.float64 and np.isfinite(a).all() for a in case.expected)


def test_cases_come_without_their_answer_as_an_adapter_must_see_them():
    assert [case.expected for case in unseen_cases(len(FAMILY_ORDER), 3)] == [None] * len(FAMILY_ORDER)


def test_the_judging_process_answers_a_case_with_the_float64_oracle_of_its_own_inputs(two_hundred):
    for case in two_hundred:
        assert all(np.array_equal(a, b) for a, b in zip(case.expected, expected_outputs(case), strict=True))


def test_that_answer_is_within_forward_ulps_of_the_exact_one():
    """The bound the fixtures hold the float64 oracle to, on unseen cases too (a sample: exact is slow)."""
    for case in map(answered, unseen_cases(2 * len(FAMILY_ORDER), 5)):
        for want, got in zip(exact_expected_outputs(case), case.expected, strict=True):
            assert scaled_ulps(want, got) <= FORWARD_ULPS, case.id


@pytest.mark.parametrize("count", [-1, 1.5, "3", True, None])
def test_a_count_that_is_not_a_whole_number_from_zero_is_refused_in_one_line(count):
    with pytest.raises(ValueError, match=r"^the number of unseen cases must be a whole number >= 0, got [^\n]*$"):
        unseen_cases(count, 1)


@pytest.mark.parametrize("seed", [-1, 2 ** 64, 1.0, "42", False, None])
def test_a_seed_that_is_not_a_whole_number_in_range_is_refused_in_one_line(seed):
    with pytest.raises(ValueError, match=r"^the unseen cases' seed must be a whole number from 0 to 2\*\*64 - 1"
                                         r", got [^\n]*$"):
        unseen_cases(1, seed)


def test_no_cases_for_a_count_of_zero():
    assert unseen_cases(0, 1) == []


# --- the float64 oracle against the exact answers, over the fixed matrix -----------------------


def _same_arrays(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(
        first[k].dtype == second[k].dtype and first[k].tobytes() == second[k].tobytes() for k in first)


def _distance(case, n: int, exact: np.ndarray, quick: np.ndarray) -> dict:
    """One output tensor's figures: max abs error, ULPs (of each nonzero value: beside an exact 0 any
    rounding is billions of ULPs; and of the tensor's largest magnitude, FORWARD_ULPS's unit), and
    the error as a share of each dtype's tolerance."""
    error = np.abs(quick - exact)
    nonzero = exact != 0
    shares = {}
    for dtype in ("float64", "float32"):
        bound = case.tolerance(dtype)
        shares[dtype] = float((error / (bound.atol + bound.rtol * np.abs(exact))).max(initial=0.0))
    return {"case": case.id, "output": case.output_names[n], "max_abs": float(error.max(initial=0.0)),
            "max_ulp": float((error[nonzero] / np.spacing(np.abs(exact[nonzero]))).max(initial=0.0)),
            "scaled_ulp": scaled_ulps(exact, quick), "share_of_tolerance": shares}


def _accuracy_report(tensors: list[dict]) -> dict:
    """The worst tensor by each figure, with what they were measured on."""
    worst = {figure: max(tensors, key=lambda t: t[figure]) for figure in ("max_abs", "max_ulp", "scaled_ulp")}
    for dtype in ("float64", "float32"):
        worst[f"share_of_{dtype}_tolerance"] = max(tensors, key=lambda t: t["share_of_tolerance"][dtype])
    return {"machine": platform.machine(), "numpy": np.__version__, "cases": len(fixture_cases()),
            "tensors": len(tensors), "values": int(sum(a.size for case in fixture_cases() for a in case.expected)),
            "exactly_equal_tensors": sum(t["max_abs"] == 0.0 for t in tensors),
            "tightest_tolerance": tolerance_for("float64", 1).to_dict(), "worst": worst}


def test_the_float64_oracle_is_a_negligible_share_of_the_tightest_tolerance_over_the_fixed_matrix():
    """Written to reports/float64-oracle-accuracy.json: SEMANTICS.md §7 cites it. The bound asserted,
    a thousandth of the float64 tolerance, is what makes the float64 answer good enough for an
    unseen case: a verdict it could turn is one within 0.1% of the bound either way."""
    tensors = [_distance(case, n, exact, quick) for case in fixture_cases()
               for n, (exact, quick) in enumerate(zip(case.expected, expected_outputs(case), strict=True))]
    report = _accuracy_report(tensors)
    ACCURACY.parent.mkdir(exist_ok=True)
    ACCURACY.write_text(json.dumps(report, indent=1) + "\n")
    assert report["worst"]["share_of_float64_tolerance"]["share_of_tolerance"]["float64"] < 1e-3
