"""`conformance sweep`: one adapter across real releases of a package, through the console script.

The small sweep CI keeps alive: two onnxruntime releases (one from before NumPy 2, hence
``--with "numpy<2"``), a few dozen cases, each in its own virtual environment made by pip,
then the same sweep again from the cached environments; a version pip refuses beside the
pins (protobuf 3 beside onnx >= 1.20) is installed as a forced overlay and labelled so in
its results; a version that does not exist is a column saying why. Slow: pip makes three
environments (about ten seconds each with pip's cache).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from tests.commandline import CONSOLE_SCRIPT, one_line_error, snapshot

ROOT = Path(__file__).resolve().parent.parent
RELEASES = ("1.18.1", "1.32.0")  # 1.18 was built against NumPy 1
CASES = "gru and seq1 and b3t5 and float32 and cpu"


def sweep(*arguments: str, venvs: Path, output: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONSOLE_SCRIPT), "sweep", *arguments, "-o", str(output), "--venv-dir", str(venvs)],
                          capture_output=True, text=True, timeout=3600, cwd=ROOT,  # a guard, not a measure
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def venvs(tmp_path_factory) -> Path:
    """The sweep's venvs (about 1.5 GB together), removed when the module ends: CI's disk is shared
    with every tox env, and a full disk failed a whole CI run once."""
    directory = tmp_path_factory.mktemp("sweep-venvs")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def onnxruntime_sweep(venvs, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("sweep") / "onnxruntime"
    done = sweep("--adapter", "onnx-native", "--versions", "onnxruntime==" + ",".join(reversed(RELEASES)),
                 "--with", "numpy<2", "-k", CASES, venvs=venvs, output=output)
    assert done.returncode == 0, done.stdout + done.stderr
    return output


@pytest.mark.slow
def test_each_release_runs_in_its_own_environment_oldest_first(onnxruntime_sweep):
    record = read(onnxruntime_sweep / "sweep.json")
    assert [run["version"] for run in record["runs"]] == list(RELEASES)
    for run in record["runs"]:
        assert run["install"] == "normal" and run["run_exit"] == 0, run
        results = read(onnxruntime_sweep / run["results"])
        assert results["adapters"]["onnx-native"]["versions"]["onnxruntime"] == run["version"]
        assert results["machine"]["install"] == "normal"
        assert results["complete"] and results["planned"] == results["produced"] > 20
        assert {r["test_id"].split("[")[1] for r in results["results"]} == {"onnx-native-cpu-float32]"}


@pytest.mark.slow
def test_the_history_has_one_column_per_release(onnxruntime_sweep):
    history = read(onnxruntime_sweep / "history.json")
    assert [run["label"] for run in history["runs"]] == [f"onnxruntime {v}" for v in RELEASES]
    first = read(onnxruntime_sweep / read(onnxruntime_sweep / "sweep.json")["runs"][0]["results"])
    assert len(history["rows"]) == len(first["results"])
    assert (onnxruntime_sweep / "history.html").is_file()


@pytest.mark.slow
def test_a_second_sweep_reuses_the_environments(onnxruntime_sweep, venvs, tmp_path):
    done = sweep("--adapter", "onnx-native", "--versions", "onnxruntime==" + ",".join(RELEASES),
                 "--with", "numpy<2", "-k", CASES, venvs=venvs, output=tmp_path / "again")
    assert done.returncode == 0, done.stderr
    assert [run["install_note"] for run in read(tmp_path / "again" / "sweep.json")["runs"]] == ["cached"] * 2


@pytest.mark.slow
def test_a_version_pip_refuses_beside_the_pins_is_a_labelled_forced_overlay(venvs, tmp_path):
    done = sweep("--adapter", "onnx-native", "--versions", "protobuf==3.20.3", "-k", CASES + " and state0",
                 venvs=venvs, output=tmp_path / "forced")
    assert done.returncode == 0, done.stderr
    run = read(tmp_path / "forced" / "sweep.json")["runs"][0]
    assert run["install"] == "forced --no-deps overlay" and "conflicting dependencies" in run["install_note"]
    results = read(tmp_path / "forced" / run["results"])
    assert results["machine"]["install"].startswith("forced --no-deps overlay: pip refused it")
    assert read(tmp_path / "forced" / "history.json")["runs"][0]["forced"] is True


@pytest.mark.slow
def test_a_version_that_does_not_install_is_a_column_saying_why(venvs, tmp_path):
    done = sweep("--adapter", "onnx-native", "--versions", "onnxruntime==0.0.1", venvs=venvs,
                 output=tmp_path / "missing")
    assert done.returncode == 0, done.stderr
    run = read(tmp_path / "missing" / "sweep.json")["runs"][0]
    assert run["install"] == "failed" and not run["results"]
    assert run["install_note"].startswith("no such version: pip finds no onnxruntime==0.0.1"), run
    column = read(tmp_path / "missing" / "history.json")["runs"][0]
    assert "install failed" in column["note"]


def test_a_missing_version_is_no_such_version_whatever_pip_says_first():
    """pip's first ERROR line may be a note on versions it ignored (built for another Python)."""
    from conformance.commands.sweep import pip_refusal

    said = ("ERROR: Ignored the following versions that require a different python version: 1.0 Requires-Python >=3.7\n"
            "ERROR: Could not find a version that satisfies the requirement onnxruntime==0.0.1 (from versions: 1.1)\n"
            "ERROR: No matching distribution found for onnxruntime==0.0.1\n")
    assert pip_refusal(said, 1) == "no such version: pip finds no onnxruntime==0.0.1 for this Python and platform"
    assert pip_refusal("ERROR: Ignored the following versions ...\nERROR: Disk quota exceeded\n", 1) == (
        "ERROR: Disk quota exceeded")


NUMPY = ("numpy==" + metadata.version("numpy"),)
ORACLE = ("--adapter", "tests.oracle_adapters:OracleAdapter", "--versions", *NUMPY, "--with", "numpy",
          "--device", "cpu", "--dtype", "float32")


@pytest.mark.slow
def test_a_module_class_adapter_can_be_swept(venvs, tmp_path):
    done = sweep(*ORACLE, "-k", "tutorial", venvs=venvs, output=tmp_path / "oracle")
    assert done.returncode == 0, done.stdout + done.stderr
    run = read(tmp_path / "oracle" / "sweep.json")["runs"][0]
    assert run["install"] == "normal" and run["run_exit"] == 0, run
    results = read(tmp_path / "oracle" / run["results"])
    assert len(results["results"]) == 12 and {r["status"] for r in results["results"]} == {"pass"}
    assert not [p.name for p in venvs.iterdir() if ":" in p.name]


@pytest.mark.slow
def test_an_interrupted_sweep_waits_for_its_run_which_leaves_an_incomplete_report(venvs, tmp_path):
    output = tmp_path / "interrupted"
    pausing = ("--adapter", "tests.hostile_adapters:PausingAdapter", *ORACLE[2:])  # still running when interrupted
    # The sweep starts with Ctrl-C's default action (then execs the console script, same process): a
    # test session started in the background (`nohup pytest ... &`) passes SIGINT on ignored, and the
    # sweep would never see the signal. (No preexec_fn: a fork beside JAX's threads warns.)
    default_sigint = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                      "os.execv(sys.argv[1], sys.argv[1:])")
    process = subprocess.Popen([sys.executable, "-c", default_sigint, str(CONSOLE_SCRIPT), "sweep", *pausing,
                                "-o", str(output), "--venv-dir", str(venvs)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    report_dir = output / NUMPY[0].replace("==", "-")
    deadline = time.monotonic() + 3600  # waits for the event (a result passed), however slow the machine
    while time.monotonic() < deadline and process.poll() is None and not any(
            '"status": "pass"' in p.read_text() for p in report_dir.glob("streams/*.jsonl")):
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)  # to the sweep alone, as a supervisor's kill would be
    _, stderr = process.communicate(timeout=3600)
    assert process.returncode == 130, stderr
    results = read(report_dir / "results.json")
    assert results["complete"] is False and any(r["status"] == "pass" for r in results["results"])
    assert "INCOMPLETE" in (report_dir / "index.html").read_text().upper()
    run = read(output / "sweep.json")["runs"][0]
    assert run["run_exit"] == 130 and run["run_note"].startswith("interrupted; its INCOMPLETE report")


@pytest.mark.parametrize("arguments, says", [
    (["--adapter", "onnx-native", "--versions", "onnxruntime"], "expected PACKAGE==V1,V2"),
    (["--adapter", "onnx-native", "--versions", "onnxruntime==one"], "Invalid version"),
    (["--adapter", "no-such-adapter", "--versions", "onnxruntime==1.32.0"], "no-such-adapter"),
    (["--adapter", "tests.oracle_adapters:OracleAdapter", "--versions", "numpy==2.0.0"], "--with"),
    (["--adapter", "onnx-native", "--versions", "onnxruntime==1.32.0", "--with", "numpy<<2"], "not a pip requirement"),
    (["--adapter", "onnx-native", "--versions", "onnxruntime==1.32.0", "-k", "gru and ("], "bad -k expression"),
])
def test_bad_input_is_one_line_and_writes_nothing(arguments, says, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sweep.json").write_text("{}")
    before = snapshot(tmp_path)
    line = one_line_error(sweep(*arguments, venvs=tmp_path / "venvs", output=tmp_path / "out"))
    assert says in line
    assert snapshot(tmp_path) == before


def test_full_is_passed_on_to_every_versions_run():
    import argparse

    from conformance.commands.sweep import run_options

    args = argparse.Namespace(keyword="", device=None, dtype=None, shards=None, fixtures_dir=None,
                              onnx_opset=None, known_differences=[], full=True)
    assert run_options(args) == ("--full",)
    assert run_options(argparse.Namespace(**{**vars(args), "full": False})) == ()
