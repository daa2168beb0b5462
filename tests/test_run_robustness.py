"""A run accounts for everything it was asked to do, whatever the adapter or the user does.

Each test runs the installed ``conformance`` script (or plain pytest with the
plugin) on the hostile adapters of ``tests/hostile_adapters.py`` and checks
the files a user gets: one record per planned result, a status for each that
says what happened, and exit statuses that say whether the run was clean.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance.commands.supervisor import INTERRUPTED
from conformance.fixtures import load_cases
from conformance.plugin import SUPERVISOR_VARIABLE
from tests.commandline import CONSOLE_SCRIPT
from tests.hostile_adapters import SOAK_STATUS, SlowToLoadAdapter, soak_behaviour

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
CONFORMANCE = str(CONSOLE_SCRIPT)
ENV = dict(os.environ, PYTHONPATH=str(REPO))
TUTORIAL = ["--device", "cpu", "--dtype", "float32", "-k", "tutorial"]  # 12 tests per adapter


GUARD_S = 3600  # a limit on a subprocess is a guard against a hang, never a measure of speed


def conformance_run(report_dir: Path, *args: str, timeout: float = GUARD_S) -> subprocess.CompletedProcess:
    return subprocess.run([CONFORMANCE, "run", "--report-dir", str(report_dir), *args], env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def start_run(report_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([CONFORMANCE, "run", "--report-dir", str(report_dir), *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def strict_json(path: Path) -> dict:
    """The file as JSON proper: NaN or Infinity tokens (which Python would accept) are refused."""
    def refuse(token):
        raise ValueError(f"{path}: non-standard JSON token {token}")
    return json.loads(path.read_text(), parse_constant=refuse)


def planned_equals_recorded(document: dict) -> dict[str, dict]:
    ids = [r["test_id"] for r in document["results"]]
    assert len(ids) == len(set(ids)) == document["planned"], "one record per planned result"
    return {r["test_id"]: r for r in document["results"]}


def wait_for_started(stream_dir: Path, timeout: float = GUARD_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any('"started"' in p.read_text() for p in stream_dir.glob("*.jsonl")):
            return
        time.sleep(0.2)
    raise AssertionError("no test started")


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("adapter, status", [("ExitZeroAdapter", 0), ("ExitOneAdapter", 1)])
def test_an_adapter_process_exiting_mid_run_costs_only_the_test_it_was_running(tmp_path, adapter, status):
    result = conformance_run(tmp_path, "--adapter", f"tests.hostile_adapters:{adapter}", *TUTORIAL)
    document = strict_json(tmp_path / "results.json")
    records = planned_equals_recorded(document)
    assert document["planned"] == 12 and document["complete"] is True
    lstm = [r for r in records.values() if r["cell"] == "lstm"]
    assert len(lstm) == 4
    assert {r["message"] for r in lstm} == {f"the adapter process exited with status {status} during this test"}
    assert {r["status"] for r in records.values() if r["cell"] != "lstm"} == {"pass"}
    assert result.returncode == 1


def test_a_supervisor_that_gives_up_says_so_for_every_result_it_did_not_produce(tmp_path):
    result = conformance_run(tmp_path, "--adapter", "tests.hostile_adapters:AlwaysAbortingAdapter",
                             "--max-restarts", "2", *TUTORIAL)
    document = strict_json(tmp_path / "results.json")
    records = planned_equals_recorded(document)
    crashed = [r for r in records.values() if r["produced"]]
    given_up = [r for r in records.values() if not r["produced"]]
    assert len(crashed) == 3, "the first process and two restarts, one crash each"
    assert all("SIGABRT" in r["message"] for r in crashed)
    assert len(given_up) == 9 and {r["status"] for r in given_up} == {"error"}
    assert {r["message"] for r in given_up} == {
        "not run: the supervisor gave up after 2 restarts of the adapter process "
        "(the last one killed by signal SIGABRT)"}
    assert document["complete"] is False and document["produced"] == 3
    assert "3 of 12 planned results produced" in result.stdout
    assert "3 of 12 planned results produced" in (tmp_path / "index.html").read_text()
    assert result.returncode == 1


def test_an_adapter_process_that_hangs_while_it_loads_is_killed_and_its_plan_accounted_for(tmp_path):
    result = conformance_run(tmp_path, "--adapter", "tests.hostile_adapters:HangingAtStartAdapter",
                             "--startup-timeout", "3", *TUTORIAL)
    document = strict_json(tmp_path / "results.json")
    records = planned_equals_recorded(document)
    assert document["planned"] == 12 and document["produced"] == 0 and document["complete"] is False
    assert all(r["message"].startswith("not run: the adapter process was killed at the startup timeout "
                                       "of 3 s before reaching this test") for r in records.values())
    assert result.returncode == 1


def test_loading_a_framework_is_not_held_to_the_per_case_timeout(tmp_path):
    """12 s to load, 6 s allowed per case (a tutorial case takes a tenth of that on a machine ten
    times slower than usual): the load is the startup's, and every case runs."""
    assert SlowToLoadAdapter.LOAD_SECONDS == 2 * 6
    result = conformance_run(tmp_path, "--adapter", "tests.hostile_adapters:SlowToLoadAdapter",
                             "--case-timeout", "6", *TUTORIAL)
    records = planned_equals_recorded(strict_json(tmp_path / "results.json"))
    assert {r["status"] for r in records.values()} == {"pass"}, result.stdout
    assert result.returncode == 0


def test_each_crash_keeps_the_stderr_its_own_test_wrote_and_only_that(tmp_path):
    conformance_run(tmp_path, "--adapter", "tests.hostile_adapters:AlwaysAbortingAdapter",
                    "--max-restarts", "2", *TUTORIAL)
    crashed = [r for r in strict_json(tmp_path / "results.json")["results"] if r["produced"]]
    for record in crashed:
        said = [line for line in record["stderr"].splitlines() if line.startswith("hostile adapter:")]
        assert said == [f"hostile adapter: about to abort on {record['case_id']}"]
        assert "Fatal Python error: Aborted" in record["stderr"]


def test_non_finite_outputs_are_fails_that_name_the_tensor_and_the_first_bad_index(tmp_path):
    result = conformance_run(tmp_path, "--adapter", "tests.hostile_adapters:NanAdapter", *TUTORIAL)
    document = strict_json(tmp_path / "results.json")
    records = planned_equals_recorded(document)
    assert document["planned"] == 12
    gru = [r for r in records.values() if r["cell"] == "gru"]
    lstm = [r for r in records.values() if r["cell"] == "lstm"]
    assert {r["status"] for r in gru + lstm} == {"fail"}
    assert all("not finite (first nan at" in r["message"] for r in gru)
    assert all("not finite (first inf at" in r["message"] for r in lstm)
    named = {r["message"].split(":")[0] for r in lstm}
    assert named <= {"c", "h", "output"} and named
    assert result.returncode == 1
    assert "first nan at" in (tmp_path / "index.html").read_text()


def test_a_second_run_into_a_busy_report_dir_is_refused_and_touches_nothing(tmp_path):
    first = start_run(tmp_path, "--adapter", "tests.faulty_adapters:HangingAdapter", "--case-timeout", "600",
                      *TUTORIAL)
    try:
        wait_for_started(tmp_path / "streams")
        before = {p: p.read_bytes() for p in (tmp_path / "streams").iterdir()}
        second = conformance_run(tmp_path, "--adapter", "tests.oracle_adapters:OracleAdapter", *TUTORIAL)
        assert second.returncode == 2
        assert second.stderr.strip().startswith("conformance: error: report dir")
        assert "in use by another run" in second.stderr and len(second.stderr.strip().splitlines()) == 1
        assert all(p.read_bytes().startswith(data) for p, data in before.items())
        assert not (tmp_path / "results.json").exists()
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=GUARD_S)


def test_any_number_of_interrupts_leave_a_whole_incomplete_report(tmp_path):
    run = start_run(tmp_path, "--adapter", "tests.faulty_adapters:HangingAdapter", "--case-timeout", "600",
                    *TUTORIAL)
    wait_for_started(tmp_path / "streams")
    for _ in range(3):
        run.send_signal(signal.SIGINT)
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    stdout, _ = run.communicate(timeout=GUARD_S)
    assert run.returncode == 130
    document = strict_json(tmp_path / "results.json")
    records = planned_equals_recorded(document)
    assert document["complete"] is False and document["planned"] == 12
    assert any(r["status"] == "pass" for r in records.values())
    unreached = [r for r in records.values() if not r["produced"]]
    assert unreached and {(r["status"], r["message"]) for r in unreached} == {("not_run", INTERRUPTED)}
    assert document["counts"]["not_run"] == len(unreached) and document["counts"]["error"] == 0
    assert f"of the other {len(unreached)}, {len(unreached)} not run (the run was stopped before them)" in stdout
    assert "0 unexpected (fail, error)" in stdout
    assert "INCOMPLETE" in (tmp_path / "index.html").read_text().upper()
    junit = (tmp_path / "junit.xml").read_text()
    assert junit.count("<testcase") == 12 and junit.count('type="not run"') == len(unreached)


def test_a_killed_supervisor_leaves_no_adapter_process_behind(tmp_path):
    run = start_run(tmp_path, "--adapter", "tests.faulty_adapters:HangingAdapter", "--case-timeout", "600",
                    *TUTORIAL)
    wait_for_started(tmp_path / "streams")
    children = children_of(run.pid)
    assert children, "the adapter process runs"
    run.kill()
    run.communicate(timeout=GUARD_S)
    deadline = time.monotonic() + 600  # a bound, not a measure: the loop ends when they are gone
    while time.monotonic() < deadline and any(map(alive, children)):
        time.sleep(0.2)
    assert not any(map(alive, children))


@pytest.mark.parametrize("flag", ["--case-timeout", "--startup-timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_a_timeout_that_is_not_a_finite_positive_number_is_refused(tmp_path, flag, value):
    result = conformance_run(tmp_path / "reports", flag, value, *TUTORIAL)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"conformance: error: {flag} {float(value):g}: "
                                     "expected a finite number of seconds > 0")
    assert not (tmp_path / "reports").exists()


def plain_pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in ENV.items() if k != SUPERVISOR_VARIABLE}
    return subprocess.run([sys.executable, "-m", "pytest", str(REPO / "conformance" / "test_conformance.py"),
                           "-p", "no:cacheprovider", "-q", "--adapter", "tests.oracle_adapters:OracleAdapter",
                           "--device", "cpu", "--dtype", "float32", *args],
                          cwd=cwd, env=environment, capture_output=True, text=True, timeout=GUARD_S)


def test_plain_pytest_writes_a_place_of_its_own_and_never_beside_a_runs_report(tmp_path):
    result = plain_pytest(tmp_path, "-k", "tutorial and lstm")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(strict_json(tmp_path / "reports" / "pytest" / "results.json")["results"]) == 4
    run_report = tmp_path / "run-report"
    run_report.mkdir()
    (run_report / "index.html").write_text("a conformance run's report")
    (run_report / "results.json").write_text("its results")
    refused = plain_pytest(tmp_path, "-k", "tutorial and lstm", "--report-dir", str(run_report))
    assert refused.returncode == 2
    assert "holds a conformance report (index.html) of another run" in refused.stdout + refused.stderr
    assert (run_report / "results.json").read_text() == "its results"


def test_a_pytest_session_stopped_early_still_records_every_collected_test(tmp_path):
    result = plain_pytest(tmp_path, "-k", "tutorial", "-x", "--adapter", "tests.hostile_adapters:NanAdapter")
    assert result.returncode == 1
    document = strict_json(tmp_path / "reports" / "pytest" / "results.json")
    records = planned_equals_recorded(document)
    assert document["planned"] == 24 and document["complete"] is False
    unreached = [r for r in records.values() if not r["produced"]]
    assert unreached and {r["status"] for r in unreached} == {"not_run"}
    assert document["counts"]["not_run"] == len(unreached) and document["counts"]["error"] == 0
    assert all(r["message"].startswith("not run: the pytest session ended before this test") for r in unreached)


def test_a_soak_run_of_the_whole_matrix_ends_with_every_planned_result_right(tmp_path):
    """The whole matrix through an adapter that at random (seeded by the test id) returns NaN or a
    wrong shape, raises, aborts, exits with 0 or 1, or hangs past the case timeout. The case
    timeout (30 s) is far above what any right case takes on a machine ten times slower than
    usual; the subprocess's limit is only a guard against a run that never ends."""
    result = conformance_run(tmp_path, "--adapter", "tests.hostile_adapters:SoakAdapter", "--device", "cpu",
                             "--case-timeout", "30", "--max-restarts", "1000", timeout=GUARD_S)
    document = strict_json(tmp_path / "results.json")
    records = planned_equals_recorded(document)
    assert document["planned"] == sum(len(case.dtypes) for case in load_cases()) and document["complete"] is True
    wrong = {test_id: (record["status"], soak_behaviour(test_id)) for test_id, record in records.items()
             if record["status"] != SOAK_STATUS[soak_behaviour(test_id)]}
    assert wrong == {}
    behaviours = {soak_behaviour(test_id) for test_id in records}
    assert behaviours == set(SOAK_STATUS), "every misbehaviour happened at least once"
    assert result.returncode == 1


@pytest.mark.parametrize("make_odd", [
    lambda d: (d / "junit.xml").mkdir(),
    lambda d: (d / "index.html").mkdir(),
    lambda d: (d / "streams").write_text("a file where the streams directory goes"),
], ids=["junit.xml is a directory", "index.html is a directory", "streams is a file"])
def test_an_output_path_that_cannot_be_written_is_refused_before_anything_is(tmp_path, make_odd):
    (tmp_path / "results.json").write_text("the previous run's results")
    make_odd(tmp_path)
    result = conformance_run(tmp_path, "--adapter", "tests.oracle_adapters:OracleAdapter", *TUTORIAL)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("conformance: error: ")
    assert (tmp_path / "results.json").read_text() == "the previous run's results"


def test_a_report_rendered_into_a_runs_dir_replaces_all_three_files_so_they_describe_one_run(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    conformance_run(first, "--adapter", "tests.oracle_adapters:OracleAdapter", *TUTORIAL)
    conformance_run(second, "--adapter", "tests.hostile_adapters:NanAdapter", *TUTORIAL[:-1], "tutorial and gru")
    rendered = subprocess.run([CONFORMANCE, "report", str(second / "results.json"), "-o", str(first)], env=ENV,
                              capture_output=True, text=True, timeout=GUARD_S)
    assert rendered.returncode == 0, rendered.stderr
    document = strict_json(first / "results.json")
    assert document["results"] == strict_json(second / "results.json")["results"]
    assert (first / "junit.xml").read_text().count("<testcase") == len(document["results"]) == 4
    assert "hostile-nan" in (first / "index.html").read_text()
