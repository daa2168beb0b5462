"""The float16 and bfloat16 rows: exact inputs, one stated rule, counted apart from the float32 verdict.

(Not the labelled ``--reduced-precision-defaults`` mode of test_reduced_precision.py: that mode
leaves a runtime's own defaults on for float32 rows; these rows ask for the reduced dtype.)
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from conformance.matrix.case import REDUCED_PRECISION, numpy_dtype
from conformance.matrix.cases import LONG_STEPS, on_reduced_grid
from conformance.matrix.tolerance import TOLERANCE_RULE, tolerance_for
from conformance.matrix.weights import as_reduced_values
from conformance.verdict.check import check_case
from tests.commandline import CONSOLE_SCRIPT
from tests.faulty_adapters import GruZAndRSwapped, LstmGatesInOnnxOrder
from tests.fixture_cases import fixture_cases

REPO = Path(__file__).resolve().parent.parent
CASES = fixture_cases()
REDUCED = [case for case in CASES if set(REDUCED_PRECISION) & set(case.dtypes)]


def arrays_of(case) -> list[np.ndarray]:
    arrays = [case.x, *(case.initial_state or ())]
    arrays += [value for weights in case.weights.values() for value in weights.values()]
    return arrays


def test_every_cell_and_flag_has_reduced_rows_over_5_and_48_steps_and_in_saturation():
    assert len(REDUCED) == 36
    assert all(case.dtypes == ("float32", "float16", "bfloat16") for case in REDUCED)
    assert {(case.group, case.scheme, case.timesteps) for case in REDUCED} == {
        (group, scheme, steps) for group in {c.group for c in REDUCED}
        for scheme, steps in (("random", 5), ("random", LONG_STEPS), ("saturating", 5))}


def test_their_inputs_and_weights_are_exact_in_every_dtype():
    """So the float64 oracle's answer is the truth for each row, whatever the dtype."""
    for case in REDUCED:
        for array in arrays_of(case):
            for dtype in (np.float16, ml_dtypes.bfloat16, np.float32):
                assert np.array_equal(array.astype(dtype).astype(np.float64), array), case.id
        assert all(np.array_equal(a, b) for a, b in zip(arrays_of(on_reduced_grid(case)), arrays_of(case)))


def test_the_grid_rounds_to_nearest_bfloat16_with_ties_to_even():
    # 1 + 2**-8 lies halfway between bfloat16's 1 and 1 + 2**-7: ties go to the even 1;
    # 1 + 3 * 2**-8 lies halfway between 1 + 2**-7 and 1 + 2**-6: ties go to the even 1 + 2**-6.
    values = as_reduced_values(np.array([1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, -(1 + 2.0 ** -7), 2.0 ** -20]))
    assert values.tolist() == [1.0, 1 + 2.0 ** -6, -(1 + 2.0 ** -7), 0.0]


def test_the_rule_is_six_ulps_of_the_dtype_grown_with_the_square_root_of_the_steps():
    # eps: the distance from 1 to the next number, 2**-10 in float16 (10 fraction bits), 2**-7 in bfloat16 (7).
    assert tolerance_for("float16", 5).atol == 6 * 2.0 ** -10
    assert tolerance_for("bfloat16", 10).rtol == 6 * 2.0 ** -7
    assert tolerance_for("bfloat16", 48).atol == pytest.approx(6 * 2.0 ** -7 * math.sqrt(4.8))
    assert tolerance_for("float32", 48).atol == pytest.approx(1e-5 * 4.8)  # float32 keeps its linear rule
    assert "6 eps * sqrt(max(1, timesteps / 10))" in TOLERANCE_RULE


def test_the_manifest_records_each_rows_bound():
    manifest = json.loads((REPO / "fixtures" / "manifest.json").read_text())
    entries = {entry["id"]: entry for entry in manifest["cases"]}
    assert manifest["tolerance_rule"] == TOLERANCE_RULE
    for case in REDUCED:
        assert entries[case.id]["tolerance"]["bfloat16"] == case.tolerance("bfloat16").to_dict()


@pytest.mark.parametrize("fault", [LstmGatesInOnnxOrder, GruZAndRSwapped], ids=lambda f: f.name)
def test_a_gate_order_bug_fails_the_float32_row_of_every_reduced_case_whatever_the_wider_rows_say(fault):
    """The reduced rows judge precision, not conventions: a bfloat16 bound of 6 eps (4.7%) can
    hold a gate swap's error on some case (gru-seq0-state1-random-b4t48: 0.05 against 0.10); the
    float32 row of the same case, counted in the verdict, fails it."""
    adapter = fault()
    cell = "lstm" if fault is LstmGatesInOnnxOrder else "gru"
    for case in (c for c in REDUCED if c.cell == cell):
        assert check_case(adapter, case.for_dtype("float32"), "cpu").status == "fail", case.id


def test_rows_come_in_their_own_numpy_dtypes():
    case = REDUCED[0]
    assert case.for_dtype("bfloat16").x.dtype == numpy_dtype("bfloat16") == np.dtype(ml_dtypes.bfloat16)
    assert case.for_dtype("float16").weights["layer"]["kernel"].dtype == np.float16


def table_rows(text: str) -> dict[str, list[str]]:
    """A summary table's rows: adapter -> its counts (pass, fail, known, unsupported, skipped,
    error, not run)."""
    return {words[0]: words[1:] for words in (line.split() for line in text.splitlines())
            if len(words) == 8 and words[1].isdigit()}


def test_a_run_counts_the_reduced_rows_apart_from_the_float32_verdict(tmp_path):
    done = subprocess.run([str(CONSOLE_SCRIPT), "run", "--adapter", "tests.oracle_adapters:OracleAdapter",
                           "--adapter", "tests.faulty_adapters:ReducedPrecisionIgnored",
                           "-k", "lstm-seq1-state1 and reduced_precision", "--report-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1, done.stdout + done.stderr  # the fault's dtype fails count in the exit status
    full, reduced = done.stdout.split("rows (the reduced-precision rule, counted apart):")
    rows = table_rows(full)  # pass, fail of the float32 rows
    assert rows["oracle"][:2] == rows["fault-reduced-precision-ignored"][:2] == ["3", "0"]
    rows = table_rows(reduced)
    assert rows["oracle"][:2] == ["6", "0"] and rows["fault-reduced-precision-ignored"][:2] == ["0", "6"]
    assert "dtype float32, expected bfloat16" in done.stdout
    html = (tmp_path / "index.html").read_text()
    assert 'id="reduced-totals"' in html and 'id="reduced-precision"' in html
