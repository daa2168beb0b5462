"""The built-in ``openvino`` adapters on real cases: both weight placements, the precision hint, a finding.

OpenVINO takes its fused recurrent kernel for constant weights and a loop
for weights fed as inputs, so the two rows must differ exactly where the
fused kernel is wrong (FINDINGS.md; the ``openvino`` entries of conformance/verdict/known_differences.txt).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino", reason="openvino is not installed (pip install rnn-conformance[openvino])")

from conformance.adapters import load_adapter  # noqa: E402
from conformance.adapters.onnx import openvino as openvino_adapter  # noqa: E402
from conformance.fixtures import load_cases  # noqa: E402
from conformance.onnx import export  # noqa: E402
from tests.commandline import CONSOLE_SCRIPT  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PLAIN = "lstm-seq1-state1-random-b3t5"
MASKED = "simple_rnn-seq0-state1-random-b3t5-mask_right"  # Keras's h is each row's state at its last real step
LINEAR = "gru-seq0-state0-random-b3t5-linear"


@pytest.fixture(scope="module")
def cases():
    return {case.id: case.for_dtype("float32") for case in load_cases()}


def kernels(compiled) -> set[str]:
    """The recurrent kernels the CPU plugin compiled the model into."""
    layer_types = {op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ordered_ops()}
    return layer_types & {"RNNSeq", "TensorIterator"}


def within_tolerance(case, outputs) -> bool:
    tolerance = case.tolerance()
    return all(np.all(np.abs(got - want) <= tolerance.atol + tolerance.rtol * np.abs(want))
               for got, want in zip(outputs, case.expected))


@pytest.mark.parametrize(("name", "kernel"), [("openvino", "RNNSeq"), ("openvino-inputs", "TensorIterator")])
def test_constant_weights_take_the_fused_kernel_and_input_weights_the_loop(cases, name, kernel):
    adapter = load_adapter(name).adapter
    exported = export(cases[PLAIN], adapter.weights)
    assert kernels(adapter.load(exported.model_bytes, "cpu")) == {kernel}
    assert within_tolerance(cases[PLAIN], adapter.run(cases[PLAIN], "cpu"))


def test_the_float32_verdict_runs_under_the_f32_hint_and_records_the_default(cases):
    adapter = openvino_adapter.OpenvinoAdapter()
    adapter.run(cases[PLAIN], "cpu")
    info = adapter.last_run_info()
    assert info["inference_precision_hint"] == "f32"
    assert info["default_inference_precision_hint"] == openvino_adapter.default_precision_hint("cpu")
    compiled = adapter.load(export(cases[PLAIN]).model_bytes, "cpu")
    assert compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"


def test_the_labelled_mode_leaves_the_runtimes_default_hint(cases, monkeypatch):
    from conformance.adapters.contract import REDUCED_PRECISION_VARIABLE

    monkeypatch.setenv(REDUCED_PRECISION_VARIABLE, "1")  # what --reduced-precision-defaults sets
    adapter = openvino_adapter.OpenvinoAdapter()
    adapter.run(cases[PLAIN], "cpu")
    default = openvino_adapter.default_precision_hint("cpu")
    assert adapter.last_run_info()["inference_precision_hint"] == default
    compiled = adapter.load(export(cases[PLAIN]).model_bytes, "cpu")
    assert compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == default


def test_the_fused_kernel_ignores_sequence_lens_and_the_loop_does_not(cases):
    """The finding: with constant weights, h is the state after all T steps, as if nothing were masked."""
    case = cases[MASKED]
    fused = openvino_adapter.OpenvinoAdapter().run(case, "cpu")
    loop = openvino_adapter.OpenvinoInputsAdapter().run(case, "cpu")
    assert within_tolerance(case, loop)
    assert not within_tolerance(case, fused)
    unmasked = dataclasses.replace(case, mask=np.ones_like(case.mask))
    np.testing.assert_allclose(fused[1], openvino_adapter.OpenvinoInputsAdapter().run(unmasked, "cpu")[1], atol=1e-6)


def test_an_activation_openvino_refuses_is_unsupported_and_openvino_really_refuses_it(cases):
    adapter = openvino_adapter.OpenvinoAdapter()
    reason = adapter.supports(cases[LINEAR])
    assert reason is not None and "OpenVINO" in reason and "Affine" in reason
    with pytest.raises(Exception, match="affine"):
        adapter.load(export(cases[LINEAR]).model_bytes, "cpu")


def test_a_run_of_both_rows_through_the_console_script_records_cpu_rows_only(tmp_path):
    completed = subprocess.run(
        [str(CONSOLE_SCRIPT), "run", "--adapter", "openvino", "--adapter", "openvino-inputs", "-k", MASKED,
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    records = json.loads((tmp_path / "results.json").read_text())["results"]
    outcomes = {(r["adapter"], r["device"]): r["status"] for r in records}
    assert outcomes == {("openvino", "cpu"): "fail", ("openvino-inputs", "cpu"): "pass"}, completed.stdout
    assert all(r["run_info"]["inference_precision_hint"] == "f32" for r in records)
