"""Correct adapters don't cry wolf: three runs, and no result flips.

Runs real frameworks (skipped with the reason when they are not installed):
torch and Keras-on-torch, the two fastest complete adapters, through
`conformance run`, three times, on every case of the covering plan
(``conformance.matrix.covering``: every factor value and pair of values of the
matrix, chosen from the fixtures), in every dtype. Every fail or error must be
a documented known difference, and the three results files must agree on
everything but timings. The whole matrix on every adapter is CI's full run
(``.ci/run``), which fails on any unexpected result.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.matrix.cases import build_cases
from conformance.matrix.covering import covering_plan
from conformance.results.records import VOLATILE_FIELDS

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
ADAPTERS = ("torch", "keras-torch")
CASES = {case.id: case for case in build_cases()}
PLANNED = sorted({case_id for case_id, _ in covering_plan(CASES.values()).pairs})
# Every case of the covering plan, by id ("id[" in a test id: the case itself, not the longer
# ids it begins, such as its -mask_holes family).
SELECTION = ["-k", " or ".join(f"{case_id}[" for case_id in PLANNED)]


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory) -> list[dict]:
    pytest.importorskip("torch")
    pytest.importorskip("keras")
    documents = []
    for n in range(3):
        report_dir = tmp_path_factory.mktemp(f"run{n}")
        args = [a for name in ADAPTERS for a in ("--adapter", name)]
        done = subprocess.run([sys.executable, "-m", "conformance", "run", *args, *SELECTION, "--device", "cpu",
                               "--report-dir", str(report_dir)], cwd=REPO, capture_output=True, text=True,
                              timeout=1200)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        documents.append(json.loads((report_dir / "results.json").read_text()))
    return documents


def stable_view(document: dict) -> dict:
    return {r["test_id"]: {k: v for k, v in r.items() if k not in VOLATILE_FIELDS}
            for r in document["results"]}


def test_every_fail_or_error_is_a_documented_difference(three_runs):
    for document in three_runs:
        unexplained = [r["test_id"] for r in document["results"]
                       if r["status"] in ("fail", "error") and not r.get("known")]
        assert not unexplained, unexplained[:5]


def test_every_planned_case_ran_on_every_adapter_in_every_dtype(three_runs):
    pairs = {(case_id, dtype) for case_id in PLANNED for dtype in CASES[case_id].dtypes}
    for name in ADAPTERS:
        records = [r for r in three_runs[0]["results"] if r["adapter"] == name]
        assert {(r["case_id"], r["dtype"]) for r in records} == pairs, name
        assert {r["device"] for r in records} == {"cpu"}, name
        assert "skipped" not in {r["status"] for r in records}, name


def test_no_result_flips_between_three_runs(three_runs):
    first = stable_view(three_runs[0])
    for other in three_runs[1:]:
        view = stable_view(other)
        assert view.keys() == first.keys()
        flipped = [test_id for test_id in first if view[test_id]["status"] != first[test_id]["status"]]
        assert not flipped, flipped[:5]


def test_three_runs_agree_on_everything_but_timings(three_runs):
    first = stable_view(three_runs[0])
    for other in three_runs[1:]:
        differing = [t for t, record in stable_view(other).items() if record != first[t]]
        assert not differing, differing[:5]
