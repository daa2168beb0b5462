"""The examples in `examples/` run as a user runs them: copied where the command runs, through
`conformance run` (the docs include these very files)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.fixtures import load_cases

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(name: str) -> str:
    return (EXAMPLES / name).read_text()


def example_source() -> str:
    """The third-party adapter, as a vendor saves it."""
    return example("my_lstm_adapter.py")


# The user's environment: nothing of this checkout on PYTHONPATH (the adapter is found in the cwd).
USER_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def run_example_adapter(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The example adapter saved in ``tmp_path`` and run from there into ``reports/``, as the docs say."""
    (tmp_path / "my_lstm_adapter.py").write_text(example_source())
    return subprocess.run([str(Path(sys.executable).with_name("conformance")), "run", "--adapter",
                           "my_lstm_adapter:LstmCellAdapter", "--report-dir", "reports", *args],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path, env=USER_ENV)


@pytest.mark.slow
def test_the_example_adapter_passes_or_declares_unsupported_on_the_whole_matrix(tmp_path):
    """Saved in the directory the command runs from, with nothing on PYTHONPATH (as the docs say),
    and run whole: every LSTM case it claims passes, every other result is one of its own reasons."""
    pytest.importorskip("torch")
    done = run_example_adapter(tmp_path, "--device", "cpu")
    assert done.returncode == 0, done.stderr + done.stdout
    document = json.loads((tmp_path / "reports" / "results.json").read_text())
    results = document["results"]
    assert document["planned"] == document["produced"] == len(results) > 900
    assert {r["status"] for r in results} == {"pass", "unsupported"}
    reasons = set(re.findall(r'return "([^"]+)"', example_source()))
    assert {r["message"].removeprefix("torch-lstmcell: ") for r in results if r["status"] == "unsupported"} <= reasons
    tutorial_lstm = [r for r in results if r["cell"] == "lstm" and r["option"] == "tutorial"]
    assert len(tutorial_lstm) == 8 and {r["status"] for r in tutorial_lstm} == {"pass"}


def run_vendor_example(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    (tmp_path / "my_onnx_runtime.py").write_text(example("my_onnx_runtime.py"))
    report_dir = tmp_path / f"reports{len(extra)}"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("conformance")), "run", "--adapter", "my_onnx_runtime:MyOnnxRuntime",
         "--device", "cpu", "--report-dir", str(report_dir), *extra],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})
    return done, json.loads((report_dir / "results.json").read_text())


@pytest.mark.slow
def test_the_onnx_runtime_walkthrough_certifies_onnxruntime_on_the_whole_matrix(tmp_path):
    """Steps 1-4 of "Certify an ONNX runtime" with the example files, as a vendor follows them: the
    adapter alone finds the runtime's differences (exit 1); with examples/my-differences.txt, the run is
    clean (exit 0)."""
    pytest.importorskip("onnxruntime")
    first, document = run_vendor_example(tmp_path)
    assert first.returncode == 1, first.stderr
    unexpected = {r["test_id"] for r in document["results"] if r["status"] in ("fail", "error")}
    every_pair = sum(len(case.dtypes) for case in load_cases())  # every case x dtype of the fixtures
    assert len(unexpected) == 120 and document["planned"] == document["produced"] == every_pair
    (tmp_path / "my-differences.txt").write_text(example("my-differences.txt"))
    second, document = run_vendor_example(tmp_path, "--known-differences", "my-differences.txt")
    assert second.returncode == 0, second.stdout + second.stderr
    statuses = [r["status"] for r in document["results"]]
    assert (statuses.count("pass"), statuses.count("unsupported")) == (589, 218)  # as the page says
    assert {r["test_id"] for r in document["results"] if r.get("known")} == unexpected
    assert all("onnxruntime" in r["known"] for r in document["results"] if r.get("known"))


@pytest.mark.slow
def test_the_results_reading_example_counts_a_run_and_names_its_unexpected_results(tmp_path):
    """examples/read_results.py on a real run of the example adapter: its counts are the run's own."""
    pytest.importorskip("torch")
    run = run_example_adapter(tmp_path, "-k", "tutorial")
    assert run.returncode == 0, run.stderr
    read = subprocess.run([sys.executable, str(EXAMPLES / "read_results.py"), "reports/results.json"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=USER_ENV)
    assert read.returncode == 0, read.stderr
    statuses = [r["status"] for r in json.loads((tmp_path / "reports" / "results.json").read_text())["results"]]
    assert read.stdout.splitlines() == [f"torch-lstmcell: {statuses.count('pass')} pass, "
                                        f"{statuses.count('unsupported')} unsupported"]
