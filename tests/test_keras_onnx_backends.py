"""Keras 3's ONNX export on the JAX and torch backends (rows ``onnx-keras-jax``, ``onnx-keras-torch``).

Keras picks its backend once per process, so everything here runs in subprocesses: the finding
behind the torch row's design (its default export answers one step whatever T is) with the real
exporter and onnxruntime alone; each row through the installed console script, where a case
passes, a porting bug injected into the weights fed to the exported graph (LSTM gates i and f
swapped, ``tests.faulty_adapters``) fails on the output and both states, and a structure the
exporter refuses is ``unsupported`` in its own words; and ``conformance repro`` of a row's result
is a standalone script that agrees. Exports are slow (torch's dynamo ~15 s): one case a row.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.commandline import CONSOLE_SCRIPT

REPO = Path(__file__).resolve().parent.parent
LSTM_CASE = "lstm-seq1-state1-random-b3t5"  # return_sequences and return_state: output, h, c


def needs(*modules: str) -> None:
    """Skip unless every module is installed (found, not imported: keras would claim a backend here)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def run_python(script: str, backend: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def conformance(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The installed console script, from the repository (so ``tests.faulty_adapters`` imports),
    with a disk cache of the test's own."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CONFORMANCE_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([str(CONSOLE_SCRIPT), *args], capture_output=True, text=True, timeout=900,
                          cwd=REPO, env=env)
    assert "Traceback" not in done.stdout + done.stderr, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def results(report_dir: Path) -> dict[str, dict]:
    return {r["test_id"]: r for r in json.loads((report_dir / "results.json").read_text())["results"]}


def failing_tensors(record: dict) -> set[str]:
    return {t["name"] for t in record["tensors"] if t.get("problem")}


# Keras's own example (keras/src/export/onnx.py docstring), on an LSTM over a free time axis.
DEFAULT_TORCH_EXPORT = """
import json, os, tempfile
import numpy as np
import keras, onnxruntime

x = np.random.default_rng(0).uniform(-1, 1, (3, 5, 2)).astype("float32")
inputs = keras.Input(shape=(None, 2), name="x")
model = keras.Model(inputs, keras.layers.LSTM(4, return_sequences=True)(inputs))
model(x)
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "model.onnx")
    model.export(path, format="onnx", verbose=False)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    declared = [str(d) for d in session.get_inputs()[0].shape]
    got = session.run(None, {"x": x})[0]
keras_all = keras.ops.convert_to_numpy(model(x))
keras_first = keras.ops.convert_to_numpy(model(x[:, :1]))
print(json.dumps({"declared": declared, "got": list(got.shape), "keras": list(keras_all.shape),
                  "first_step_error": float(np.abs(got - keras_first).max())}))
"""


def test_keras_torch_default_onnx_export_answers_one_step_whatever_the_length():
    """The finding the torch row is built around: Keras traces with every None dim set to 1 and
    declares it dynamic, so at T=5 the graph silently returns the first step alone."""
    needs("torch", "keras", "onnxruntime", "onnxscript")
    found = json.loads(run_python(DEFAULT_TORCH_EXPORT, "torch").stdout.strip().splitlines()[-1])
    assert found["declared"][1] != "1"  # the time axis is declared free...
    assert found["keras"] == [3, 5, 4]
    assert found["got"] == [3, 1, 4]  # ...yet one step comes back, Keras's answer for x[:, :1]
    assert found["first_step_error"] < 1e-6


def test_torch_row_passes_and_a_gate_swap_in_the_fed_weights_fails_on_every_output(tmp_path):
    needs("torch", "keras", "onnxruntime", "onnxscript")
    report = tmp_path / "report"
    conformance(tmp_path, "run", "--adapter", "onnx-keras-torch", "--adapter",
                "tests.faulty_adapters:OnnxKerasTorchGatesSwapped", "-k", f"{LSTM_CASE}[", "--dtype", "float32",
                "--device", "cpu", "--report-dir", str(report))
    found = results(report)
    row = found[f"{LSTM_CASE}[onnx-keras-torch-cpu-float32]"]
    assert row["status"] == "pass", row["message"]
    assert row["run_info"]["export"].startswith("probe export")
    faulty = found[f"{LSTM_CASE}[onnx-keras-torch-gates-swapped-cpu-float32]"]
    assert faulty["status"] == "fail"
    assert failing_tensors(faulty) == {"output", "h", "c"}, faulty["message"]


def test_jax_row_passes_catches_a_gate_swap_and_reports_the_exporters_refusal(tmp_path):
    needs("jax", "jax2onnx", "keras", "onnxruntime")
    report = tmp_path / "report"
    refused = "simple_rnn-seq1-state0-random-b3t5-bidi_sum"  # a Bidirectional: a reverse lax.scan
    conformance(tmp_path, "run", "--adapter", "onnx-keras-jax", "--adapter",
                "tests.faulty_adapters:OnnxKerasJaxGatesSwapped", "-k", f"{LSTM_CASE}[ or {refused}[",
                "--dtype", "float32", "--device", "cpu", "--report-dir", str(report))
    found = results(report)
    row = found[f"{LSTM_CASE}[onnx-keras-jax-cpu-float32]"]
    assert row["status"] == "pass", row["message"]
    assert "Loop" in row["run_info"]["onnx_ops"] or "Scan" in row["run_info"]["onnx_ops"]
    faulty = found[f"{LSTM_CASE}[onnx-keras-jax-gates-swapped-cpu-float32]"]
    assert faulty["status"] == "fail"
    assert failing_tensors(faulty) == {"output", "h", "c"}, faulty["message"]
    unsupported = found[f"{refused}[onnx-keras-jax-cpu-float32]"]
    assert unsupported["status"] == "unsupported"
    assert unsupported["message"] == "jax2onnx: NotImplementedError: Reverse scan is not supported in IR pipeline."


def test_repro_of_a_jax_row_result_runs_standalone_and_agrees(tmp_path):
    needs("jax", "jax2onnx", "keras", "onnxruntime")
    out = tmp_path / "repro"
    test_id = "gru-seq1-state1-random-b3t5[onnx-keras-jax-cpu-float32]"
    done = conformance(tmp_path, "repro", test_id, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["expected.npz", "inputs.npz", "model.onnx", "repro.py"]
    ran = subprocess.run([sys.executable, str(out / "repro.py")], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "within tolerance" in ran.stdout
