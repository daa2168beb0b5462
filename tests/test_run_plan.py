"""``conformance run`` knows its plan before any adapter process starts, and it is pytest's own choice.

The supervisor decides which tests a ``-k`` expression selects without
collecting them (``conformance.plugin.keyword_filter``), then hands each
adapter process exactly that list (``--plan``). These tests check the
decision against pytest's own collection of the same options.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conformance.adapters import load_adapter
from conformance.fixtures import load_cases
from conformance.plugin import device_rows, keyword_filter, matrix_params
from conformance.verdict.known_differences import known_difference_files, load_known_differences
from tests.commandline import CONSOLE_SCRIPT, one_line_error, snapshot

REPO = Path(__file__).resolve().parent.parent
ADAPTER = "keras-jax"  # many known differences, so that -k "xfail" selects something


def collected_by_pytest(keyword: str, report_dir: Path) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "conformance" / "test_conformance.py"), "--collect-only",
         "-q", "--no-header", "-p", "no:cacheprovider", "--adapter", ADAPTER, "-k", keyword,
         "--report-dir", str(report_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stdout.splitlines() if "::" in line]
    return [line.split("::", 1)[1].partition("[")[2][:-1] for line in lines]


@pytest.fixture(scope="module")
def plan_of():
    cases = load_cases()
    known = load_known_differences(known_difference_files([], builtin=True))
    rows = device_rows("all", [load_adapter(ADAPTER)])
    versions = known.installed_versions()  # version-scoped entries, judged as the planner judges them

    def plan(keyword: str) -> list[str]:
        selects = keyword_filter(keyword)
        return [p.test_id for p in matrix_params(cases, rows, "all")
                if selects(p, known.reason_for(p.test_id, versions) is not None)]

    return plan


@pytest.mark.slow
@pytest.mark.parametrize("keyword", [
    "tutorial", "lstm and not mask", "GRU and Float32 and cuda", "xfail", "not xfail and bidi",
    "conformance and b1t1", "test_adapter and simple_rnn and seq1", "not parametrize and state1 and random",
])
def test_the_plan_is_what_pytest_would_collect(plan_of, keyword, tmp_path):
    planned = plan_of(keyword)
    assert planned, "the expression selects something"
    assert planned == collected_by_pytest(keyword, tmp_path)


def test_no_expression_plans_the_whole_matrix(plan_of):
    cases = load_cases()
    assert len(plan_of("")) == 2 * sum(len(case.dtypes) for case in cases)


def test_a_keyword_with_call_parameters_is_refused_as_pytest_refuses_it(tmp_path, report_dir):
    result = subprocess.run([str(CONSOLE_SCRIPT), "run", "--adapter", "torch", "-k", "tutorial and lstm(x=1)",
                             "--report-dir", str(report_dir)], capture_output=True, text=True, timeout=300)
    line = one_line_error(result)
    assert line.endswith("keyword expressions do not support call parameters")
    assert snapshot(report_dir) == {"index.html": b"previous report"}
