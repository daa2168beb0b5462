"""The default plan of the adapters that compile per structure: a covering design, judged by sensitivity.

``conformance run`` without ``--full`` (and without ``-k``) runs those adapters on
the covering plan (``conformance.matrix.covering``): every factor value and every
pair of factor values of the matrix, chosen from the fixtures, not by hand. The
plan is only as good as what it still catches, so every fault the suite injects
must fail on the right tensor within it, as on the full matrix.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conformance.matrix.covering import covered_by, covering_plan, factors, mask_pattern
from conformance.verdict.check import check_case
from tests.commandline import CONSOLE_SCRIPT
from tests.faulty_adapters import FAULTS
from tests.fixture_cases import fixture_cases, fixtures_covering_plan
from tests.test_sensitivity import failing_tensor

CASES = fixture_cases()
BY_ID = {case.id: case for case in CASES}
PLAN = fixtures_covering_plan()
REPO = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(REPO))


def test_the_plan_holds_every_factor_value_and_every_pair_of_values_of_the_matrix():
    wanted = set().union(*(covered_by(case, dtype) for case in CASES for dtype in case.dtypes))
    held = set().union(*(covered_by(BY_ID[case_id], dtype) for case_id, dtype in PLAN.pairs))
    assert wanted == held


def test_every_family_cell_and_flag_combination_and_dtype_is_in_the_plan():
    planned = [factors(BY_ID[case_id], dtype) for case_id, dtype in PLAN.pairs]
    for name in ("option", "cell_flags", "dtype", "mask_source", "composite", "scheme", "stateful"):
        every = {factors(case, dtype)[name] for case in CASES for dtype in case.dtypes}
        assert {f[name] for f in planned} == every, name


def test_the_plan_and_what_it_leaves_out_are_the_whole_matrix_once():
    every = [(case.id, dtype) for case in CASES for dtype in case.dtypes]
    assert sorted(PLAN.pairs + PLAN.left_out) == sorted(every)
    assert not set(PLAN.pairs) & set(PLAN.left_out)


def test_the_plan_is_a_small_part_of_the_matrix_and_the_same_each_time():
    assert len(PLAN.pairs) * 5 < len(PLAN.pairs) + len(PLAN.left_out)
    assert covering_plan(CASES) == PLAN


@pytest.mark.parametrize(("rows", "pattern"), [
    (None, "none"),
    ([[1, 1, 1], [1, 1, 0]], "right_padded"),  # every row a prefix of real steps
    ([[1, 0, 1], [1, 1, 1]], "holes"),  # a masked step before a real one
    ([[0, 1, 1], [1, 1, 1]], "holes"),
    ([[1, 1, 0], [0, 0, 0]], "empty_row"),  # a row with no real step at all
])
def test_a_mask_pattern_is_read_from_the_mask_itself(rows, pattern):
    assert mask_pattern(None if rows is None else np.array(rows, dtype=bool)) == pattern


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_the_covering_plan_catches_every_injected_fault_on_the_right_tensor(fault):
    adapter = fault()
    outcomes = [check_case(adapter, BY_ID[case_id].for_dtype(dtype), "cpu") for case_id, dtype in PLAN.pairs]
    failures = [o for o in outcomes if o.status == "fail"]
    assert "error" not in {o.status for o in outcomes}
    assert failures, f"the covering plan misses {fault.fault!r}"
    assert fault.points_at in {failing_tensor(o) for o in failures}


# --- through the installed script ------------------------------------------------------------

COMPILING = "tests.oracle_adapters:CompilingOracleAdapter"
EAGER = "tests.oracle_adapters:OracleAdapter"


def conformance_run(report_dir: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    done = subprocess.run([str(CONSOLE_SCRIPT), "run", "--report-dir", str(report_dir), "--device", "cpu",
                           "--adapter", COMPILING, "--adapter", EAGER, *args],
                          env=ENV, capture_output=True, text=True, timeout=600)
    return done, json.loads((report_dir / "results.json").read_text())


def by_adapter(document: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in document["results"]:
        counts[record["adapter"]] = counts.get(record["adapter"], 0) + 1
    return counts


@pytest.mark.slow
def test_a_default_run_puts_only_the_compiling_adapter_on_the_covering_plan_and_says_so(tmp_path):
    done, document = conformance_run(tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    total = len(PLAN.pairs) + len(PLAN.left_out)
    assert by_adapter(document) == {"compiling-oracle": len(PLAN.pairs), "oracle": total}
    covering = document["selection"]["covering"]
    assert covering["adapters"] == ["compiling-oracle"] and covering["pairs"] == len(PLAN.pairs)
    assert covering["left_to_full"] == [f"{case_id}:{dtype}" for case_id, dtype in PLAN.left_out]
    assert f"{len(PLAN.pairs)} of {total} case x dtype pairs" in done.stdout
    assert "conformance run --full" in done.stdout
    assert 'id="covering-plan"' in (tmp_path / "index.html").read_text()


@pytest.mark.slow
def test_full_and_a_keyword_run_every_selected_case_on_every_adapter(tmp_path):
    done, document = conformance_run(tmp_path / "full", "--full", "--dtype", "float64")
    assert done.returncode == 0, done.stderr[-2000:]
    float64_pairs = sum("float64" in case.dtypes for case in CASES)
    assert by_adapter(document) == {"compiling-oracle": float64_pairs, "oracle": float64_pairs}
    assert "covering" not in document["selection"] and "plan:" not in done.stdout
    done, document = conformance_run(tmp_path / "k", "-k", "mask_holes")
    assert done.returncode == 0, done.stderr[-2000:]
    counts = by_adapter(document)
    assert counts["compiling-oracle"] == counts["oracle"] > 0 and "covering" not in document["selection"]


def test_merged_parts_name_every_adapter_the_covering_plan_narrowed():
    from conformance.results.records import merged_selection, run_selection

    covering = dict(PLAN.summary(), adapters=["onnx-keras"])
    parts = [run_selection(keyword=None, device="all", dtype="all", adapters=["onnx-keras"], covering=covering),
             run_selection(keyword=None, device="all", dtype="all", adapters=["torch"]),
             run_selection(keyword=None, device="all", dtype="all", adapters=["flax"],
                           covering=dict(covering, adapters=["flax"]))]
    merged = merged_selection([{"selection": part} for part in parts])
    assert merged["adapters"] == ["flax", "onnx-keras", "torch"]
    assert merged["covering"]["adapters"] == ["flax", "onnx-keras"]
    other_plan = dict(covering, pairs=covering["pairs"] - 1)
    parts[2]["covering"] = other_plan
    assert merged_selection([{"selection": part} for part in parts]) is None


def test_the_docs_state_the_plans_size_computed_as_the_run_computes_it():
    """The docs' explanation page states the size through the site's generator (docs/hooks.py),
    which plans from the fixtures as ``conformance run`` does: the same numbers as this plan."""
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    total = len(PLAN.pairs) + len(PLAN.left_out)
    assert hooks.covering_plan_size() == f"{len(PLAN.pairs)} of the {total} pairs"
    assert "<!-- generated: covering-plan -->" in (REPO / "docs" / "explanation" / "plans.md").read_text()
