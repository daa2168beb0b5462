"""`conformance bench --tox` times a tox matrix cold then warm and writes what it measured.

Run through the console script on a small tox project of its own (two envs,
the tutorial cases; one adapter that compiles, one that doesn't), so the
figures come from real tox and real runs; nothing about their size is asserted
(timings are the machine's), only that each one is there and says what it is.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.commandline import CONSOLE_SCRIPT, one_line_error

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent

TOX_INI = """\
[tox]
labels =
    matrix = oracle, onnx-native
[testenv]
skip_install = true
allowlist_externals = {python}
set_env = PYTHONPATH = {repo}
commands = {python} -m conformance run --adapter {{env:ADAPTER}} --device cpu --dtype float32 -k tutorial \\
    --report-dir {{toxinidir}}/reports/{{env_name}}
[testenv:oracle]
set_env =
    {{[testenv]set_env}}
    ADAPTER = tests.oracle_adapters:OracleAdapter
[testenv:onnx-native]
set_env =
    {{[testenv]set_env}}
    ADAPTER = onnx-native
"""


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    pytest.importorskip("tox")
    pytest.importorskip("onnxruntime")
    project = tmp_path_factory.mktemp("project")
    (project / "tox.ini").write_text(TOX_INI.format(repo=REPO, python=sys.executable))
    done = subprocess.run([str(CONSOLE_SCRIPT), "bench", "--tox"], cwd=project, capture_output=True,
                          text=True, timeout=600)
    return done, json.loads((project / "reports" / "benchmark-tox.json").read_text())


def test_both_runs_are_timed_whole_and_per_environment(benchmark):
    done, document = benchmark
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("cold", "warm"):
        run = document[name]
        assert run["tox_exit_status"] == 0 and run["wall_s"] > 0
        assert set(run["envs"]) == {"oracle", "onnx-native"}
        assert all(env["setup_s"] >= 0 and env["command_s"] > 0 and env["success"] for env in run["envs"].values())
        assert run["longest_env"] in run["envs"] and 0 < run["longest_env_share"] <= 1
    assert "cold:" in done.stdout and "warm:" in done.stdout and "benchmark-tox.json" in done.stdout


def test_compilations_are_counted_for_the_adapter_that_compiles_and_not_made_up_for_the_other(benchmark):
    _, document = benchmark
    adapters = document["cold"]["adapters"]
    native, oracle = adapters["onnx-native"], adapters["oracle"]
    assert native["results_run"] > 0 and native["compilations"] > 0
    assert native["compilations_per_result"] == round(native["compilations"] / native["results_run"], 3)
    assert oracle["results_run"] > 0 and oracle["compilations"] is None and oracle["compilations_per_result"] is None
    assert all(a["peak_rss_mib"] > 0 for a in adapters.values()), "conformance run records each group's memory"


def test_bench_tox_without_a_tox_ini_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run([str(CONSOLE_SCRIPT), "bench", "--tox"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2
    assert one_line_error(done) == ("conformance: error: bench --tox runs tox.ini's 'matrix' label: "
                                    f"no tox.ini in {tmp_path}")
    assert not (tmp_path / "reports").exists()


def test_bench_tox_takes_no_adapter_selection(tmp_path):
    done = subprocess.run([str(CONSOLE_SCRIPT), "bench", "--tox", "--adapter", "torch"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert one_line_error(done) == ("conformance: error: bench --tox times the whole tox matrix: "
                                    "it takes no --adapter or --quick")


def test_bench_full_goes_with_tox(tmp_path):
    done = subprocess.run([str(CONSOLE_SCRIPT), "bench", "--full"], cwd=tmp_path, capture_output=True, text=True)
    assert one_line_error(done) == ("conformance: error: bench --full goes with --tox (each adapter's bench "
                                    "runs its whole matrix already)")


def test_bench_tox_full_times_the_full_plan():
    from conformance.commands.bench_tox import tox_command

    assert tox_command(Path("w"), Path("r.json"), full=True)[-2:] == ["--", "--full"]
    assert "--full" not in tox_command(Path("w"), Path("r.json"))


def test_bench_tox_label_times_another_label_and_goes_with_tox(tmp_path):
    from conformance.commands.bench_tox import tox_command

    words = tox_command(Path("w"), Path("r.json"), label="deployment")
    assert words[words.index("run-parallel") + 1:words.index("run-parallel") + 3] == ["-m", "deployment"]
    done = subprocess.run([str(CONSOLE_SCRIPT), "bench", "--label", "deployment"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert one_line_error(done) == "conformance: error: bench --label goes with --tox (it names the tox label to time)"
