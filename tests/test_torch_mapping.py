"""The Keras -> PyTorch weight, state and mask conventions (conformance/adapters/torch/mapping.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conformance.adapters.torch import mapping as torch_mapping
from conformance.adapters.torch.mapping import (
    reorder_gate_blocks,
    torch_initial_states,
    torch_layer_params,
    torch_module_params,
)
from conformance.matrix.cases import build_cases
from conformance.matrix.spec import LayerSpec
from conformance.reference import expected_outputs


def _blocks(*values: float, units: int = 2) -> np.ndarray:
    """A (1, G*units) row whose gate blocks hold the given constants."""
    return np.repeat(np.asarray(values, dtype=np.float64), units)[None, :]


def _keras_weights(layer: LayerSpec, features: int, bias_shape: tuple[int, ...] | None) -> dict:
    width = len(layer.gates) * layer.units
    rng = np.random.default_rng(0)
    weights = {"kernel": rng.normal(size=(features, width)),
               "recurrent_kernel": rng.normal(size=(layer.units, width))}
    if bias_shape is not None:
        weights["bias"] = rng.normal(size=bias_shape)
    return weights


def test_lstm_gate_blocks_keep_keras_order_i_f_c_o():
    assert np.array_equal(reorder_gate_blocks(_blocks(1, 2, 3, 4), "lstm"), _blocks(1, 2, 3, 4))


def test_gru_gate_blocks_go_from_keras_z_r_h_to_torch_r_z_n():
    assert np.array_equal(reorder_gate_blocks(_blocks(1, 2, 3), "gru"), _blocks(2, 1, 3))


def test_weights_are_keras_kernels_transposed():
    layer = LayerSpec("lstm", 4)  # i, f, c, o in both frameworks: nothing but the transpose
    weights = _keras_weights(layer, 3, (16,))
    params = torch_layer_params(layer, weights)
    assert params["weight_ih_l0"].shape == (16, 3) and np.array_equal(params["weight_ih_l0"], weights["kernel"].T)
    assert params["weight_hh_l0"].shape == (16, 4)
    assert np.array_equal(params["weight_hh_l0"], weights["recurrent_kernel"].T)


def test_single_keras_bias_goes_to_b_ih_with_zero_b_hh():
    layer = LayerSpec("simple_rnn", 4)
    weights = _keras_weights(layer, 3, (4,))
    params = torch_layer_params(layer, weights)
    assert np.array_equal(params["bias_ih_l0"], weights["bias"])
    assert not params["bias_hh_l0"].any()


def test_gru_reset_after_bias_rows_become_b_ih_and_b_hh_in_torch_gate_order():
    layer = LayerSpec("gru", 2)
    weights = _keras_weights(layer, 3, None)
    weights["bias"] = np.concatenate([_blocks(1, 2, 3), _blocks(4, 5, 6)])
    params = torch_layer_params(layer, weights)
    assert np.array_equal(params["bias_ih_l0"], _blocks(2, 1, 3)[0])
    assert np.array_equal(params["bias_hh_l0"], _blocks(5, 4, 6)[0])


def test_use_bias_false_gives_no_bias_parameters():
    layer = LayerSpec("gru", 4, use_bias=False)
    assert set(torch_layer_params(layer, _keras_weights(layer, 3, None))) == {"weight_ih_l0", "weight_hh_l0"}


def test_bidirectional_backward_weights_take_torch_reverse_names():
    layer = LayerSpec("simple_rnn", 4)
    weights = _keras_weights(layer, 3, (4,))
    assert set(torch_module_params([(layer, weights), (layer, weights)])) == {
        f"{kind}_{m}_l0{suffix}" for kind in ("weight", "bias") for m in ("ih", "hh")
        for suffix in ("", "_reverse")}


def test_keras_flat_states_stack_into_directions_axis_per_state():
    h_fw, c_fw, h_bw, c_bw = (np.full((3, 4), v) for v in (1.0, 2.0, 3.0, 4.0))
    h0, c0 = torch_initial_states((h_fw, c_fw, h_bw, c_bw), n_states=2, directions=2)
    assert h0.shape == c0.shape == (2, 3, 4)
    assert (h0[0] == 1).all() and (h0[1] == 3).all() and (c0[0] == 2).all() and (c0[1] == 4).all()


# --- with torch: the mapping against the oracle ----------------------------------------------------


def _case(case_id: str):
    return next(case for case in build_cases() if case.id == case_id).for_dtype("float32")


def _max_error(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    return max(float(np.abs(g.astype(np.float64) - w).max()) for g, w in zip(got, want))


@pytest.mark.parametrize("case_id, wrong_order", [
    ("lstm-seq1-state1-per_gate-b2t5", (0, 3, 1, 2)),  # ONNX's i, o, f, c: a plausible mix-up
    ("gru-seq1-state1-per_gate-b2t5", (0, 1, 2)),  # GRU left in Keras's z, r, h order
])
def test_per_gate_case_matches_oracle_only_with_torch_gate_order(case_id, wrong_order, monkeypatch):
    pytest.importorskip("torch")
    from conformance.adapters.torch.adapter import TorchAdapter

    case = _case(case_id)
    want = expected_outputs(case)
    tolerance = case.tolerance()
    assert _max_error(TorchAdapter().run(case, "cpu"), want) <= tolerance.atol

    cell = case.cell
    monkeypatch.setitem(torch_mapping.TORCH_GATE_ORDER, cell, wrong_order)
    assert _max_error(TorchAdapter().run(case, "cpu"), want) > 1e-3


def test_a_float64_case_comes_back_in_the_float64_torch_computed():
    pytest.importorskip("torch")
    from conformance.adapters.torch.adapter import TorchAdapter

    case = _case("lstm-seq1-state1-per_gate-b2t5").for_dtype("float64")
    assert [output.dtype for output in TorchAdapter().run(case, "cpu")] == [np.float64] * 3


def test_outputs_keep_the_dtype_torch_gave_and_so_fail_the_dtype_check(monkeypatch):
    """A framework answering a float64 case in float32 must show as a dtype failure, not be cast to
    float64 on the way out. Torch is made to answer in float32 where its result leaves torch."""
    pytest.importorskip("torch")
    from conformance.adapters.torch.adapter import TorchAdapter
    from conformance.verdict.check import check_case

    monkeypatch.setattr(TorchAdapter, "host_array", lambda self, tensor: tensor.float().numpy())
    case = _case("gru-seq1-state1-per_gate-b2t5").for_dtype("float64")
    case = dataclasses.replace(case, expected=tuple(expected_outputs(case)))
    outcome = check_case(TorchAdapter(), case, "cpu")
    assert outcome.status == "fail"
    assert [t.actual_dtype for t in outcome.verdict.tensors] == ["float32", "float32"]
    assert outcome.verdict.tensors[0].problem == "output: dtype float32, expected float64"
