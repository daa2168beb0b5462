"""The Keras -> Flax NNX weight mapping: pure numpy first, then against real Flax.

The Flax part proves the mapping on per_gate weights, where every gate block
has its own constants: the right mapping matches the oracle and a gate-order
mistake (Keras's order taken for Flax's) misses it by far more than the tolerance.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conformance.adapters.flax import mapping as mapping
from conformance.matrix.cases import build_cases, mask_with_holes, right_padded_mask
from conformance.matrix.spec import BidirectionalSpec, LayerSpec, StackedSpec
from conformance.matrix.weights import make_weights

UNITS, FEATURES = 4, 3


def _weights(cell: str, **overrides) -> dict[str, np.ndarray]:
    layer = LayerSpec(cell, UNITS, **overrides)
    return make_weights(layer, FEATURES, "per_gate", np.random.default_rng(0))


def _blocks(matrix: np.ndarray) -> list[float]:
    """The constant of each UNITS-wide column block of a per_gate matrix."""
    return [float(block.flat[0]) for block in np.split(matrix, matrix.shape[-1] // UNITS, axis=-1)]


# --- pure numpy ----------------------------------------------------------------------------


def test_simple_rnn_bias_goes_to_the_input_projection_only():
    weights = _weights("simple_rnn")
    params = mapping.simple_rnn_params(LayerSpec("simple_rnn", UNITS), weights)
    assert set(params) == {("dense_i", "kernel"), ("dense_i", "bias"), ("dense_h", "kernel")}
    assert params[("dense_i", "kernel")] is weights["kernel"]
    assert np.array_equal(params[("dense_i", "bias")], weights["bias"])
    assert params[("dense_h", "kernel")] is weights["recurrent_kernel"]


def test_lstm_maps_keras_blocks_i_f_c_o_to_one_linear_per_gate():
    weights = _weights("lstm")
    params = mapping.lstm_params(LayerSpec("lstm", UNITS), weights)
    kernel, recurrent, bias = (_blocks(weights[k]) for k in ("kernel", "recurrent_kernel", "bias"))
    for n, (input_name, hidden_name) in enumerate(mapping.LSTM_GATE_MODULES):
        assert params[(input_name, "kernel")].shape == (FEATURES, UNITS)
        assert params[(hidden_name, "kernel")].shape == (UNITS, UNITS)
        assert _blocks(params[(input_name, "kernel")]) == [kernel[n]]
        assert _blocks(params[(hidden_name, "kernel")]) == [recurrent[n]]
        assert _blocks(params[(hidden_name, "bias")]) == [bias[n]]
        assert (input_name, "bias") not in params


def test_gru_reorders_z_r_h_to_r_z_n_and_folds_recurrent_biases_of_z_and_r():
    weights = _weights("gru")
    weights["bias"][1, 2 * UNITS:] = 0.0  # the candidate's recurrent bias: not expressible
    params = mapping.gru_params(LayerSpec("gru", UNITS), weights)
    z, r, h = _blocks(weights["kernel"])
    assert _blocks(params[("dense_i", "kernel")]) == [r, z, h]
    z, r, h = _blocks(weights["recurrent_kernel"])
    assert _blocks(params[("dense_h", "kernel")]) == [r, z, h]
    (bz, br, bh), (rbz, rbr, _) = _blocks(weights["bias"][0]), _blocks(weights["bias"][1])
    assert np.allclose(_blocks(params[("dense_i", "bias")]), [br + rbr, bz + rbz, bh])


def test_gru_candidate_recurrent_bias_is_not_expressible():
    layer = LayerSpec("gru", UNITS)
    weights = _weights("gru")
    assert "candidate" in mapping.gru_reason(layer, weights)
    weights["bias"][1, 2 * UNITS:] = 0.0
    assert mapping.gru_reason(layer, weights) is None
    assert mapping.gru_reason(layer, _weights("gru", use_bias=False)) is None


def test_gru_reset_before_is_not_expressible():
    layer = LayerSpec("gru", UNITS, reset_after=False)
    assert "reset_after=False" in mapping.gru_reason(layer, _weights("gru", reset_after=False))
    with pytest.raises(ValueError, match="reset-after only"):
        mapping.gru_params(layer, _weights("gru", reset_after=False))


def test_no_bias_gives_zero_flax_biases():
    weights = _weights("lstm", use_bias=False)
    params = mapping.lstm_params(LayerSpec("lstm", UNITS, use_bias=False), weights)
    assert all(not value.any() for path, value in params.items() if path[-1] == "bias")


def test_lstm_carry_is_c_then_h():
    h, c = np.zeros((1, UNITS)), np.ones((1, UNITS))
    carry = mapping.keras_states_to_carry("lstm", (h, c))
    assert carry[0] is c and carry[1] is h
    assert mapping.carry_to_keras_states("lstm", carry) == [h, c]


def test_legacy_hard_sigmoid_has_no_flax_function():
    assert "legacy_hard_sigmoid" in mapping.activation_reason(
        LayerSpec("lstm", UNITS, recurrent_activation="legacy_hard_sigmoid"))
    assert mapping.activation_reason(LayerSpec("lstm", UNITS, recurrent_activation="hard_sigmoid")) is None


def test_mask_reasons_follow_what_reaches_the_output_list():
    mask = right_padded_mask(3, 5)
    last = LayerSpec("gru", UNITS, return_state=True)
    assert mapping.mask_reason(last, mask) is None
    assert mapping.mask_reason(dataclasses.replace(last, return_sequences=True), mask) == mapping.SEQUENCE_UNDER_MASK
    assert mapping.mask_reason(BidirectionalSpec(dataclasses.replace(last, return_sequences=True)), mask) \
        == mapping.SEQUENCE_UNDER_MASK
    # The first layer's padded outputs are masked out of the second layer's state.
    stacked = StackedSpec((LayerSpec("gru", 5, return_sequences=True), last))
    assert mapping.mask_reason(stacked, mask) is None
    assert "zero_output_for_mask" in mapping.mask_reason(
        dataclasses.replace(last, zero_output_for_mask=True), mask)
    assert "holes" in mapping.mask_reason(last, mask_with_holes(3, 5))


# --- against real Flax ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adapter():
    pytest.importorskip("jax")
    pytest.importorskip("flax.nnx")
    from conformance.adapters.flax.adapter import FlaxAdapter

    return FlaxAdapter()


def _case(case_id: str, dtype: str = "float32"):
    return next(case for case in build_cases() if case.id == case_id).for_dtype(dtype)


def _max_error(adapter, case, weights=None) -> float:
    """How far Flax, given ``weights`` (default: the case's own), is from the oracle's answer."""
    from conformance.reference import expected_outputs

    got = adapter.run(case if weights is None else _with_layer_weights(case, weights), "cpu")
    return max(float(np.abs(g - w).max()) for g, w in zip(got, expected_outputs(case)))


def _swap_blocks(weights: dict[str, np.ndarray], first: int, second: int) -> dict[str, np.ndarray]:
    """Keras weights with two gate blocks exchanged in every matrix: a gate-order mistake."""
    def swap(matrix):
        blocks = np.split(matrix, matrix.shape[-1] // UNITS, axis=-1)
        blocks[first], blocks[second] = blocks[second], blocks[first]
        return np.concatenate(blocks, axis=-1)
    return {name: swap(value) for name, value in weights.items()}


def _with_layer_weights(case, weights):
    return dataclasses.replace(case, weights={"layer": weights})


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lstm_per_gate_matches_oracle_and_gate_swap_does_not(adapter, dtype):
    case = _case("lstm-seq1-state1-per_gate-b2t5", dtype)
    tolerance = case.tolerance().atol
    assert _max_error(adapter, case) < tolerance
    assert _max_error(adapter, case, _swap_blocks(case.weights["layer"], 0, 1)) > 100 * tolerance  # i <-> f


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gru_per_gate_matches_oracle_and_keras_order_taken_for_flax_does_not(adapter, dtype):
    case = _case("gru-seq1-state1-per_gate-b2t5", dtype)
    weights = {name: value.copy() for name, value in case.weights["layer"].items()}
    weights["bias"][1, 2 * UNITS:] = 0.0  # GRUCell has no recurrent bias for the candidate
    case = _with_layer_weights(case, weights)
    tolerance = case.tolerance().atol
    assert adapter.supports(case) is None
    assert _max_error(adapter, case) < tolerance
    # z <-> r: what reading Keras's z, r, h as Flax's r, z, n would do.
    assert _max_error(adapter, case, _swap_blocks(weights, 0, 1)) > 100 * tolerance


def test_new_weights_reuse_the_compiled_forward(adapter):
    case = _case("simple_rnn-seq0-state1-random-b3t5")
    adapter.run(case, "cpu")
    adapter.run(_case("simple_rnn-seq1-state0-random-b3t5"), "cpu")
    assert adapter.last_run_info()["jit_traced"] is False


def test_float64_runs_do_not_enable_x64_for_the_process(adapter):
    import jax

    adapter.run(_case("lstm-seq0-state0-random-b3t5", "float64"), "cpu")
    assert not jax.config.jax_enable_x64
