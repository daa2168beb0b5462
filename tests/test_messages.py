"""A runtime's error text is shown short (its first meaningful line) and kept whole in the record.

The texts are what real runtimes raise (tract, onnxruntime, Python itself),
made here by making them fail; ``short_message`` is the one function every
short display uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest

from conformance.commands.findings import reasons_section
from conformance.report import render_report
from conformance.results.messages import MESSAGE_CHARS, short_message
from conformance.results.records import Record
from tests.commandline import CONSOLE_SCRIPT

REPO = Path(__file__).resolve().parent.parent
RAISING = "tests.row_adapters:BacktraceRaisingOracle"


def error_text(exc: BaseException) -> str:
    """As ``conformance.verdict.check`` stores an adapter's exception."""
    return f"{type(exc).__name__}: {exc}"


# Rust errors carry their backtrace only where RUST_BACKTRACE=1 (set here, not taken from the machine).
WITH_BACKTRACE = {**os.environ, "RUST_BACKTRACE": "1"}

TRACT_ERROR = """
import sys, tempfile, tract
with tempfile.NamedTemporaryFile(suffix=".onnx") as file:
    file.write(b"\\x08\\x07 not an ONNX model"); file.flush()
    try:
        tract.onnx().load(file.name)
    except Exception as exc:
        sys.stdout.write(f"{type(exc).__name__}: {exc}")
"""


def tract_error() -> str:
    """What tract raises for a file that is no ONNX model, with its backtrace: made in a fresh
    interpreter, because anyhow reads RUST_BACKTRACE once per process."""
    pytest.importorskip("tract")
    done = subprocess.run([sys.executable, "-c", TRACT_ERROR], capture_output=True, text=True, timeout=120,
                          env=WITH_BACKTRACE, check=True)
    assert done.stdout, "tract loaded a file that is no ONNX model"
    return done.stdout


def onnxruntime_error() -> str:
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    try:
        session.run(None, {"x": np.zeros((3, 3), np.float32)})
    except Exception as exc:  # noqa: BLE001
        return error_text(exc)
    raise AssertionError("onnxruntime accepted a wrong input shape")


def chained_traceback() -> str:
    try:
        try:
            {}["kernel"]
        except KeyError as exc:
            raise RuntimeError("the weight mapping found no kernel") from exc
    except RuntimeError:
        return traceback.format_exc()


def test_a_tract_error_is_its_first_line_without_the_backtrace():
    text = tract_error()
    assert "Stack backtrace:" in text and len(text.splitlines()) > 10
    assert short_message(text) == text.splitlines()[0]
    assert short_message(text).startswith("TractError: failed to decode Protobuf message: ")


def test_an_onnxruntime_error_is_its_first_line():
    text = onnxruntime_error()
    assert len(text.splitlines()) == 3
    assert short_message(text) == ("InvalidArgument: [ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid "
                                   "dimensions for input: x for the following indices")


def test_a_chained_python_traceback_is_the_exception_that_was_raised():
    text = chained_traceback()
    assert text.startswith("Traceback (most recent call last):") and "KeyError: 'kernel'" in text
    assert short_message(text) == "RuntimeError: the weight mapping found no kernel"


def test_blank_lines_colour_codes_and_introducing_lines_are_not_the_message():
    # Keras 3's wrapper (keras/src/utils/traceback_utils.py), as results store the escape character.
    keras = ("ValueError: Exception encountered when calling LSTM.call().\n\n\\x1b[1mInput 0 is incompatible "
             "with the layer: expected ndim=3, found ndim=2\\x1b[0m\n\nArguments received by LSTM.call():\n"
             "  • sequences=tf.Tensor(shape=(2, 5), dtype=float32)")
    assert short_message(keras) == ("ValueError: Exception encountered when calling LSTM.call(). Input 0 is "
                                    "incompatible with the layer: expected ndim=3, found ndim=2")
    assert short_message("\n\n  Error: no kernel  \n\nCaused by:\n    0: LSTM") == "Error: no kernel"
    assert short_message("") == short_message(None) == ""


def test_a_long_line_is_cut_with_an_ellipsis():
    text = "RuntimeError: " + "x" * 500
    short = short_message(text)
    assert len(short) == MESSAGE_CHARS and short.endswith("…") and text.startswith(short[:-1])
    assert short_message("a" * MESSAGE_CHARS) == "a" * MESSAGE_CHARS


def error_record(message: str, test_id: str = "lstm-seq0-state0-random-b1t1[tract-cpu-float32]") -> Record:
    return Record(test_id=test_id, status="error", message=message, case_id=test_id.partition("[")[0],
                  adapter="tract", device="cpu", dtype="float32", cell="lstm", group="lstm seq0 state0",
                  describe="LSTM(1)")


def test_the_html_report_shows_the_short_message_and_keeps_the_whole_text_in_the_panel(tmp_path):
    text = tract_error()
    document = {"schema": "rnn-conformance/results/1", "complete": True, "results": [error_record(text).to_dict()]}
    html = render_report(document, tmp_path).read_text()
    assert f'<span class="gist">{short_message(text)}</span>' in html
    panel = html.split('<pre class="msg', 1)[1].split("</pre>", 1)[0]
    assert "Stack backtrace:" in panel and "tract_onnx_load" in panel


def test_findings_counts_a_reason_by_its_first_meaningful_line():
    first, second = chained_traceback(), chained_traceback().replace("line", "line ")
    records = [error_record(first, "a[tract-cpu-float32]"), error_record(second, "b[tract-cpu-float32]")]
    records = [Record(**{**r.__dict__, "status": "unsupported"}) for r in records]
    assert reasons_section(records, "unsupported").splitlines()[2:] == [
        "| tract | 2 | RuntimeError: the weight mapping found no kernel |"]


@pytest.mark.slow
def test_conformance_run_names_each_unexpected_error_by_its_first_line_and_records_it_whole(tmp_path):
    pytest.importorskip("tract")
    done = subprocess.run([str(CONSOLE_SCRIPT), "run", "--adapter", RAISING, "--device", "cpu", "-k",
                           "tutorial and lstm and float64", "--report-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env={**WITH_BACKTRACE, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1, done.stderr
    messages = [r["message"] for r in json.loads((tmp_path / "results.json").read_text())["results"]]
    assert len(messages) == 4 and all("Stack backtrace:" in m for m in messages)  # the record: the whole text
    listed = done.stdout.split("unexpected fails and errors (4):\n", 1)[1].splitlines()[:4]
    assert [line.split("]: ", 1)[1] for line in listed] == [m.splitlines()[0] for m in messages]
    assert "Stack backtrace" not in done.stdout
