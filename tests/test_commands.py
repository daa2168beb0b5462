"""Every command's normal path, run as a user runs it: the installed console script on real files.

Each test runs ``conformance`` in a subprocess and checks its exit status, what it printed and the
files it wrote. What to expect comes from the suite's own data — the fixtures' cases, the adapter
registry, ``LayerSpec`` — never from the output under test. The real runs are shared through
session-scoped fixtures, so each happens once. Bad input of every kind is tests/test_cli.py's.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import itertools
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import pytest

from conformance.adapters import adapter_paths
from conformance.commands.bench import QUICK_KEYWORD
from conformance.commands.cli import build_parser
from conformance.commands.explain import explain
from conformance.fixtures import default_fixtures_dir, load_cases
from conformance.matrix.spec import LayerSpec
from conformance.results.records import test_id as make_test_id  # aliased: pytest would collect test_id
from tests.commandline import CONSOLE_SCRIPT, one_line_error

KEYWORD = "tutorial"  # the cheapest selection that still covers all 12 cell x flag combinations
RUN_ADAPTERS = ("onnx-native", "torch")  # the two cheapest real adapters
# A safety net against a hang, never a measure: `adapters --check` imports every framework (~18 s idle),
# and took over 600 s on this 2-core machine with both cores kept busy by other jobs (issue 29's check).
TIMEOUT_S = 3600


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    """Commands run from here, so a default output path can never land in the checkout."""
    return tmp_path_factory.mktemp("cwd")


def run_process(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=cwd)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result


def conformance(workdir: Path, *args: str | Path) -> subprocess.CompletedProcess:
    """The installed console script, as a user types it."""
    if not CONSOLE_SCRIPT.exists():
        pytest.fail(f"no console script at {CONSOLE_SCRIPT}: install the package (pip install -e .) "
                    "into the interpreter running the tests")
    return run_process([str(CONSOLE_SCRIPT), *map(str, args)], workdir)


def python_m_conformance(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return run_process([sys.executable, "-m", "conformance", *args], workdir)


def expected_test_ids(adapter: str, keyword: str = KEYWORD, device: str = "cpu") -> set[str]:
    """Every result a run of ``adapter`` selected by ``-k keyword`` on one device must record."""
    return {make_test_id(case.id, adapter, device, dtype)
            for case in load_cases() if keyword in case.id for dtype in case.dtypes}


def expected_case_ids(keyword: str = KEYWORD) -> set[str]:
    return {case.id for case in load_cases() if keyword in case.id}


def result_ids(results_file: Path) -> list[str]:
    return [record["test_id"] for record in json.loads(results_file.read_text("utf-8"))["results"]]


def junit_names(junit_file: Path) -> list[str]:
    return [case.get("name") for case in ElementTree.parse(junit_file).getroot().iter("testcase")]


def file_hashes(directory: Path) -> dict[str, str]:
    return {str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*")) if path.is_file()}


# --- run ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Runs:
    """Real runs laid out as tox leaves them: ``root/<env>/results.json``, one env per adapter."""

    root: Path
    completed: dict[str, subprocess.CompletedProcess]

    def dir(self, adapter: str) -> Path:
        return self.root / adapter


@pytest.fixture(scope="session")
def runs(tmp_path_factory, workdir) -> Runs:
    root = tmp_path_factory.mktemp("reports")
    completed = {adapter: conformance(workdir, "run", "--adapter", adapter, "-k", KEYWORD, "--device", "cpu",
                                      "--report-dir", root / adapter)
                 for adapter in RUN_ADAPTERS}
    return Runs(root, completed)


def summary_row(stdout: str, adapter: str) -> list[int]:
    """The counts in the summary table's row for ``adapter``."""
    [row] = [line.split() for line in stdout.splitlines() if line.split()[:1] == [adapter]]
    return [int(number) for number in row[1:]]


@pytest.mark.parametrize("adapter", RUN_ADAPTERS)
def test_run_of_a_real_adapter_exits_0(runs, adapter):
    assert runs.completed[adapter].returncode == 0, runs.completed[adapter].stdout


@pytest.mark.parametrize("adapter", RUN_ADAPTERS)
def test_run_summary_counts_every_selected_result_once(runs, adapter):
    assert sum(summary_row(runs.completed[adapter].stdout, adapter)) == len(expected_test_ids(adapter))


def test_run_names_the_reports_it_wrote(runs):
    stdout = runs.completed["onnx-native"].stdout
    assert f"reports: {runs.dir('onnx-native') / 'index.html'}, results.json, junit.xml" in stdout


def test_run_records_exactly_the_selected_results(runs):
    ids = result_ids(runs.dir("onnx-native") / "results.json")
    assert sorted(ids) == sorted(expected_test_ids("onnx-native"))


def test_run_writes_a_junit_testcase_per_result(runs):
    names = junit_names(runs.dir("onnx-native") / "junit.xml")
    assert sorted(names) == sorted(expected_test_ids("onnx-native"))


def test_run_writes_an_html_report_naming_every_selected_case(runs):
    html = (runs.dir("onnx-native") / "index.html").read_text("utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert [case for case in sorted(expected_case_ids()) if case not in html] == []


# --- report ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def merged(runs, workdir) -> subprocess.CompletedProcess:
    """``conformance report DIR -o DIR``, exactly as the tox ``report`` environment runs it."""
    return conformance(workdir, "report", runs.root, "-o", runs.root)


def test_report_of_a_directory_exits_0_and_counts_its_environments(merged, runs):
    union = set().union(*(expected_test_ids(a) for a in RUN_ADAPTERS))
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout.strip() == (f"report: {runs.root / 'index.html'} ({len(RUN_ADAPTERS)} results file(s), "
                                     f"{len(union)} results)")


def test_report_of_a_directory_merges_every_environment(merged, runs):
    document = json.loads((runs.root / "results.json").read_text("utf-8"))
    assert sorted(r["test_id"] for r in document["results"]) == sorted(
        set().union(*(expected_test_ids(a) for a in RUN_ADAPTERS)))
    assert document["complete"] is True
    assert sorted(document["adapters"]) == sorted(RUN_ADAPTERS)


def test_report_of_a_directory_writes_junit_for_the_union(merged, runs):
    assert sorted(junit_names(runs.root / "junit.xml")) == sorted(
        set().union(*(expected_test_ids(a) for a in RUN_ADAPTERS)))


def test_report_of_a_directory_writes_one_html_report_for_all_adapters(merged, runs):
    html = (runs.root / "index.html").read_text("utf-8")
    assert all(adapter in html for adapter in RUN_ADAPTERS)


# --- compare -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def second_torch_run(tmp_path_factory, workdir) -> Path:
    """The same selection again: equal verdicts, different timings."""
    report_dir = tmp_path_factory.mktemp("again")
    done = conformance(workdir, "run", "--adapter", "torch", "-k", KEYWORD, "--device", "cpu",
                       "--report-dir", report_dir)
    assert done.returncode == 0, done.stdout
    return report_dir / "results.json"


@pytest.fixture(scope="session")
def planted(runs, tmp_path_factory) -> tuple[Path, str]:
    """The torch run with its first passing result turned into a fail: (results file, its test id)."""
    document = json.loads((runs.dir("torch") / "results.json").read_text("utf-8"))
    current = copy.deepcopy(document)
    record = next(r for r in current["results"] if r["status"] == "pass")
    record.update(status="fail", message="planted: values differ beyond the tolerance", max_abs=0.05)
    record["tensors"][0]["max_abs"] = 0.05
    path = tmp_path_factory.mktemp("planted") / "results.json"
    path.write_text(json.dumps(current), "utf-8")
    return path, record["test_id"]


def test_compare_of_two_equal_runs_exits_0_and_says_no_regressions(runs, second_torch_run, workdir, tmp_path):
    done = conformance(workdir, "compare", runs.dir("torch") / "results.json", second_torch_run,
                       "-o", tmp_path / "regression.html")
    assert done.returncode == 0, done.stdout
    assert "no regressions" in done.stdout
    assert (tmp_path / "regression.html").read_text("utf-8").startswith("<!DOCTYPE html>")


def test_compare_of_a_results_file_with_itself_exits_0(runs, workdir, tmp_path):
    results = runs.dir("onnx-native") / "results.json"  # errors and known differences included
    done = conformance(workdir, "compare", results, results, "-o", tmp_path / "regression.html")
    assert done.returncode == 0 and "no regressions" in done.stdout, done.stdout


def test_compare_of_a_planted_regression_exits_1_and_names_the_case(runs, planted, workdir, tmp_path):
    current, regressed_id = planted
    done = conformance(workdir, "compare", runs.dir("torch") / "results.json", current,
                       "-o", tmp_path / "regression.html")
    assert done.returncode == 1, done.stdout
    assert done.stdout.startswith("REGRESSED: 1 newly failing")
    assert f"{regressed_id}  pass -> fail" in done.stdout
    assert regressed_id in (tmp_path / "regression.html").read_text("utf-8")


def test_compare_says_where_it_wrote_the_report(runs, planted, workdir, tmp_path):
    done = conformance(workdir, "compare", runs.dir("torch") / "results.json", planted[0],
                       "-o", tmp_path / "regression.html")
    assert done.stdout.splitlines()[-1] == f"regression report: {tmp_path / 'regression.html'}"


def test_compare_with_a_growth_factor_of_one_is_bad_input(runs, workdir, tmp_path):
    results = runs.dir("torch") / "results.json"
    line = one_line_error(conformance(workdir, "compare", results, results, "--growth-factor", "1",
                                      "-o", tmp_path / "regression.html"))
    assert "--growth-factor 1: expected a finite number > 1" in line
    assert not (tmp_path / "regression.html").exists()


def test_compare_refuses_to_write_its_report_over_a_compared_file(runs, planted, workdir):
    baseline = runs.dir("torch") / "results.json"
    before = baseline.read_bytes()
    line = one_line_error(conformance(workdir, "compare", baseline, planted[0], "-o", baseline))
    assert "would overwrite a results file" in line
    assert baseline.read_bytes() == before


# --- explain -----------------------------------------------------------------------------------

FLAGS = list(itertools.product(("simple_rnn", "lstm", "gru"), (False, True), (False, True)))
EXPLAIN_SIZES = {name: p.default for name, p in inspect.signature(explain).parameters.items()
                 if name in ("batch", "timesteps", "units")}


def keras_output_rows(stdout: str) -> list[list[str]]:
    """The rows (#, name, shape, meaning) of the 'Keras output' table: up to the first blank line."""
    lines = stdout.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("Keras output:")) + 2  # skip the header
    end = lines.index("", start)
    return [re.split(r"\s{2,}", line.strip()) for line in lines[start:end]]


def expected_rows(spec: LayerSpec) -> list[tuple[str, str, str]]:
    """(#, name, shape) of the Keras list: the output has timesteps only with return_sequences."""
    batch, timesteps, units = EXPLAIN_SIZES["batch"], EXPLAIN_SIZES["timesteps"], EXPLAIN_SIZES["units"]
    output = (batch, timesteps, units) if spec.return_sequences else (batch, units)
    shapes = [output] + [(batch, units)] * (len(spec.output_names()) - 1)
    return [(str(n), name, str(shape)) for n, (name, shape) in enumerate(zip(spec.output_names(), shapes))]


@pytest.mark.parametrize(("cell", "return_sequences", "return_state"), FLAGS,
                         ids=[f"{c}-seq{int(s)}-state{int(t)}" for c, s, t in FLAGS])
def test_explain_prints_the_keras_output_list_with_its_shapes(workdir, cell, return_sequences, return_state):
    spec = LayerSpec(cell, EXPLAIN_SIZES["units"], return_sequences=return_sequences, return_state=return_state)
    flags = ["--return-sequences"] * return_sequences + ["--return-state"] * return_state
    done = conformance(workdir, "explain", cell, *flags)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(spec.describe())
    assert [tuple(row[:3]) for row in keras_output_rows(done.stdout)] == expected_rows(spec)


# --- adapters ----------------------------------------------------------------------------------


NVIDIA_DEVICES = sorted(str(p) for p in Path("/dev").glob("nvidia[0-9]*"))


@pytest.fixture(scope="module")
def adapters_checked(workdir) -> subprocess.CompletedProcess:
    """One ``conformance adapters --check`` for the tests below: it imports every framework (~18 s)."""
    return conformance(workdir, "adapters", "--check")


def test_adapters_lists_every_adapter_from_package_metadata_without_importing_a_framework(workdir):
    """The default listing: what each adapter requires and the installed versions, as importlib.metadata
    has them, in a process that imports no framework."""
    from importlib import metadata

    code = ("import sys\nfrom conformance.commands.cli import main\ntry:\n    main(['adapters'])\n"
            "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print('imported:', sorted(m for m in FRAMEWORKS if m in sys.modules))\n")
    frameworks = ("torch", "tensorflow", "jax", "keras", "tf_keras", "flax", "onnx", "onnxruntime", "openvino",
                  "tract", "tf2onnx")
    done = subprocess.run([sys.executable, "-c", f"FRAMEWORKS = {frameworks!r}\n" + code], capture_output=True,
                          text=True, timeout=120, cwd=workdir)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "imported: []"
    listed = {line.split()[0]: line for line in lines[:-1]}
    assert sorted(listed) == sorted(adapter_paths())
    assert f"torch {metadata.version('torch')}" in listed["torch"] and "installed" in listed["torch"]
    assert "devices: cpu,cuda  full plan" in listed["torch"]
    assert "covering plan by default" in listed["onnx-native"]


def test_adapters_check_asks_every_registered_adapter_for_its_availability(adapters_checked):
    done = adapters_checked
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0]: line.split()[1] for line in done.stdout.splitlines() if line.strip()}
    assert sorted(listed) == sorted(adapter_paths())
    assert set(listed.values()) <= {"available", "unavailable"}


@pytest.mark.skipif(bool(NVIDIA_DEVICES), reason=f"this machine has a GPU ({NVIDIA_DEVICES[:1]})")
def test_adapters_check_lists_only_the_cpu_on_a_machine_without_a_gpu(adapters_checked):
    """No framework sees a GPU here, so no adapter may claim one (``devices()`` through the probe)."""
    available = [line.split() for line in adapters_checked.stdout.splitlines() if line.split()[1:2] == ["available"]]
    if not available:
        pytest.skip("no adapter is available here")
    assert {row[2] for row in available} == {"devices:"}
    assert {row[0]: row[3] for row in available} == {row[0]: "cpu" for row in available}


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_fixtures(tmp_path_factory, workdir) -> tuple[Path, subprocess.CompletedProcess]:
    directory = tmp_path_factory.mktemp("fixtures")
    return directory, conformance(workdir, "fixtures", "build", "--fixtures-dir", directory)


@pytest.mark.slow
def test_fixtures_build_exits_0_and_counts_the_cases(built_fixtures):
    directory, done = built_fixtures
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"built {len(load_cases())} cases in {directory}"


@pytest.mark.slow
def test_fixtures_build_reproduces_the_checked_in_fixtures_byte_for_byte(built_fixtures):
    directory, _ = built_fixtures
    assert file_hashes(directory) == file_hashes(default_fixtures_dir()), \
        "the checked-in fixtures are not what the generator builds: run `conformance fixtures build` and commit"


@pytest.mark.slow
def test_fixtures_verify_accepts_a_fresh_build(built_fixtures, workdir):
    directory, _ = built_fixtures
    done = conformance(workdir, "fixtures", "verify", "--fixtures-dir", directory)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"verified {len(load_cases())} cases")


# --- bench -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory, workdir) -> tuple[Path, subprocess.CompletedProcess]:
    output = tmp_path_factory.mktemp("bench") / "benchmark.json"
    return output, conformance(workdir, "bench", "--quick", "--adapter", "torch", "--output", output)


def test_bench_quick_exits_0_and_says_where_it_wrote(quick_bench):
    output, done = quick_bench
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"benchmark: {output}"


def test_bench_quick_times_the_quick_selection_of_the_matrix(quick_bench):
    figures = json.loads(quick_bench[0].read_text("utf-8"))
    torch = figures["adapters"]["torch"]
    assert figures["quick"] is True
    assert torch["exit_status"] == 0
    assert torch["results"] == len(expected_test_ids("torch", QUICK_KEYWORD))
    assert torch["matrix_wall_s"] > 0 and torch["peak_rss_mib"] > 0
    assert figures["total_matrix_wall_s"] == torch["matrix_wall_s"]


def test_bench_quick_measures_the_harness_overhead(quick_bench):
    overhead = json.loads(quick_bench[0].read_text("utf-8"))["adapters"]["torch"]["overhead"]
    assert overhead["measured"] is True
    assert overhead["cases"] == len(overhead["per_case"]) > 0
    assert all(row["run_s"] > 0 and row["bare_s"] > 0 for row in overhead["per_case"])


# --- usage -------------------------------------------------------------------------------------


def test_help_lists_every_command(workdir):
    done = conformance(workdir, "--help")
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert done.returncode == 0
    assert [name for name in commands if name not in done.stdout] == []


def test_python_dash_m_without_a_command_is_one_line_exit_2(workdir):
    assert "required: command" in one_line_error(python_m_conformance(workdir))


def test_python_dash_m_with_an_unknown_command_is_one_line_exit_2(workdir):
    assert "invalid choice: 'frobnicate'" in one_line_error(python_m_conformance(workdir, "frobnicate"))
