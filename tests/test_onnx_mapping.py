"""The Keras -> ONNX RNN/GRU/LSTM conventions (conformance/onnx/mapping.py), and what
onnxruntime does with them: the gate order proven on a per_gate case, ``layout=1`` and
float64 refused, padded and empty sequences zeroed."""

from __future__ import annotations

import numpy as np
import pytest

from conformance.matrix.cases import build_cases
from conformance.matrix.spec import LayerSpec
from conformance.onnx import mapping as onnx_mapping
from conformance.onnx.mapping import activation_attributes, onnx_direction_weights, onnx_weights
from conformance.reference import expected_outputs
from conformance.verdict.check import check_case

CASES = {case.id: case for case in build_cases()}
PER_GATE_LSTM = "lstm-seq1-state1-per_gate-b2t5"
PLAIN_LSTM = "lstm-seq1-state1-random-b3t5"


def _blocks(*values: float, rows: int = 1, units: int = 2) -> np.ndarray:
    """A (rows, G*units) matrix whose gate blocks hold the given constants."""
    return np.tile(np.repeat(np.asarray(values, dtype=np.float64), units), (rows, 1))


def _weights(layer: LayerSpec, features: int = 3, bias: np.ndarray | None = None) -> dict:
    width = len(layer.gates) * layer.units
    rng = np.random.default_rng(0)
    weights = {"kernel": rng.normal(size=(features, width)),
               "recurrent_kernel": rng.normal(size=(layer.units, width))}
    if bias is not None:
        weights["bias"] = bias
    return weights


# --- pure numpy -----------------------------------------------------------------------------


def test_lstm_gate_blocks_go_from_keras_i_f_c_o_to_onnx_i_o_f_c():
    layer = LayerSpec("lstm", 2)
    weights = {"kernel": _blocks(1, 2, 3, 4, rows=3), "recurrent_kernel": _blocks(5, 6, 7, 8, rows=2),
               "bias": _blocks(9, 10, 11, 12)[0]}
    w, r, b = onnx_direction_weights(layer, weights)
    assert np.array_equal(w, _blocks(1, 4, 2, 3, rows=3).T)
    assert np.array_equal(r, _blocks(5, 8, 6, 7, rows=2).T)
    assert np.array_equal(b, np.concatenate([_blocks(9, 12, 10, 11)[0], np.zeros(8)]))


def test_gru_gate_blocks_keep_z_r_h():
    layer = LayerSpec("gru", 2, use_bias=False)
    w, _, _ = onnx_direction_weights(layer, {"kernel": _blocks(1, 2, 3, rows=3),
                                             "recurrent_kernel": _blocks(4, 5, 6, rows=2)})
    assert np.array_equal(w, _blocks(1, 2, 3, rows=3).T)


def test_w_and_r_are_keras_kernels_transposed():
    layer = LayerSpec("simple_rnn", 4)
    weights = _weights(layer, bias=np.zeros(4))
    w, r, _ = onnx_direction_weights(layer, weights)
    assert np.array_equal(w, weights["kernel"].T) and np.array_equal(r, weights["recurrent_kernel"].T)


def test_gru_reset_after_bias_rows_are_onnx_input_then_recurrent_bias():
    layer = LayerSpec("gru", 2, reset_after=True)
    bias = np.concatenate([_blocks(1, 2, 3), _blocks(4, 5, 6)])
    _, _, b = onnx_direction_weights(layer, _weights(layer, bias=bias))
    assert np.array_equal(b, bias.ravel())


def test_single_keras_bias_is_the_input_bias_with_zero_recurrent_bias():
    layer = LayerSpec("gru", 2, reset_after=False)
    _, _, b = onnx_direction_weights(layer, _weights(layer, bias=_blocks(1, 2, 3)[0]))
    assert np.array_equal(b, np.concatenate([_blocks(1, 2, 3)[0], np.zeros(6)]))


def test_use_bias_false_gives_an_all_zero_b():
    layer = LayerSpec("lstm", 2, use_bias=False)
    _, _, b = onnx_direction_weights(layer, _weights(layer))
    assert b.shape == (16,) and not b.any()


def test_bidirectional_weights_stack_forward_then_backward():
    layer = LayerSpec("simple_rnn", 4)
    forward, backward = _weights(layer, bias=np.ones(4)), _weights(layer, bias=2 * np.ones(4))
    w, r, b = onnx_weights([(layer, forward), (layer, backward)])
    assert w.shape == (2, 4, 3) and r.shape == (2, 4, 4) and b.shape == (2, 8)
    assert b[0, 0] == 1 and b[1, 0] == 2


def test_lstm_activations_are_f_g_h_with_alpha_beta_only_for_hard_sigmoid():
    layer = LayerSpec("lstm", 2, recurrent_activation="hard_sigmoid")
    assert activation_attributes([layer]) == {"activations": ["HardSigmoid", "Tanh", "Tanh"],
                                              "activation_alpha": [1.0 / 6.0], "activation_beta": [0.5]}


def test_gru_activations_are_f_g_and_legacy_hard_sigmoid_is_alpha_point_two():
    layer = LayerSpec("gru", 2, recurrent_activation="legacy_hard_sigmoid", activation="linear")
    assert activation_attributes([layer]) == {"activations": ["HardSigmoid", "Affine"],
                                              "activation_alpha": [0.2, 1.0], "activation_beta": [0.5, 0.0]}


def test_bidirectional_activations_are_listed_once_per_direction():
    layer = LayerSpec("simple_rnn", 2, activation="relu")
    assert activation_attributes([layer, layer]) == {"activations": ["Relu", "Relu"]}


def test_a_right_padded_mask_is_fed_as_int32_sequence_lens_including_an_empty_row():
    from conformance.onnx import export

    case = CASES["lstm-seq0-state1-random-b3t5-mask_empty_row"].for_dtype("float32")
    lens = export(case).feeds["sequence_lens"]
    assert lens.dtype == np.int32 and lens.tolist() == case.mask.sum(axis=1).tolist()
    assert 0 in lens.tolist()


def test_a_mask_with_holes_has_no_sequence_lens():
    from conformance.adapters.onnx.native import OnnxNativeAdapter

    case = CASES["gru-seq0-state1-random-b3t5-mask_holes"].for_dtype("float32")
    assert "right-padded masks only" in OnnxNativeAdapter().supports(case)


# --- with onnxruntime -----------------------------------------------------------------------


def _native(layout: int = 0):
    pytest.importorskip("onnxruntime")
    from conformance.adapters.onnx.native import OnnxNativeAdapter, OnnxNativeLayout1Adapter

    return OnnxNativeLayout1Adapter() if layout else OnnxNativeAdapter()


def _max_error(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    return max(float(np.abs(np.asarray(g, dtype=np.float64) - w).max()) for g, w in zip(got, want))


def test_onnx_gate_order_matches_the_oracle_where_keras_order_does_not(monkeypatch):
    adapter, case = _native(), CASES[PER_GATE_LSTM].for_dtype("float32")
    want, tolerance = expected_outputs(case), case.tolerance().atol
    assert _max_error(adapter.run(case, "cpu"), want) <= tolerance
    monkeypatch.setitem(onnx_mapping.ONNX_GATE_ORDER, "lstm", (0, 1, 2, 3))  # Keras's i, f, c, o
    assert _max_error(adapter.run(case, "cpu"), want) > 100 * tolerance


def test_onnxruntime_refuses_layout_1_and_the_refusal_is_an_error_not_unsupported():
    adapter, case = _native(layout=1), CASES[PLAIN_LSTM].for_dtype("float32")
    assert adapter.supports(case) is None
    outcome = check_case(adapter, case, "cpu")
    assert outcome.status == "error"
    assert "Batchwise recurrent operations (layout == 1) are not supported" in outcome.message


@pytest.mark.parametrize("layout", [0, 1])
def test_the_graphs_are_right_in_the_onnx_reference_runtime_for_both_layouts(monkeypatch, layout):
    """onnx's ReferenceEvaluator runs what onnxruntime refuses (layout=1, double): the refusals
    are the runtime's, not the graphs'. (It ignores ``activations``; this case uses the defaults.)"""
    reference = pytest.importorskip("onnx.reference")
    from conformance.adapters.onnx import runtime as onnx_runtime

    monkeypatch.setattr(onnx_runtime, "make_session",
                        lambda model, device: reference.ReferenceEvaluator(model))
    adapter = _native(layout)
    for dtype in ("float32", "float64"):
        case = CASES[PLAIN_LSTM].for_dtype(dtype)
        assert _max_error(adapter.run(case, "cpu"), expected_outputs(case)) <= case.tolerance().atol


@pytest.mark.parametrize(("cell", "message"), [
    ("lstm", "LSTM operator does not support double yet"),
    ("gru", "GRU operator does not support double yet"),
    ("simple_rnn", "Could not find an implementation for RNN(14)"),
])
def test_onnxruntime_has_no_float64_recurrent_kernels(cell, message):
    case = CASES[f"{cell}-seq1-state1-random-b3t5"].for_dtype("float64")
    outcome = check_case(_native(), case, "cpu")
    assert outcome.status == "error" and message in outcome.message


def test_onnxruntime_zeroes_the_state_of_an_empty_sequence_where_keras_keeps_the_initial_state():
    """ORT (PR #749) skips rows with sequence_lens == 0 and returns Y_h = 0; the ONNX text does not
    say (onnx/onnx#1674); Keras keeps the initial state of a fully masked row."""
    case = CASES["lstm-seq0-state1-random-b3t5-mask_empty_row"].for_dtype("float32")
    empty_row = 1
    _, h, c = _native().run(case, "cpu")
    assert not h[empty_row].any() and not c[empty_row].any()
    assert np.allclose(expected_outputs(case)[1][empty_row], case.initial_state[0][empty_row])


def test_onnxruntime_zeroes_y_past_sequence_lens():
    case = CASES["gru-seq1-state0-random-b3t5-zero_output_for_mask"].for_dtype("float32")
    (sequence,) = _native().run(case, "cpu")
    assert not sequence[~case.mask].any() and sequence[case.mask].all()


def test_onnxruntime_gives_activation_alpha_only_to_functions_that_take_one():
    """The ONNX text leaves open whether Sigmoid takes a slot in activation_alpha; ORT says no."""
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from conformance.adapters.onnx import runtime as onnx_runtime

    node = helper.make_node("RNN", ["X", "W", "R"], ["Y"], hidden_size=1, activations=["Affine"],
                            activation_alpha=[3.0], activation_beta=[0.25])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 1])
                                            for n in ("X", "W", "R")],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1, 1, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    model.ir_version = 10
    session = onnx_runtime.make_session(model.SerializeToString(), "cpu")
    ones = np.ones((1, 1, 1), np.float32)
    (y,) = session.run(None, {"X": 2 * ones, "W": ones, "R": 0 * ones})
    assert y.item() == pytest.approx(3.0 * 2.0 + 0.25)


# --- sessions: the device's provider or a refusal, never a silent move to the CPU ----------------


@pytest.fixture
def ort():
    """onnxruntime, with the cached "does a CUDA session open" answer forgotten before and after."""
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from conformance.adapters.onnx import runtime as onnx_runtime

    onnx_runtime._cuda_session_opens.cache_clear()
    yield onnxruntime
    onnx_runtime._cuda_session_opens.cache_clear()


@pytest.fixture
def gpu_build_without_a_gpu(ort, monkeypatch):
    """onnxruntime listing the CUDA provider, as a GPU build does on a machine with no GPU.

    Its own provider check still knows better: asked for CUDA it warns and opens a CPU session.
    """
    listed = ort.get_available_providers() + ["CUDAExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: listed)
    return ort


def test_a_cuda_session_is_refused_when_this_onnxruntime_has_no_cuda_provider(ort):
    from conformance.adapters.onnx.runtime import ProviderUnavailable, _identity_model, make_session

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has the CUDA provider")
    with pytest.raises(ProviderUnavailable, match="needs CUDAExecutionProvider, which this onnxruntime build lacks"):
        make_session(_identity_model(), "cuda")


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider' is not in available provider names")
def test_a_cuda_session_that_onnxruntime_opens_on_the_cpu_is_refused(gpu_build_without_a_gpu):
    from conformance.adapters.onnx.runtime import ProviderUnavailable, _identity_model, make_session

    with pytest.raises(ProviderUnavailable, match=r"opened the session on \['CPUExecutionProvider'\] instead"):
        make_session(_identity_model(), "cuda")


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider' is not in available provider names")
def test_a_listed_cuda_provider_that_opens_no_cuda_session_is_no_cuda_device(gpu_build_without_a_gpu):
    from conformance.adapters.onnx import runtime as onnx_runtime

    assert onnx_runtime.devices() == ["cpu"]


def test_onnx_torch_refuses_a_cuda_row_it_cannot_run_on_cuda_instead_of_running_it_on_the_cpu(ort):
    for module in ("torch", "onnxscript"):
        pytest.importorskip(module)
    from conformance.adapters.onnx import runtime as onnx_runtime
    from conformance.adapters.onnx.torch_export import OnnxTorchAdapter

    if "cuda" in onnx_runtime.devices():
        pytest.skip("onnxruntime runs CUDA sessions here")
    with pytest.raises(onnx_runtime.ProviderUnavailable, match="CUDAExecutionProvider"):
        OnnxTorchAdapter().run(CASES[PLAIN_LSTM].for_dtype("float32"), "cuda")


# --- locating exported weights (onnx-keras) -------------------------------------------------


def _initializer_model(*arrays: np.ndarray):
    from onnx import helper, numpy_helper

    graph = helper.make_graph([], "g", [], [], initializer=[numpy_helper.from_array(a, f"t{n}")
                                                             for n, a in enumerate(arrays)])
    return helper.make_model(graph)


def test_exported_weights_are_located_through_transposes_and_zero_padding():
    pytest.importorskip("onnx")
    from conformance.adapters.onnx.keras_export import locate_weights

    probe = np.array([0.1, -0.2, 0.3, -0.4], dtype=np.float32)
    model = _initializer_model(probe[[3, 1]], np.array([[0.3, 0.0], [0.1, 0.0]], np.float32))
    slots = locate_weights(model, probe)
    new = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
    assert [slot.value(new).tolist() for slot in slots] == [[4.0, 2.0], [[3.0, 0.0], [1.0, 0.0]]]


@pytest.mark.parametrize("arrays", [
    (np.array([0.1, -0.2, 0.3, 7.0], np.float32),),  # a foreign value beside weights
    (np.array([0.1, -0.2, 0.3], np.float32),),  # a weight that appears nowhere
], ids=["mixed", "missing"])
def test_weights_that_cannot_be_located_verbatim_are_refused(arrays):
    pytest.importorskip("onnx")
    from conformance.adapters.onnx.keras_export import LocateError, locate_weights

    with pytest.raises(LocateError):
        locate_weights(_initializer_model(*arrays), np.array([0.1, -0.2, 0.3, -0.4], np.float32))
