"""The command line: bad input of every kind gets one line and exit 2, and nothing is overwritten."""

import json
import re
import subprocess
import sys

from conformance.adapters import load_adapter
from conformance.adapters.contract import AdapterProtocol
from conformance.commands.cli import main
from tests.commandline import CONSOLE_SCRIPT, one_line_error


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance", *args], capture_output=True, text=True,
                          timeout=300)


def test_an_unknown_adapter_is_one_line(report_dir):
    line = one_line_error(run_cli("run", "--adapter", "tensorflow-lite", "--report-dir", str(report_dir)))
    assert "unknown adapter 'tensorflow-lite'" in line
    assert (report_dir / "index.html").read_text() == "previous report"


def test_an_adapter_path_that_does_not_import_is_one_line(report_dir):
    line = one_line_error(run_cli("run", "--adapter", "no_such_pkg.mod:Cls", "--report-dir", str(report_dir)))
    assert "no_such_pkg.mod" in line


def test_an_object_that_is_no_adapter_is_one_line(report_dir):
    line = one_line_error(run_cli("run", "--adapter", "tests.oracle_adapters:RunlessAdapter",
                                  "--report-dir", str(report_dir)))
    assert line.endswith("adapter 'tests.oracle_adapters:RunlessAdapter' lacks run()")


def test_a_loaded_adapter_has_the_optional_members_it_left_out():
    loaded = load_adapter("tests.oracle_adapters:BareOracleAdapter")
    assert isinstance(loaded.adapter, AdapterProtocol) and loaded.name == "bare-oracle"
    assert loaded.versions() == {} and loaded.last_run_info() == {}
    assert loaded.device_name("cpu") == "cpu"
    assert loaded.bare_forward is None and loaded.export_cache is None


def test_a_bad_k_expression_is_one_line(report_dir):
    line = one_line_error(run_cli("run", "-k", "lstm and (", "--report-dir", str(report_dir)))
    assert "bad -k expression" in line
    assert (report_dir / "index.html").read_text() == "previous report"


def test_an_unwritable_report_dir_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = one_line_error(run_cli("run", "--adapter", "torch", "--report-dir", str(blocker / "sub")))
    assert "not writable" in line


def test_a_bad_option_value_is_one_line():
    assert "--device" in one_line_error(run_cli("run", "--device", "tpu"))


def test_a_foreign_results_file_is_one_line(tmp_path, report_dir):
    foreign = tmp_path / "other.json"
    foreign.write_text(json.dumps({"version": 3, "tests": []}))
    line = one_line_error(run_cli("report", str(foreign), "-o", str(report_dir)))
    assert "not a conformance results file" in line
    assert (report_dir / "index.html").read_text() == "previous report"


def test_compare_with_a_missing_baseline_is_one_line(tmp_path):
    line = one_line_error(run_cli("compare", str(tmp_path / "nope.json"), str(tmp_path / "x.json")))
    assert "no such file" in line


def test_explain_prints_the_output_list(capsys):
    assert main(["explain", "lstm", "--return-sequences", "--return-state"]) == 0
    out = capsys.readouterr().out
    assert "Keras output: a list of 3 tensors" in out
    rows = re.findall(r"^ +(\d) +(\w+) +(\([\d, ]+\))", out, re.M)  # '  0  output  (2, 5, 4)  ...'
    assert rows == [("0", "output", "(2, 5, 4)"), ("1", "h", "(2, 4)"), ("2", "c", "(2, 4)")]


def test_python_dash_m_works_like_the_console_script():
    result = run_cli("--help")
    assert result.returncode == 0 and "fixtures" in result.stdout


def test_a_reader_that_stops_early_gets_no_traceback():
    """``conformance cases | head -1``: the pipe closes under a long output; the command stops quietly."""
    with subprocess.Popen([str(CONSOLE_SCRIPT), "cases"], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        process.stdout.read(200)
        process.stdout.close()
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=120) == 141 and "Traceback" not in stderr, stderr
