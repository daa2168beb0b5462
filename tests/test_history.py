"""The history report (case x run) and ``conformance history``, on real runs through the console script.

Three "releases" of one runtime named ``oracle`` are run on the GRU seq1 b3t5 float32 cases
(70 results each): the oracle itself; a release with a classic porting bug (the GRU recurrent
bias dropped, ``tests.faulty_adapters``), which makes some results fail; and a release whose
answers move by 5e-6, inside the tolerance (atol 1e-5) but far above float32 rounding, for
some cases: drift. A fourth run of another adapter (``caching-oracle``) lines up by case.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conformance.matrix.case import Case
from conformance.report import render_history
from conformance.results.history import HistoryRun, build_history
from conformance.results.reading import load_any
from tests.commandline import CONSOLE_SCRIPT, one_line_error, snapshot
from tests.faulty_adapters import GruRecurrentBiasDropped
from tests.oracle_adapters import OracleAdapter

ROOT = Path(__file__).resolve().parent.parent
CASES = "gru and seq1 and b3t5 and float32"
DRIFT = 5e-6  # inside atol 1e-5, some 100x above the oracle's float32 rounding (~3e-8)
DRIFTING = "initial_state"  # the cases whose answers move in the drifting release


class OracleWithRecurrentBiasDropped(GruRecurrentBiasDropped):
    """The same runtime (same name, so the same test ids) in a release that dropped the GRU recurrent bias."""

    name = "oracle"


class OracleDrifting(OracleAdapter):
    """The same runtime in a release whose answers move by DRIFT on the DRIFTING cases: still passing."""

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        outputs = super().run(case, device)
        return [out + np.asarray(DRIFT, out.dtype) for out in outputs] if DRIFTING in case.id else outputs


def conformance(*arguments: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONSOLE_SCRIPT), *map(str, arguments)], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Each release's report dir, made by ``conformance run``."""
    base = tmp_path_factory.mktemp("releases")
    adapters = {"v1": "tests.oracle_adapters:OracleAdapter", "v2-bug": f"{__name__}:OracleWithRecurrentBiasDropped",
                "v2-drift": f"{__name__}:OracleDrifting", "caching": "tests.oracle_adapters:CachingOracleAdapter"}
    for label, adapter in adapters.items():
        done = conformance("run", "--adapter", adapter, "-k", CASES, "--report-dir", base / label, cwd=base)
        assert done.returncode in (0, 1), done.stderr
    return {label: base / label for label in adapters}


@pytest.fixture(scope="module")
def bug_history(runs, tmp_path_factory) -> tuple[dict, subprocess.CompletedProcess]:
    output = tmp_path_factory.mktemp("bug") / "history"
    done = conformance("history", runs["v1"], runs["v2-bug"], "--label", "oracle 1", "--label", "oracle 2",
                       "-o", output, cwd=output.parent)
    assert done.returncode == 0, done.stderr
    return read(output / "history.json"), done


def statuses(report_dir: Path) -> dict[str, str]:
    return {r["test_id"]: r["status"] for r in read(report_dir / "results.json")["results"]}


def test_a_result_that_fails_from_a_release_on_changes_there(runs, bug_history) -> None:
    history, _ = bug_history
    after = statuses(runs["v2-bug"])
    failing = [row for row in history["rows"] if after[row["key"]] == "fail"]
    assert failing, "the planted bug made nothing fail"
    for row in failing:
        assert row["first_change"] == "oracle 2"
        assert row["changes"] == [{"column": 1, "label": "oracle 2", "kind": "status", "detail": "pass -> fail"}]


def test_a_result_that_behaves_the_same_has_no_changes(runs, bug_history) -> None:
    history, _ = bug_history
    after = statuses(runs["v2-bug"])
    unchanged = [row for row in history["rows"] if after[row["key"]] == "pass"]
    assert unchanged, "the planted bug made everything fail"
    assert all(row["changes"] == [] and row["first_change"] is None for row in unchanged)
    # a GRU without biases has no recurrent bias to drop
    assert "gru-seq1-state0-per_gate-b3t5-no_bias[oracle-cpu-float32]" in {row["key"] for row in unchanged}


def test_the_history_has_a_row_per_result_and_a_column_per_run(runs, bug_history) -> None:
    history, done = bug_history
    first = read(runs["v1"] / "results.json")
    assert [row["key"] for row in history["rows"]] == [r["test_id"] for r in first["results"]]
    assert [run["label"] for run in history["runs"]] == ["oracle 1", "oracle 2"]
    assert history["runs"][1]["counts"] == read(runs["v2-bug"] / "results.json")["counts"]
    assert history["runs"][0]["versions"] == first["adapters"]["oracle"]["versions"]
    changed = sum(bool(row["changes"]) for row in history["rows"])
    assert history["summary"]["by_column"]["oracle 2"] == {"status": changed, "drift": 0}
    assert done.stdout.strip().endswith(f"history.html (2 runs, {len(history['rows'])} rows, {changed} changed)")


def test_an_error_that_moves_far_inside_the_tolerance_is_drift(runs) -> None:
    history = build_history([HistoryRun("oracle 1", load_any([runs["v1"]])),
                             HistoryRun("oracle 2", load_any([runs["v2-drift"]]))]).to_dict()
    assert set(statuses(runs["v2-drift"]).values()) == {"pass"}
    drifted = {row["key"] for row in history["rows"] if row["changes"]}
    assert drifted == {row["key"] for row in history["rows"] if DRIFTING in row["case_id"]} != set()
    for row in history["rows"]:
        if row["key"] in drifted:
            assert [(c["kind"], c["label"]) for c in row["changes"]] == [("drift", "oracle 2")]
            assert "max abs" in row["changes"][0]["detail"]
    assert history["summary"]["drift"] == len(drifted) and history["summary"]["status_changes"] == 0


def test_a_run_without_results_is_a_column_saying_why_and_no_change_point(runs) -> None:
    history = build_history([HistoryRun("oracle 1", load_any([runs["v1"]])),
                             HistoryRun("oracle 2", None, note="install failed: no such version"),
                             HistoryRun("oracle 3", load_any([runs["v2-bug"]]))]).to_dict()
    assert history["runs"][1]["note"] == "install failed: no such version" and history["runs"][1]["counts"] is None
    assert all(row["cells"][1] is None for row in history["rows"])
    assert {c["column"] for row in history["rows"] for c in row["changes"]} == {2}
    assert history["summary"]["by_column"]["oracle 2"] == {"status": 0, "drift": 0}


def test_by_case_lines_up_two_adapters(runs, tmp_path) -> None:
    done = conformance("history", runs["v1"], runs["caching"], "--by-case", "-o", tmp_path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    history = read(tmp_path / "history.json")
    assert [run["adapter"] for run in history["runs"]] == ["oracle", "caching-oracle"]
    assert len(history["rows"]) == len(read(runs["v1"] / "results.json")["results"])
    for row in history["rows"]:
        assert row["key"] == f"{row['case_id']}[cpu-float32]"
        assert [cell["adapter"] for cell in row["cells"]] == ["oracle", "caching-oracle"]
    by_test_id = build_history([HistoryRun("a", load_any([runs["v1"]])), HistoryRun("b", load_any([runs["caching"]]))])
    assert len(by_test_id.rows) == 2 * len(history["rows"])


def test_default_labels_name_the_adapter_and_its_versions(runs, tmp_path) -> None:
    done = conformance("history", runs["v1"], runs["v1"] / "results.json", "-o", tmp_path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    versions = read(runs["v1"] / "results.json")["adapters"]["oracle"]["versions"]
    label = "oracle " + " ".join(f"{package} {version}" for package, version in versions.items())
    assert [run["label"] for run in read(tmp_path / "history.json")["runs"]] == [label, f"{label} #2"]


def test_the_page_escapes_hostile_text_and_draws_nan(runs, tmp_path) -> None:
    # hand-made: no adapter here returns NaN with markup in its message
    document = copy.deepcopy(load_any([runs["v1"]]))
    record = document["results"][0]
    record.update(status="fail", max_abs="nan", message="<script>alert('x')</script> & more")
    record["tensors"][0]["max_abs"] = "nan"
    history = build_history([HistoryRun("<b>before</b>", load_any([runs["v1"]])), HistoryRun("after", document)])
    page = render_history(history, tmp_path).read_text(encoding="utf-8")
    assert "<script>alert(" not in page and "&lt;script&gt;alert(" in page and "<b>before" not in page
    row = read(tmp_path / "history.json")["rows"][0]
    assert row["cells"][1]["max_abs"] == "inf" and row["changes"][0]["detail"] == "pass -> fail"


def test_a_history_of_runs_without_results_still_renders(tmp_path) -> None:
    path = render_history(build_history([HistoryRun("only", None, note="install failed: x")]), tmp_path)
    assert "install failed: x" in path.read_text(encoding="utf-8")
    assert read(tmp_path / "history.json")["rows"] == []
    assert render_history(build_history([]), tmp_path / "none").is_file()


@pytest.mark.parametrize("arguments, says", [
    (["{bad}"], "not a conformance results file"),
    (["{v1}", "{v1}", "--label", "one"], "1 --label values for 2 RESULTS"),
    (["{v1}", "--drift-factor", "1"], "--drift-factor 1: expected a finite number > 1"),
    (["{v1}", "--drift-factor", "nan"], "--drift-factor nan"),
])
def test_bad_input_is_one_line_and_writes_nothing(runs, arguments, says, tmp_path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "history.html").write_text("earlier")
    (tmp_path / "bad.json").write_text(json.dumps({"schema": "something else"}))
    before = snapshot(tmp_path)
    given = [a.format(bad=tmp_path / "bad.json", v1=runs["v1"]) for a in arguments]
    line = one_line_error(conformance("history", *given, "-o", output, cwd=tmp_path))
    assert says in line
    assert snapshot(tmp_path) == before
