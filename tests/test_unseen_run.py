"""A certification no adapter can tune to (issue 30, items 1 and 2).

The adapter is handed the question alone, in a process that never holds an answer:
one that looks for the answer (``case.expected``, or any ``Case`` in its process's
memory) finds none. Cases drawn at run time (``--unseen N --seed S``) are what an
adapter that reads the public fixtures cannot pass. Each test runs the installed
``conformance`` script as a user does.
"""

from __future__ import annotations

import json

import pytest

from conformance.fixtures import load_cases
from conformance.matrix.unseen import is_unseen
from conformance.results.records import validate_results
from conformance.verdict.check import check_case
from tests.commandline import one_line_error
from tests.oracle_adapters import OracleAdapter
from tests.test_run_isolation import conformance_run, hostile

pytestmark = pytest.mark.slow

TUTORIAL_AND_UNSEEN = ["--device", "cpu", "--dtype", "float32", "-k", "tutorial or unseen"]


def results(report_dir) -> list[dict]:
    document = json.loads((report_dir / "results.json").read_text())
    validate_results(document, str(report_dir))
    return document["results"]


def test_an_adapter_looking_for_the_answer_finds_none_in_its_process(tmp_path):
    ran = conformance_run(tmp_path, *hostile("AnswerCopyingAdapter"), *TUTORIAL_AND_UNSEEN)
    records = results(tmp_path)
    assert ran.returncode == 1, ran.stderr
    assert records and {r["status"] for r in records} == {"error"}
    assert all("LookupError: no answer to copy" in r["message"] for r in records)


def test_check_case_hands_the_adapter_the_question_alone_and_judges_against_the_answer():
    """In-process asking (bench, search, devcheck): ``case.expected`` is None in what the adapter gets
    (its memory is the judge's there: a worker process is what keeps the answer out of reach)."""
    handed = []

    class Recording(OracleAdapter):
        def run(self, case, device):
            handed.append(case.expected)
            return super().run(case, device)

    case = next(c for c in load_cases() if c.id.endswith("-tutorial")).for_dtype("float32")
    assert check_case(Recording(), case, "cpu").status == "pass"
    assert handed == [None] and case.expected is not None


def test_an_adapter_reading_the_fixture_files_passes_the_fixed_cases_and_fails_every_unseen_one(tmp_path):
    ran = conformance_run(tmp_path, *hostile("FixtureReadingAdapter"), *TUTORIAL_AND_UNSEEN,
                          "--unseen", "24", "--seed", "3")
    records = results(tmp_path)
    fixed = [r for r in records if not is_unseen(r["case_id"])]
    unseen = [r for r in records if is_unseen(r["case_id"])]
    assert len(fixed) == 12 and {r["status"] for r in fixed} == {"pass"}
    assert unseen and {r["status"] for r in unseen} == {"error"}, ran.stdout
    assert all("FileNotFoundError" in r["message"] for r in unseen)
    assert ran.returncode == 1
    assert f"12 fixed cases, {len({r['case_id'] for r in unseen})} unseen (seed 3)" in ran.stdout


def test_the_same_seed_draws_the_same_cases_judged_by_the_same_rules_and_recorded(tmp_path):
    runs = [conformance_run(tmp_path / name, *hostile("OracleAdapter"), "--device", "cpu", "-k", "unseen",
                            "--unseen", "12", "--seed", "5") for name in ("first", "second")]
    first, second = (results(tmp_path / name) for name in ("first", "second"))
    assert [r["test_id"] for r in first] == [r["test_id"] for r in second]
    assert all(is_unseen(r["case_id"]) and "unseen5-" in r["case_id"] for r in first)
    assert {r["status"] for r in first} <= {"pass", "unsupported"} and runs[0].returncode == 0, runs[0].stdout
    document = json.loads((tmp_path / "first" / "results.json").read_text())
    assert document["selection"]["unseen"] == {"count": 12, "seed": 5}
    assert "unseen cases, drawn at run time (seed 5" in runs[0].stdout
    page = (tmp_path / "first" / "index.html").read_text()
    assert "0 fixed cases, 12 unseen (seed 5)" in page and "--unseen 12 --seed 5" in page


def test_without_a_seed_the_run_draws_one_and_records_it(tmp_path):
    ran = conformance_run(tmp_path, *hostile("OracleAdapter"), "--device", "cpu", "-k", "unseen", "--unseen", "2")
    seed = json.loads((tmp_path / "results.json").read_text())["selection"]["unseen"]["seed"]
    assert ran.returncode == 0 and f"(seed {seed})" in ran.stdout
    assert all(f"-unseen{seed}-" in r["case_id"] for r in results(tmp_path))


@pytest.mark.parametrize("args", [["--unseen", "-1"], ["--unseen", "2.5"], ["--unseen", "3", "--seed", "x"],
                                  ["--unseen", "3", "--seed", "-4"], ["--seed", "4"]])
def test_a_bad_count_or_seed_is_one_line_and_nothing_is_written(tmp_path, args):
    ran = conformance_run(tmp_path / "report", *hostile("OracleAdapter"), *args)
    one_line_error(ran)
    assert not (tmp_path / "report").exists()
