"""The opset and IR version the ONNX adapters' models carry: the lowest that expresses every
graph by default, another with ``--onnx-opset``, and recorded in every result either way.

A runtime release reads only some opsets and IR versions (onnxruntime before 1.21 refuses
IR 10 / opset 22 models outright), so a sweep across releases needs both chosen and recorded.
Run through the console script, as a user runs it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.commandline import CONSOLE_SCRIPT, one_line_error, snapshot

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

CASES = "gru and seq1 and state1 and b3t5 and float32 and cpu"


def run(*arguments: str, report_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONSOLE_SCRIPT), "run", "--adapter", "onnx-native", "-k", CASES,
                           "--report-dir", str(report_dir), *arguments], capture_output=True, text=True, timeout=600)


def stamps(report_dir: Path) -> set[tuple[int, int]]:
    results = json.loads((report_dir / "results.json").read_text(encoding="utf-8"))["results"]
    ran = [r for r in results if r["status"] in ("pass", "fail")]
    assert ran, results
    return {(r["run_info"]["onnx_opset"], r["run_info"]["onnx_ir_version"]) for r in ran}


def test_by_default_the_models_carry_opset_14_and_ir_7_and_every_result_says_so(tmp_path):
    """14: ``layout`` on RNN/GRU/LSTM arrived in opset 14; IR 7 is what onnx assigns to it."""
    done = run(report_dir=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    ir_for_14 = onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", 14)])
    assert stamps(tmp_path) == {(14, ir_for_14)} == {(14, 7)}


def test_onnx_opset_stamps_another_opset_with_onnxs_own_ir_version_for_it(tmp_path):
    done = run("--onnx-opset", "21", report_dir=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    table_ir = max(ir for _, ir, opset, *_ in onnx.helper.VERSION_TABLE if opset == 21)
    assert stamps(tmp_path) == {(21, 10)} and table_ir == 10


@pytest.mark.parametrize("opset", ["13", str(onnx.defs.onnx_opset_version() + 1)])
def test_an_opset_the_graphs_or_onnx_cannot_have_is_one_line_and_writes_nothing(opset, tmp_path):
    (tmp_path / "results.json").write_text("{}")
    before = snapshot(tmp_path)
    line = one_line_error(run("--onnx-opset", opset, report_dir=tmp_path))
    assert f"--onnx-opset {opset}" in line and "expected 14" in line
    assert snapshot(tmp_path) == before
