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
import subprocess
from pathlib import Path

import pytest

from tests.commandline import CONSOLE_SCRIPT, one_line_error, snapshot

ROOT = Path(__file__).resolve().parent.parent
RELEASES = ("1.18.1", "1.32.0")  # 1.18 was built against NumPy 1
CASES = "gru and seq1 and b3t5 and float32 and cpu"


def sweep(*arguments: str, venvs: Path, output: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONSOLE_SCRIPT), "sweep", *arguments, "-o", str(output), "--venv-dir", str(venvs)],
                          capture_output=True, text=True, timeout=900, cwd=ROOT,
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
    assert run["install"] == "failed" and "onnxruntime==0.0.1" in run["install_note"] and not run["results"]
    column = read(tmp_path / "missing" / "history.json")["runs"][0]
    assert "install failed" in column["note"]


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
                              onnx_opset=None, known_failures=[], full=True)
    assert run_options(args) == ("--full",)
    assert run_options(argparse.Namespace(**{**vars(args), "full": False})) == ()
