"""``conformance compare`` you can trust: real runs through the installed console script.

The runs are of the test oracle adapter and of "later releases" of it (below): the
same adapter name, so that their test ids match, each release bringing one bug.
Which results fail comes from the runs themselves, never typed in here. Every run
takes ``-k tutorial`` (12 cases, 24 results) or narrower: a few seconds each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import __version__
from tests.commandline import CONSOLE_SCRIPT, one_line_error, snapshot
from tests.faulty_adapters import LstmStatesAsCThenH
from tests.oracle_adapters import OracleAdapter

REPO = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(REPO))  # so that the adapter processes import tests.*
KEYWORD = "tutorial"
NARROW = "lstm and tutorial"
THIS = "tests.test_compare_command"


class OracleRelease2(LstmStatesAsCThenH):
    """The oracle adapter's "release 2": LSTM's return_state list comes back as [c, h]."""

    name = "oracle"

    def versions(self) -> dict[str, str]:
        return {"oracle": "2.0"}


class OracleRelease3(OracleAdapter):
    """"Release 3": raises on the results release 2 got wrong, so a documented fail becomes an error."""

    name = "oracle"

    def versions(self) -> dict[str, str]:
        return {"oracle": "3.0"}

    def run(self, case, device):
        if case.cell == "lstm" and case.layer.return_state:
            raise RuntimeError("release 3: LSTM return_state is not implemented")
        return super().run(case, device)


def conformance(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess:
    done = subprocess.run([str(CONSOLE_SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=ENV)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def run(directory: Path, adapter: str, keyword: str = KEYWORD, *extra: str | Path) -> Path:
    """One ``conformance run`` into ``directory``; its results.json."""
    conformance(directory.parent, "run", "--adapter", adapter, "-k", keyword, "--device", "cpu",
                "--report-dir", directory, *extra)
    assert (directory / "results.json").exists()
    return directory / "results.json"


def results(path: Path) -> list[dict]:
    return json.loads(path.read_text("utf-8"))["results"]


@pytest.fixture(scope="module")
def area(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("compare")


@pytest.fixture(scope="module")
def baseline(area) -> Path:
    """The oracle itself: every result passes."""
    return run(area / "oracle", "tests.oracle_adapters:OracleAdapter")


@pytest.fixture(scope="module")
def release2(area) -> Path:
    return run(area / "release2", f"{THIS}:OracleRelease2")


@pytest.fixture(scope="module")
def release2_list(area, release2) -> tuple[Path, list[str]]:
    """A known-differences file documenting exactly release 2's failing ids (scoped to release 2 on)."""
    failing = [r["test_id"] for r in results(release2) if r["status"] == "fail"]
    path = area / "release2.txt"
    path.write_text("".join(f"{test}  oracle>=2  # release 2 returns [c, h]\n" for test in failing), "utf-8")
    return path, failing


SCOPED_LIST = """\
lstm-*-state1-*[oracle-*]   oracle<3    # written for release 2 only
lstm-*-state1-*[oracle-*]   oracle>=3   # release 3 raises on LSTM return_state
"""


@pytest.fixture(scope="module")
def release3(area) -> Path:
    """Release 3, run with a list whose first entry is scoped to other versions."""
    (area / "scoped.txt").write_text(SCOPED_LIST, "utf-8")
    return run(area / "release3", f"{THIS}:OracleRelease3", KEYWORD, "--known-differences", area / "scoped.txt")


@pytest.fixture(scope="module")
def narrow(area) -> Path:
    return run(area / "narrow", "tests.oracle_adapters:OracleAdapter", NARROW)


@pytest.fixture(scope="module")
def bare(area) -> Path:
    """Another adapter (another name) giving the oracle's numbers."""
    return run(area / "bare", "tests.oracle_adapters:BareOracleAdapter")


def compare(cwd: Path, *args: str | Path) -> tuple[subprocess.CompletedProcess, dict]:
    """``conformance compare ... -o cwd/regression.html`` and the regression JSON it wrote beside it."""
    done = conformance(cwd, "compare", *args, "-o", cwd / "regression.html")
    assert done.returncode in (0, 1), done.stderr
    return done, json.loads((cwd / "regression.json").read_text("utf-8"))


# --- documented differences are no false alarm ----------------------------------------------------


def test_a_regression_the_lists_document_is_no_regression(baseline, release2, release2_list, tmp_path):
    known, failing = release2_list
    done, report = compare(tmp_path, baseline, release2, "--known-differences", known)
    assert done.returncode == 0, done.stdout
    assert done.stdout.startswith("OK: no regressions")
    assert f"newly documented difference ({len(failing)}):" in done.stdout
    assert [c["test_id"] for c in report["newly_documented"]] == sorted(failing)
    assert report["newly_failing"] == [] and report["regressed"] is False


def test_the_same_pair_without_the_list_regressed_and_names_each_case(baseline, release2, release2_list, tmp_path):
    _, failing = release2_list
    done, report = compare(tmp_path, baseline, release2)
    assert done.returncode == 1, done.stdout
    assert done.stdout.startswith(f"REGRESSED: {len(failing)} newly failing")
    for test in failing:
        assert f"{test}  pass -> fail" in done.stdout
    assert [c["test_id"] for c in report["newly_failing"]] == sorted(failing)


def test_a_documented_fail_that_became_a_documented_error_is_no_regression(release2, release2_list, release3,
                                                                            tmp_path):
    known, failing = release2_list
    done, report = compare(tmp_path, release2, release3, "--known-differences", known)
    assert done.returncode == 0, done.stdout
    assert f"documented difference, status changed ({len(failing)}):" in done.stdout
    assert [(c["test_id"], c["before"], c["after"]) for c in report["still_documented"]] == [
        (test, "fail", "error") for test in sorted(failing)]
    assert f"{failing[0]}  fail (documented) -> error (documented)" in done.stdout


def test_a_scoped_entry_applies_in_a_run_only_at_its_versions(release3):
    document = json.loads(release3.read_text("utf-8"))
    errors = [r for r in document["results"] if r["status"] == "error"]
    assert errors and {r["known"] for r in errors} == {"release 3 raises on LSTM return_state"}
    assert document["counts"]["error"] == 0  # every error is known
    assert document["known_checked"] == ["lstm-*-state1-*[oracle-*]"]  # the pattern, for the entry that applied
    assert document["known_unmatched"] == []


def test_an_entry_naming_a_cause_documents_the_unseen_cases_that_have_it(area, tmp_path):
    """compare has records, not cases: an entry's conditions are judged on the case each unseen id
    names, redrawn from its seed and index."""
    unseen = ("unseen", "--unseen", "12", "--seed", "1")
    before = run(area / "oracle-unseen", "tests.oracle_adapters:OracleAdapter", *unseen)
    after = run(area / "release2-unseen", f"{THIS}:OracleRelease2", *unseen)
    failing = sorted(r["test_id"] for r in results(after) if r["status"] == "fail")
    assert failing and all("-unseen1-" in test for test in failing)
    (tmp_path / "cause.txt").write_text("lstm-*[oracle-*]  return_state  # release 2 returns [c, h]\n", "utf-8")
    done, report = compare(tmp_path, before, after, "--known-differences", tmp_path / "cause.txt")
    assert done.returncode == 0, done.stdout
    assert [c["test_id"] for c in report["newly_documented"]] == failing


# --- only what both runs selected ---------------------------------------------------------------


def test_a_narrowed_run_against_a_wider_one_removes_nothing_and_says_why(baseline, narrow, tmp_path):
    common, wide = len(results(narrow)), len(results(baseline))
    done, report = compare(tmp_path, baseline, narrow)
    assert done.returncode == 0, done.stdout
    assert done.stdout.startswith(f"OK: no regressions in the {common} results both runs hold ({wide} results in "
                                  f"the baseline, {common} in the current run)")
    html = (tmp_path / "regression.html").read_text("utf-8")
    assert f"No regression<span class=\"why\">in the {common} results both runs hold" in html
    assert report["removed"] == [] and report["added"] == []
    assert (report["matched"], report["only_in_baseline"], report["only_in_current"]) == (common, wide - common, 0)
    assert (f"note: the runs selected different cases (-k {KEYWORD!r} vs -k {NARROW!r}): compared the {common} "
            f"results both ran; {wide - common} only in the baseline and 0 only in the current run are not "
            "counted as removed/added") in done.stdout


def test_a_run_records_its_selection_and_the_suite_version(narrow):
    document = json.loads(narrow.read_text("utf-8"))
    assert document["suite_version"] == __version__
    assert document["selection"] == {"keyword": NARROW, "device": "cpu", "dtype": "all", "adapters": ["oracle"]}


def test_a_plain_pytest_run_records_what_its_options_selected(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "conformance/test_conformance.py",
         "--adapter", "tests.oracle_adapters:OracleAdapter", "--device", "cpu", "--dtype", "float32", "-k", NARROW,
         "--report-dir", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=REPO, env=ENV)
    assert done.returncode == 0, done.stdout
    document = json.loads((tmp_path / "results.json").read_text("utf-8"))
    assert document["suite_version"] == __version__
    assert document["selection"] == {"keyword": NARROW, "device": "cpu", "dtype": "float32", "adapters": ["oracle"]}


def test_two_adapters_compared_without_by_case_is_nothing_compared_and_writes_nothing(baseline, bare, tmp_path):
    """Every test id differs (the adapter is in it): 'no regressions' would be about no result at all."""
    done = conformance(tmp_path, "compare", baseline, bare, "-o", tmp_path / "out" / "regression.html")
    assert done.returncode == 2 and done.stdout == "", done.stdout
    assert one_line_error(done) == ("conformance: error: nothing to compare: the runs have no result in common "
                                    "(baseline: oracle; current: bare-oracle); to compare two adapters case by "
                                    "case, add --by-case")
    assert not (tmp_path / "out").exists()


# --- --by-case ----------------------------------------------------------------------------------


def test_by_case_matches_two_adapters_giving_the_same_numbers(baseline, bare, tmp_path):
    done, report = compare(tmp_path, baseline, bare, "--by-case")
    assert done.returncode == 0, done.stdout
    count = len(results(bare))
    assert report["by_case"] is True and report["matched"] == count == len(results(baseline))
    assert (f"note: matched case by case (--by-case, the adapter left out): baseline oracle, current bare-oracle; "
            f"{count} results matched") in done.stdout


def test_by_case_finds_a_planted_difference(baseline, bare, tmp_path):
    document = json.loads(bare.read_text("utf-8"))
    record = next(r for r in document["results"] if r["status"] == "pass")
    record.update(status="fail", message="planted: values differ beyond the tolerance")
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps(document), "utf-8")
    done, report = compare(tmp_path, baseline, planted, "--by-case")
    assert done.returncode == 1, done.stdout
    assert done.stdout.startswith("REGRESSED: 1 newly failing")
    assert f"{record['test_id']}  pass -> fail" in done.stdout
    assert [c["test_id"] for c in report["newly_failing"]] == [record["test_id"]]


def test_by_case_refuses_a_run_of_several_adapters_and_writes_nothing(baseline, bare, tmp_path):
    merged = tmp_path / "both"
    for name, path in (("oracle", baseline), ("bare", bare)):
        (merged / name).mkdir(parents=True)
        shutil.copy(path, merged / name / "results.json")
    out = tmp_path / "out"
    out.mkdir()
    line = one_line_error(conformance(tmp_path, "compare", merged, bare, "--by-case", "-o", out / "regression.html"))
    assert line == f"conformance: error: --by-case needs one adapter per run; {merged} holds bare-oracle, oracle"
    assert snapshot(out) == {}


# --- the regression JSON --------------------------------------------------------------------------


def test_compare_writes_the_regression_json_beside_the_html(baseline, release2, tmp_path):
    done, report = compare(tmp_path, baseline, release2)
    assert done.stdout.splitlines()[-2:] == [f"regression JSON: {tmp_path / 'regression.json'}",
                                             f"regression report: {tmp_path / 'regression.html'}"]
    old, new = (json.loads(p.read_text("utf-8")) for p in (baseline, release2))
    for side, path, document in (("baseline", baseline, old), ("current", release2, new)):
        assert report[side]["path"] == str(path)
        assert report[side]["adapters"] == {"oracle": document["adapters"]["oracle"]["versions"]}
        assert report[side]["suite_version"] == __version__
        assert report[side]["fixtures_sha256"] == document["fixtures_sha256"]
    assert report["current"]["adapters"] == {"oracle": {"oracle": "2.0"}}  # OracleRelease2.versions()
    assert report["by_case"] is False and report["regressed"] is True


def test_json_goes_where_json_says(baseline, tmp_path):
    done = conformance(tmp_path, "compare", baseline, baseline, "-o", tmp_path / "r.html",
                       "--json", tmp_path / "elsewhere" / "r.json")
    assert done.returncode == 0, done.stdout
    assert json.loads((tmp_path / "elsewhere" / "r.json").read_text("utf-8"))["regressed"] is False
    assert not (tmp_path / "r.json").exists()


# --- bad input: one line, exit 2, nothing written -------------------------------------------------


def test_json_onto_a_compared_file_is_refused(baseline, release2, tmp_path):
    before = snapshot(release2.parent)
    line = one_line_error(conformance(tmp_path, "compare", baseline, release2, "-o", tmp_path / "r.html",
                                      "--json", release2))
    assert line == f"conformance: error: --json {release2}: the report would overwrite a results file being compared"
    assert snapshot(release2.parent) == before and not (tmp_path / "r.html").exists()


def test_a_bad_requirement_in_a_list_is_refused(baseline, tmp_path):
    (tmp_path / "bad.txt").write_text("lstm-*[oracle-*]  oracle>>2  # why\n", "utf-8")
    out = tmp_path / "out"
    out.mkdir()
    line = one_line_error(conformance(tmp_path, "compare", baseline, baseline, "--known-differences",
                                      tmp_path / "bad.txt", "-o", out / "r.html"))
    assert line == f"conformance: error: {tmp_path / 'bad.txt'}:1: 'oracle>>2' is not a version requirement"
    assert snapshot(out) == {}
