"""float16 and bfloat16 rows of the ONNX adapters: what ONNX can express, and what each runtime
really computes in (observed, not assumed)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")

from conformance.fixtures import load_cases  # noqa: E402
from conformance.onnx import export, not_expressible  # noqa: E402

CASE = "lstm-seq1-state1-random-b3t5-reduced_precision"


@pytest.fixture(scope="module")
def case():
    return next(c for c in load_cases() if c.id == CASE)


def test_bfloat16_is_not_expressible_at_opset_14_and_the_reason_comes_from_the_schema(case):
    import onnx

    reason = not_expressible(case.for_dtype("bfloat16"))
    allowed = next(c for c in onnx.defs.get_schema("LSTM", 14).type_constraints if c.type_param_str == "T")
    assert "tensor(bfloat16)" not in allowed.allowed_type_strs
    assert reason and "LSTM-14" in reason and all(t in reason for t in allowed.allowed_type_strs)
    assert "--onnx-opset 22" in reason  # the first LSTM that takes bfloat16
    assert not_expressible(case.for_dtype("float16")) is None


def test_bfloat16_is_expressible_at_opset_22(case, monkeypatch):
    from onnx import TensorProto

    monkeypatch.setenv("CONFORMANCE_ONNX_OPSET", "22")
    bound = case.for_dtype("bfloat16")
    assert not_expressible(bound) is None
    assert export(bound).model.graph.input[0].type.tensor_type.elem_type == TensorProto.BFLOAT16


@pytest.mark.parametrize("weights", ["initializers", "inputs"])
def test_a_float16_case_is_a_float16_model_that_passes_the_full_checker(case, weights):
    import onnx
    from onnx import TensorProto

    exported = export(case.for_dtype("float16"), weights)
    onnx.checker.check_model(exported.model, full_check=True)
    model = exported.model
    floats = [v for v in list(model.graph.input) + list(model.graph.output) if v.name != "sequence_lens"]
    assert {v.type.tensor_type.elem_type for v in floats} == {TensorProto.FLOAT16}
    assert all(a.dtype == np.float16 for a in exported.feeds.values())


def test_onnxruntime_runs_float16_and_records_the_lstm_it_widened_to_float32(case):
    pytest.importorskip("onnxruntime")
    from conformance.adapters.onnx.native import OnnxNativeAdapter

    adapter = OnnxNativeAdapter()
    outputs = adapter.run(case.for_dtype("float16"), "cpu")
    assert all(o.dtype == np.float16 for o in outputs)
    assert adapter.last_run_info()["computed_in_float32"] == ["LSTM"]
    adapter.run(case.for_dtype("float32"), "cpu")
    assert "computed_in_float32" not in adapter.last_run_info()


@pytest.mark.parametrize("name", ["openvino", "openvino-inputs"])
def test_openvino_runs_float16_only_where_the_compiled_model_computes_in_f16(case, name):
    pytest.importorskip("openvino")
    from conformance.adapters import load_adapter
    from conformance.adapters.onnx import openvino as openvino_adapter

    adapter = load_adapter(name).adapter
    bound = case.for_dtype("float16")
    compiled = adapter.load(export(bound, adapter.weights).model_bytes, "cpu")
    really = compiled.get_property(openvino_adapter.PRECISION_HINT).to_string()
    reason = adapter.supports(bound)
    if really == "f16":
        assert reason is None
    else:
        assert reason and f"INFERENCE_PRECISION_HINT={really}" in reason and "not float16" in reason
    assert adapter.supports(case.for_dtype("bfloat16")) == not_expressible(case.for_dtype("bfloat16"))
