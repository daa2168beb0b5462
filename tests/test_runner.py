"""`conformance run` survives crashing and hanging adapters, and an interrupted run loses nothing."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance.commands import supervisor as runner
from conformance.matrix.case import test_id as make_test_id  # aliased: pytest would collect test_id
from conformance.matrix.cases import build_cases
from conformance.results.lock import LOCK_NAME
from conformance.results.records import VOLATILE_FIELDS
from conformance.verdict.known_differences import parse_known_differences

pytestmark = pytest.mark.slow

CRASHY = ["--adapter", "tests.faulty_adapters:AbortingAdapter",
          "--adapter", "tests.faulty_adapters:HangingAdapter"]
REPO = Path(__file__).resolve().parent.parent
GUARD_S = 3600  # a limit on a subprocess is a guard against a hang, never a measure of speed


def conformance(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "conformance", "run", "--device", "cpu",
                             "--dtype", "float32", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def results(report_dir: Path) -> dict:
    return json.loads((report_dir / "results.json").read_text())


def by_id(document: dict) -> dict[str, dict]:
    return {r["test_id"]: r for r in document["results"]}


@pytest.fixture(scope="module")
def crashy_run(tmp_path_factory) -> tuple[int, Path]:
    report_dir = tmp_path_factory.mktemp("crashy")
    # 20 s, not less: a restarted adapter's next case must not time out on a loaded machine.
    process = conformance(*CRASHY, "-k", "tutorial and seq0", "--case-timeout", "20",
                          "--report-dir", str(report_dir))
    process.communicate(timeout=GUARD_S)
    return process.returncode, report_dir


def test_an_aborting_adapter_becomes_an_error_with_its_stderr_and_the_run_goes_on(crashy_run):
    code, report_dir = crashy_run
    records = [r for r in results(report_dir)["results"] if r["adapter"] == "crash-abort"]
    errors = [r for r in records if r["status"] == "error"]
    assert {r["cell"] for r in errors} == {"lstm"} and len(errors) == 2
    assert all("SIGABRT" in r["message"] for r in errors)
    # What the dying process wrote: faulthandler's report, down to the adapter line that aborted.
    assert all("Fatal Python error: Aborted" in r["stderr"] for r in errors)
    assert all(re.search(r'File ".*faulty_adapters\.py", line \d+ in run', r["stderr"]) for r in errors)
    # Each error holds its own process's stderr, not the previous crash's too.
    assert all(r["stderr"].count("Fatal Python error") == 1 for r in errors)
    assert {r["status"] for r in records if r["cell"] != "lstm"} == {"pass"}
    assert code == 1


def test_a_hanging_adapter_is_killed_at_the_case_timeout_and_the_run_goes_on(crashy_run):
    _, report_dir = crashy_run
    records = [r for r in results(report_dir)["results"] if r["adapter"] == "crash-hang"]
    errors = [r for r in records if r["status"] == "error"]
    assert {r["cell"] for r in errors} == {"gru"} and len(errors) == 2
    assert all("per-case timeout of 20 s" in r["message"] for r in errors)
    assert {r["status"] for r in records if r["cell"] != "gru"} == {"pass"}


def test_a_crash_the_known_differences_list_explains_is_a_known_error(tmp_path):
    case = next(c for c in build_cases() if c.cell == "lstm")
    crashed, other = (make_test_id(case.id, "crash-abort", "cpu", dtype) for dtype in ("float32", "float64"))
    group = runner.new_group("crash-abort", [crashed, other], tmp_path)
    known = parse_known_differences(f"{crashed}  # aborts on this case\n")
    for current in (crashed, other):
        group.current = current
        runner.record_lost_test(group, {case.id: case}, {"known": known}, "killed by signal SIGABRT")
    records = {r.test_id: r for r in runner.group_records(group)}
    assert (records[crashed].status, records[crashed].known, records[crashed].outcome) == (
        "error", "aborts on this case", "known")
    assert (records[other].known, records[other].outcome) == (None, "error")


def test_a_crashy_run_still_writes_all_three_files(crashy_run):
    _, report_dir = crashy_run
    assert results(report_dir)["complete"] is True
    assert (report_dir / "junit.xml").read_text().count("<error") == 4
    assert "crash-abort" in (report_dir / "index.html").read_text()


def test_an_interrupted_run_reports_what_finished_marked_incomplete(tmp_path):
    process = conformance("--adapter", "tests.faulty_adapters:HangingAdapter", "-k", "tutorial",
                          "--case-timeout", "600", "--report-dir", str(tmp_path))
    stream = tmp_path / "streams" / "tests.faulty_adapters_HangingAdapter.jsonl"
    deadline = time.monotonic() + GUARD_S  # waits for the event (a result passed), however slow the machine
    while time.monotonic() < deadline and '"status": "pass"' not in (stream.read_text() if stream.exists() else ""):
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=GUARD_S)
    document = results(tmp_path)
    assert process.returncode == 130
    assert document["complete"] is False
    assert any(r["status"] == "pass" for r in document["results"])
    assert "INCOMPLETE" in (tmp_path / "index.html").read_text().upper()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != LOCK_NAME]
    assert not leftovers, "no temporary files left"


def comparable(document: dict) -> dict:
    return {test_id: {k: v for k, v in record.items() if k not in VOLATILE_FIELDS}
            for test_id, record in by_id(document).items()}


def test_two_runs_give_identical_results_apart_from_timings(tmp_path):
    documents = []
    for n in range(2):
        process = conformance("--adapter", "tests.oracle_adapters:OracleAdapter", "-k", "tutorial or mask",
                              "--report-dir", str(tmp_path / str(n)))
        process.communicate(timeout=GUARD_S)
        assert process.returncode == 0
        documents.append(results(tmp_path / str(n)))
    assert comparable(documents[0]) == comparable(documents[1])


def test_an_adapter_that_breaks_the_harness_still_leaves_an_error_per_test(tmp_path):
    process = conformance("--adapter", "tests.faulty_adapters:RaisingSupportsAdapter", "-k", "tutorial",
                          "--report-dir", str(tmp_path))
    process.communicate(timeout=GUARD_S)
    records = results(tmp_path)["results"]
    assert process.returncode == 1
    assert len(records) == 12 and {r["status"] for r in records} == {"error"}
    assert all("KeyError" in r["message"] for r in records)


@pytest.mark.parametrize("flag, seen", [([], False), (["--reduced-precision-defaults"], True)])
def test_the_reduced_precision_mode_reaches_the_adapter_process_only_when_asked(tmp_path, flag, seen):
    process = conformance("--adapter", "tests.oracle_adapters:Tf32ProbeAdapter", "-k", "tutorial and lstm",
                          "--report-dir", str(tmp_path), *flag)
    process.communicate(timeout=GUARD_S)
    assert {r["run_info"]["tf32_seen"] for r in results(tmp_path)["results"]} == {seen}


def _group_with_stderr(tmp_path: Path, earlier: bytes) -> runner.GroupRun:
    group = runner.GroupRun("torch", [], tmp_path / "s.jsonl", tmp_path / "g.json", tmp_path / "torch.stderr",
                            tmp_path / "plan.json")
    group.stderr_path.write_bytes(earlier)
    group.stderr_offset = len(earlier)  # as start() records it before the restarted process writes
    return group


def test_an_error_keeps_only_the_stderr_of_the_process_that_died(tmp_path):
    group = _group_with_stderr(tmp_path, b"Fatal Python error: Aborted (the first crash)\n")
    with open(group.stderr_path, "ab") as stream:
        stream.write(b"Fatal Python error: Segmentation fault (the second)\n")
    assert runner.process_stderr(group) == "Fatal Python error: Segmentation fault (the second)\n"


def test_a_long_stderr_keeps_its_first_lines_and_its_last(tmp_path):
    group = _group_with_stderr(tmp_path, b"")
    body = b"Fatal Python error: Aborted\n" + b"x" * 100_000 + b"\nFile adapter.py, line 3 in run\n"
    group.stderr_path.write_bytes(body)
    kept = runner.process_stderr(group)
    assert kept.startswith("Fatal Python error: Aborted") and kept.endswith("line 3 in run\n")
    assert f"[... {len(body) - runner.STDERR_HEAD - runner.STDERR_TAIL} bytes of stderr omitted ...]" in kept
