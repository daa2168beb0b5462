"""FINDINGS.md 16 and 17, checked with the exporters and onnx alone (no suite code): torch.onnx.export
and Keras 3's ONNX export write bfloat16 recurrent models that ONNX itself refuses."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")


def checker_refusal(model) -> str | None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001 - the checker's refusal is the evidence
        return str(exc)
    return None


def session_refusal(model_bytes: bytes) -> str | None:
    try:
        onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - the runtime's refusal is the evidence
        return str(exc)
    return None


@pytest.mark.parametrize("module_class", ["LSTM", "GRU"])
def test_torch_onnx_export_writes_a_bfloat16_lstm_or_gru_node_its_own_opset_does_not_allow(module_class):
    """LSTM-14 and GRU-14 take float16, float and double; bfloat16 arrives with opset 22."""
    module = getattr(torch.nn, module_class)(3, 4, batch_first=True).to(torch.bfloat16).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # torch.export's own deprecation warnings, not the finding
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(2, 5, 3, dtype=torch.bfloat16),), buffer, dynamo=True)
    model = onnx.load_from_string(buffer.getvalue())
    opset = next(entry.version for entry in model.opset_import if entry.domain == "")
    assert opset < 22 and module_class in {node.op_type for node in model.graph.node}
    assert "tensor(bfloat16)" in (checker_refusal(model) or "")
    assert "INVALID_GRAPH" in (session_refusal(buffer.getvalue()) or "")


KERAS_EXPORT = """
import os, sys, tempfile
import keras, numpy as np, onnx, onnxruntime
inputs = keras.Input((5, 3), dtype="bfloat16")
layer = keras.layers.LSTM(4, dtype="mixed_bfloat16", kernel_initializer="zeros", recurrent_initializer="zeros")
model = keras.Model(inputs, layer(inputs))
model.predict(np.zeros((2, 5, 3), "float32"), verbose=0)
path = os.path.join(tempfile.mkdtemp(), "model.onnx")
model.export(path, format="onnx", verbose=False)
try:
    onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    print("ort: loaded")
except Exception as exc:
    print("ort:", str(exc).splitlines()[0])
print("ops:", sorted({node.op_type for node in onnx.load(path).graph.node}))
"""


def test_keras_onnx_export_of_a_mixed_bfloat16_model_is_a_loop_onnxruntime_refuses():
    pytest.importorskip("tf2onnx")
    pytest.importorskip("tensorflow")
    done = subprocess.run([sys.executable, "-c", KERAS_EXPORT], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "INVALID_GRAPH" in done.stdout and "tensor(bfloat16)" in done.stdout and "'Loop'" in done.stdout, done.stdout
