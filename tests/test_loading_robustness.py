"""Bad input before anything is written: adapters that do not load, and outputs that cannot be written.

Every kind of bad ``--adapter module:Class`` ends ``conformance run``, ``conformance bench`` and a
plain pytest run with one line naming the module, the name and what is wrong, and exit 2. Every
output path that cannot be written ends ``report``, ``compare``, ``fixtures build`` and ``bench``
with one line and exit 2 before any file is replaced. Commands run as a user runs them: the
installed console script, in a subprocess, from a scratch directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.adapters import UnknownAdapterError, load_adapter
from conformance.files import OutputPathError, check_output_dir, check_output_file
from conformance.results.records import results_document
from tests.commandline import CONSOLE_SCRIPT, one_line_error, snapshot

REPO = Path(__file__).resolve().parent.parent
TEST_MODULE = REPO / "conformance" / "test_conformance.py"
BAD = "tests.data.bad_adapters"
SYNTAX_ERROR_MODULE = "broken_syntax"  # written into the scratch directory by the `scratch` fixture
AS_ROOT = os.geteuid() == 0  # root may write anywhere: permission bits prove nothing then

# --adapter value -> what its one line must contain
BAD_ADAPTERS = {
    "raises-at-import": (f"{BAD}.raises_at_import:Adapter",
                         f"module '{BAD}.raises_at_import' does not import: RuntimeError: licence server unreachable"),
    "syntax-error": (f"{SYNTAX_ERROR_MODULE}:Adapter",
                     f"module '{SYNTAX_ERROR_MODULE}' does not import: SyntaxError: "),
    "exits-at-import": (f"{BAD}.exits_at_import:Adapter",
                        f"module '{BAD}.exits_at_import' does not import: SystemExit: 3"),
    "no-such-module": ("no_such_pkg.mod:Cls",
                       "module 'no_such_pkg.mod' does not import: ModuleNotFoundError: No module named 'no_such_pkg'"),
    "no-such-class": (f"{BAD}.kinds:NoSuchAdapter", f"module '{BAD}.kinds' has no class 'NoSuchAdapter'"),
    "not-a-class": (f"{BAD}.kinds:NOT_A_CLASS", f"'NOT_A_CLASS' in module '{BAD}.kinds' is not a class (it is a int)"),
    "init-raises": (f"{BAD}.kinds:RaisingInitAdapter",
                    "RaisingInitAdapter() raised RuntimeError: no device found on this machine"),
    "no-members": (f"{BAD}.kinds:MemberlessAdapter",
                   "lacks name (a non-empty str), available(), devices(), supports(), run()"),
    "empty-name-and-run-not-callable": (f"{BAD}.kinds:NamelessAdapter", "lacks name (a non-empty str), run()"),
}
KINDS = sorted(BAD_ADAPTERS)


@pytest.fixture
def scratch(tmp_path) -> Path:
    """The working directory of a command: holds the SyntaxError module, so no linter sees it in the tree."""
    (tmp_path / f"{SYNTAX_ERROR_MODULE}.py").write_text("class Adapter(:\n    pass\n")
    return tmp_path


def command(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess:
    """``args`` run in ``cwd`` with the checkout and ``cwd`` importable (as a vendor's own modules are)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(cwd)])}
    result = subprocess.run([*map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


def conformance(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess:
    """The installed console script, as a user types it."""
    assert CONSOLE_SCRIPT.exists(), f"no console script at {CONSOLE_SCRIPT}: pip install -e ."
    return command(cwd, CONSOLE_SCRIPT, *args)


def write_results(path: Path) -> Path:
    """A valid results.json with no results: input whose loading cannot be what fails."""
    document = results_document([], complete=True, created="2024-01-01T00:00:00+00:00", fixtures_sha256="0" * 64,
                                machine={}, adapters={})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def previous_report(scratch) -> Path:
    """A report dir holding an earlier run's files."""
    directory = scratch / "reports"
    write_results(directory / "results.json")
    (directory / "index.html").write_text("previous report")
    return directory


# --- adapters that do not load ------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_loading_a_bad_adapter_raises_one_line_naming_what_is_wrong(kind, scratch, monkeypatch):
    monkeypatch.syspath_prepend(str(scratch))
    path, expected = BAD_ADAPTERS[kind]
    with pytest.raises(UnknownAdapterError) as raised:
        load_adapter(path)
    assert len(str(raised.value).splitlines()) == 1
    assert str(raised.value).startswith(f"adapter '{path}'") and expected in str(raised.value)


@pytest.mark.parametrize("kind", KINDS)
def test_run_with_a_bad_adapter_is_one_line_and_leaves_the_report_dir_as_it_was(kind, scratch, previous_report):
    path, expected = BAD_ADAPTERS[kind]
    before = snapshot(previous_report)
    line = one_line_error(conformance(scratch, "run", "--adapter", path, "--report-dir", previous_report))
    assert f"adapter '{path}'" in line and expected in line
    assert snapshot(previous_report) == before


def test_run_with_a_bad_adapter_creates_no_report_dir(scratch):
    path, _ = BAD_ADAPTERS["init-raises"]
    one_line_error(conformance(scratch, "run", "--adapter", path, "--report-dir", scratch / "R"))
    assert not (scratch / "R").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_bench_with_a_bad_adapter_is_one_line_and_writes_nothing(kind, scratch):
    path, expected = BAD_ADAPTERS[kind]
    line = one_line_error(conformance(scratch, "bench", "--adapter", path, "--output", scratch / "R" / "bench.json"))
    assert f"adapter '{path}'" in line and expected in line
    assert not (scratch / "R").exists()


def test_bench_with_an_unknown_adapter_leaves_an_existing_benchmark_byte_identical(scratch):
    output = scratch / "reports" / "benchmark.json"
    output.parent.mkdir()
    output.write_text('{"earlier": "figures"}')
    line = one_line_error(conformance(scratch, "bench", "--quick", "--adapter", "nosuch", "--output", output))
    assert "unknown adapter 'nosuch'" in line
    assert snapshot(scratch / "reports") == {"benchmark.json": b'{"earlier": "figures"}'}


@pytest.mark.parametrize("kind", KINDS)
def test_plain_pytest_with_a_bad_adapter_exits_2_with_one_line_and_leaves_the_report_dir(kind, scratch,
                                                                                        previous_report):
    path, expected = BAD_ADAPTERS[kind]
    before = snapshot(previous_report)
    done = command(scratch, sys.executable, "-m", "pytest", TEST_MODULE, "--adapter", path, "-p", "no:cacheprovider",
                   "--report-dir", previous_report, "-q")
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert any(f"adapter '{path}'" in line and expected in line for line in output.splitlines()), output
    assert "ERROR collecting" not in output and "During handling" not in output, output  # no code frames
    assert snapshot(previous_report) == before


# --- output paths -------------------------------------------------------------------------------


def test_an_output_file_may_replace_a_regular_file_or_be_created_with_its_parents(tmp_path):
    (tmp_path / "old.json").write_text("old")
    check_output_file(tmp_path / "old.json")
    check_output_file(tmp_path / "new" / "deeper" / "benchmark.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]  # nothing created


def test_an_output_file_that_is_a_directory_is_refused(tmp_path):
    with pytest.raises(OutputPathError, match=f"output file {tmp_path} is not writable: it is a directory"):
        check_output_file(tmp_path)


def test_an_output_file_below_a_regular_file_is_refused_naming_that_file(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OutputPathError, match=f"is not writable: {blocker} is a file, not a directory"):
        check_output_file(blocker / "sub" / "x.html")


def test_an_output_dir_may_exist_or_be_created_and_nothing_is_created_by_checking(tmp_path):
    check_output_dir(tmp_path)
    check_output_dir(tmp_path / "new" / "reports")
    assert list(tmp_path.iterdir()) == []


def test_an_output_dir_that_is_a_regular_file_is_refused(tmp_path):
    (tmp_path / "reports").write_text("")
    with pytest.raises(OutputPathError, match="is not writable: it is a file, not a directory"):
        check_output_dir(tmp_path / "reports")
    with pytest.raises(OutputPathError, match=f"is not writable: {tmp_path / 'reports'} is a file"):
        check_output_dir(tmp_path / "reports" / "sub")


@pytest.mark.skipif(AS_ROOT, reason="root may write into a read-only directory")
def test_an_output_below_a_read_only_directory_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(OutputPathError, match=f"no permission to write in {locked}"):
            check_output_dir(locked / "reports")
        with pytest.raises(OutputPathError, match=f"no permission to write in {locked}"):
            check_output_file(locked / "benchmark.json")
    finally:
        locked.chmod(0o755)


def test_report_into_a_regular_file_is_one_line_and_leaves_it(scratch):
    results = write_results(scratch / "run" / "results.json")
    (scratch / "taken").write_text("mine")
    line = one_line_error(conformance(scratch, "report", results, "-o", scratch / "taken"))
    assert f"output directory {scratch / 'taken'} is not writable: it is a file, not a directory" in line
    assert (scratch / "taken").read_text() == "mine"


def test_a_merging_report_checks_all_three_files_before_replacing_results_json(scratch, previous_report):
    first, second = write_results(scratch / "a" / "results.json"), write_results(scratch / "b" / "results.json")
    (previous_report / "junit.xml").mkdir()
    before = snapshot(previous_report)
    line = one_line_error(conformance(scratch, "report", first, second, "-o", previous_report))
    assert f"output file {previous_report / 'junit.xml'} is not writable: it is a directory" in line
    assert snapshot(previous_report) == before


def test_compare_into_a_path_below_a_regular_file_is_one_line(scratch):
    baseline, current = write_results(scratch / "a.json"), write_results(scratch / "b.json")
    (scratch / "FILE").write_text("mine")
    line = one_line_error(conformance(scratch, "compare", baseline, current, "-o", scratch / "FILE" / "x.html"))
    assert f"{scratch / 'FILE'} is a file, not a directory" in line
    assert (scratch / "FILE").read_text() == "mine"


def test_fixtures_build_into_a_regular_file_is_one_line_and_leaves_it(scratch):
    (scratch / "FILE").write_text("mine")
    line = one_line_error(conformance(scratch, "fixtures", "build", "--fixtures-dir", scratch / "FILE"))
    assert f"output directory {scratch / 'FILE'} is not writable: it is a file, not a directory" in line
    assert (scratch / "FILE").read_text() == "mine"


def test_bench_into_a_directory_is_one_line_before_any_measurement(scratch):
    (scratch / "benchmark.json").mkdir()
    done = conformance(scratch, "bench", "--quick", "--adapter", "torch", "--output", scratch / "benchmark.json")
    assert f"output file {scratch / 'benchmark.json'} is not writable: it is a directory" in one_line_error(done)
    assert "bench: torch" not in done.stderr  # no measurement started
    assert list((scratch / "benchmark.json").iterdir()) == []


def test_bench_below_a_regular_file_is_one_line(scratch):
    (scratch / "FILE").write_text("mine")
    done = conformance(scratch, "bench", "--quick", "--adapter", "torch", "--output", scratch / "FILE" / "b.json")
    assert f"{scratch / 'FILE'} is a file, not a directory" in one_line_error(done)
    assert (scratch / "FILE").read_text() == "mine"
