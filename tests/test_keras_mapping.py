"""The Keras adapters' conversions: spec -> layer arguments, weights, output list, kernel rules.

The pure parts (argument names, weight order, activation mapping, which
kernel Keras picks) are checked without a framework; the rest builds real
layers with whichever Keras 3 backend this process has (tensorflow unless
``KERAS_BACKEND`` says otherwise), and tf_keras where installed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conformance.adapters.keras.common import (
    Structure,
    cudnn_mask_ok,
    layer_kwargs,
    mask_reaching,
    output_list,
    summarize_kernels,
    weight_list,
)
from conformance.adapters.keras.keras3 import (
    LEGACY_HARD_SIGMOID_NOTE,
    JaxBackend,
    KerasJaxAdapter,
    KerasTensorflowAdapter,
    KerasTorchAdapter,
    TensorflowBackend,
    TorchBackend,
    keras_activation,
    legacy_hard_sigmoid,
    loaded_keras_backend,
)
from conformance.adapters.keras.tf_keras import tf_keras_activation, tf_keras_kernel
from conformance.matrix.cases import build_cases, mask_with_empty_row, mask_with_holes, right_padded_mask
from conformance.matrix.spec import BidirectionalSpec, EncoderDecoderSpec, LayerSpec, StackedSpec
from conformance.reference import expected_outputs

ADAPTERS = {"tensorflow": KerasTensorflowAdapter, "jax": KerasJaxAdapter, "torch": KerasTorchAdapter}
GATE_PERMUTATIONS = {"lstm": (1, 0, 2, 3), "gru": (1, 0, 2)}  # swap i<->f / z<->r


# --- pure mapping: no framework ----------------------------------------------------------------


def test_lstm_kwargs_use_keras_argument_names():
    spec = LayerSpec("lstm", 4, return_sequences=True, go_backwards=True, recurrent_activation="hard_sigmoid")
    kwargs = layer_kwargs(spec, keras_activation, "float64")
    assert kwargs["units"] == 4 and kwargs["return_sequences"] and kwargs["go_backwards"]
    assert kwargs["recurrent_activation"] == "hard_sigmoid" and kwargs["dtype"] == "float64"
    assert "reset_after" not in kwargs


def test_simple_rnn_kwargs_have_no_recurrent_activation():
    assert "recurrent_activation" not in layer_kwargs(LayerSpec("simple_rnn", 2), keras_activation, "float32")


def test_gru_kwargs_carry_reset_after_and_zero_output_for_mask():
    spec = LayerSpec("gru", 2, reset_after=False, zero_output_for_mask=True)
    kwargs = layer_kwargs(spec, keras_activation, "float32")
    assert kwargs["reset_after"] is False and kwargs["zero_output_for_mask"] is True


def test_weight_list_is_kernel_recurrent_bias_and_drops_absent_bias():
    weights = {"kernel": np.zeros((3, 8)), "recurrent_kernel": np.ones((2, 8)), "bias": np.full(8, 2.0)}
    ordered = weight_list(LayerSpec("lstm", 2), weights)
    assert [w[0, 0] if w.ndim == 2 else w[0] for w in ordered] == [0.0, 1.0, 2.0]
    no_bias = {k: v for k, v in weights.items() if k != "bias"}
    assert len(weight_list(LayerSpec("lstm", 2, use_bias=False), no_bias)) == 2


def test_keras3_maps_legacy_hard_sigmoid_to_a_callable_and_the_rest_to_builtins():
    assert keras_activation("hard_sigmoid") == "hard_sigmoid"
    assert keras_activation("legacy_hard_sigmoid") is legacy_hard_sigmoid


def test_tf_keras_passes_both_hard_sigmoids_as_the_name_keras_2_code_writes():
    assert tf_keras_activation("legacy_hard_sigmoid") == "hard_sigmoid"
    assert tf_keras_activation("hard_sigmoid") == "hard_sigmoid"


def test_output_list_flattens_bidirectional_pairs_and_wraps_single_tensors():
    assert output_list("y") == ["y"]
    assert output_list((("y_fw", "y_bw"), "h_fw", "h_bw")) == ["y_fw", "y_bw", "h_fw", "h_bw"]


def test_cudnn_mask_rule_accepts_only_right_padding_without_empty_rows():
    assert cudnn_mask_ok(None) and cudnn_mask_ok(right_padded_mask(4, 5))
    assert not cudnn_mask_ok(mask_with_holes(4, 5))
    assert not cudnn_mask_ok(mask_with_empty_row(4, 5))


def test_kernel_rules_follow_each_backends_dispatch():
    lstm, gru_before = LayerSpec("lstm", 2), LayerSpec("gru", 2, reset_after=False)
    holes = mask_with_holes(3, 5)
    tensorflow, torch, jax = TensorflowBackend(), TorchBackend(), JaxBackend()
    assert tensorflow.kernel(lstm, "cpu", None) == "generic"
    assert tensorflow.kernel(lstm, "cuda", None) == "cudnn"
    assert tensorflow.kernel(lstm, "cuda", holes) == "generic"
    assert tensorflow.kernel(gru_before, "cuda", None) == "generic"
    assert torch.kernel(lstm, "cpu", None) == "backend_loop"
    assert torch.kernel(lstm, "cuda", right_padded_mask(3, 5)) == "generic"
    assert torch.kernel(gru_before, "cpu", None) == "generic"
    assert jax.kernel(LayerSpec("gru", 2), "cpu", None) == "backend_loop"
    assert jax.kernel(lstm, "cuda", None) == "cudnn"
    assert jax.kernel(LayerSpec("simple_rnn", 2), "cuda", None) == "generic"
    assert tf_keras_kernel(LayerSpec("lstm", 2, activation="relu"), "cuda", None) == "generic"


def test_every_sub_layer_but_the_decoder_sees_the_mask():
    mask = right_padded_mask(3, 5)
    stacked = StackedSpec((LayerSpec("gru", 2, return_sequences=True), LayerSpec("gru", 2)))
    assert all(mask_reaching(stacked, name, mask) is mask for name in stacked.sublayers())
    encdec = EncoderDecoderSpec(LayerSpec("lstm", 2, return_state=True), LayerSpec("lstm", 2))
    assert mask_reaching(encdec, "encoder", mask) is mask
    assert mask_reaching(encdec, "decoder", mask) is None


def test_kernel_summary_names_mixed_composites():
    assert summarize_kernels({"a": "cudnn", "b": "cudnn"})["kernel"] == "cudnn"
    assert summarize_kernels({"a": "backend_loop"})["kernel"] == "generic"
    assert summarize_kernels({"encoder": "cudnn", "decoder": "generic"})["kernel"] == "mixed"


# --- real Keras 3 -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", loaded_keras_backend() or "tensorflow")
    return pytest.importorskip("keras")


@pytest.fixture(scope="module")
def adapter(keras):
    adapter = ADAPTERS[keras.backend.backend()]()
    assert adapter.available() is None
    return adapter


def _call(keras, layer: LayerSpec, batch: int = 2, steps: int = 3):
    rnn = getattr(keras.layers, layer.keras_class)(**layer_kwargs(layer, keras_activation, "float32"))
    return output_list(rnn(np.zeros((batch, steps, 3), dtype=np.float32)))


@pytest.mark.parametrize("cell,expected", [("simple_rnn", 2), ("gru", 2), ("lstm", 3)])
def test_return_state_list_length(keras, cell, expected):
    """GRU(return_state=True) returns 2 tensors [output, h]; LSTM 3 [output, h, c]."""
    assert len(_call(keras, LayerSpec(cell, 4, return_state=True))) == expected


def test_plain_layer_returns_one_tensor(keras):
    (output,) = _call(keras, LayerSpec("lstm", 4, return_sequences=True))
    assert tuple(output.shape) == (2, 3, 4)


def test_bidirectional_merge_none_with_states_lists_both_outputs_then_states(keras):
    """[y_fw, y_bw, h_fw, c_fw, h_bw, c_bw]: with return_sequences the two outputs are the (batch, T, units) ones."""
    inner = keras.layers.LSTM(4, return_sequences=True, return_state=True)
    outputs = output_list(keras.layers.Bidirectional(inner, merge_mode=None)(np.zeros((2, 3, 3), "float32")))
    assert [tuple(t.shape) for t in outputs] == [(2, 3, 4)] * 2 + [(2, 4)] * 4


def test_another_backends_adapter_is_unavailable_in_this_process(keras):
    other = next(cls for name, cls in ADAPTERS.items() if name != keras.backend.backend())()
    reason = other.available()
    assert reason and f"already imported with backend {keras.backend.backend()}" in reason


def _per_gate_case(cell: str):
    return next(c for c in build_cases() if c.id == f"{cell}-seq1-state1-per_gate-b3t7").for_dtype("float32")


def _permute_gates(weights: dict[str, np.ndarray], order: tuple[int, ...]) -> dict[str, np.ndarray]:
    def permute(array: np.ndarray) -> np.ndarray:
        blocks = np.split(array, len(order), axis=-1)
        return np.concatenate([blocks[i] for i in order], axis=-1)

    return {name: permute(value) for name, value in weights.items()}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_per_gate_weights_match_the_oracle_and_a_gate_swap_does_not(adapter, cell):
    case = _per_gate_case(cell)
    tol = case.tolerance()
    want = expected_outputs(case)
    for got, expected in zip(adapter.run(case, "cpu"), want):
        np.testing.assert_allclose(got, expected, atol=tol.atol, rtol=tol.rtol)
    swapped = dataclasses.replace(case, weights={"layer": _permute_gates(case.weights["layer"],
                                                                          GATE_PERMUTATIONS[cell])})
    error = max(np.abs(g - w).max() for g, w in zip(adapter.run(swapped, "cpu"), want))
    assert error > 100 * (tol.atol + tol.rtol)


def test_legacy_hard_sigmoid_case_is_labelled_custom(adapter):
    case = next(c for c in build_cases() if c.id.endswith("lstm-seq0-state0-random-b3t5-legacy_hard_sigmoid"))
    case = case.for_dtype("float32")
    got = adapter.run(case, "cpu")
    np.testing.assert_allclose(got[0], expected_outputs(case)[0], atol=1e-5, rtol=1e-5)
    assert adapter.last_run_info()["custom_activations"] == {"legacy_hard_sigmoid": LEGACY_HARD_SIGMOID_NOTE}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("masked", [False, True], ids=["no_mask", "mask"])
def test_cpu_kernel_rule_agrees_with_the_backends_own_dispatch(keras, adapter, cell, masked):
    """``backend.lstm/gru`` raising NotImplementedError is Keras falling back to the generic loop."""
    from keras.src import activations, backend

    layer = LayerSpec(cell, 2)
    x = np.zeros((2, 3, 3), "float32")
    mask = np.ones((2, 3), bool) if masked else None
    width = 4 if cell == "lstm" else 3
    bias = np.zeros((width * 2,) if cell == "lstm" else (2, width * 2), "float32")
    args = {"mask": mask, "kernel": np.zeros((3, width * 2), "float32"),
            "recurrent_kernel": np.zeros((2, width * 2), "float32"), "bias": bias,
            "activation": activations.tanh, "recurrent_activation": activations.sigmoid}
    states = [np.zeros((2, 2), "float32")]
    try:
        if cell == "lstm":
            backend.lstm(x, states[0], states[0], **args)
        else:
            backend.gru(x, states[0], **args)
        taken = "fused"
    except NotImplementedError:
        taken = "generic"
    predicted = adapter.backend.kernel(layer, "cpu", mask)
    assert taken == ("generic" if predicted == "generic" else "fused")


# --- real tf_keras ------------------------------------------------------------------------------


def _stateful_unrolled_case():
    """An unrolled stateful LSTM: its earlier call has 4 steps, the case's call 3."""
    from conformance.matrix.drawn import Draw, drawn_case

    draw = Draw(cell="lstm", unroll=True, stateful="carry", steps=3, batch=2, features=2, units=2, scheme="random")
    case = drawn_case(draw.normalized()).for_dtype("float32")
    assert case.earlier_x.shape[1] != case.x.shape[1]
    return case


def _within_tolerance(got: list[np.ndarray], case) -> None:
    tol = case.tolerance()
    for tensor, expected in zip(got, expected_outputs(case)):
        np.testing.assert_allclose(tensor, expected, atol=tol.atol, rtol=tol.rtol)


def test_an_unrolled_stateful_layer_makes_its_earlier_call_at_that_calls_own_length(adapter):
    """Keras unrolls only over a defined length, so the model is built for the case's steps; the earlier
    call (another length) goes through a model over the same layers, and the state it leaves carries
    into the case's call, as the oracle's answer requires (keras-jax carries none: FINDINGS 15)."""
    if adapter.name == "keras-jax":
        pytest.skip("Keras 3 on JAX carries no state between calls (FINDINGS 15)")
    _within_tolerance(adapter.run(_stateful_unrolled_case(), "cpu"), _stateful_unrolled_case())


def test_tf_keras_unrolled_stateful_layer_makes_its_earlier_call_at_that_calls_own_length():
    pytest.importorskip("tf_keras")
    from conformance.adapters.keras.tf_keras import TfKerasAdapter

    case = _stateful_unrolled_case()
    _within_tolerance(TfKerasAdapter().run(case, "cpu"), case)


def test_tf_keras_gru_return_state_returns_two_tensors():
    tf_keras = pytest.importorskip("tf_keras")
    layer = tf_keras.layers.GRU(4, return_state=True)
    assert len(output_list(layer(np.zeros((2, 3, 3), "float32")))) == 2


def tf_keras_run(case_suffix: str) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    pytest.importorskip("tf_keras")
    from conformance.adapters.keras.tf_keras import TfKerasAdapter

    adapter = TfKerasAdapter()
    case = next(c for c in build_cases() if c.id.endswith(case_suffix)).for_dtype("float32")
    return adapter.run(case, "cpu"), expected_outputs(case), adapter.last_run_info()


def test_tf_keras_adapter_runs_the_legacy_hard_sigmoid_as_its_builtin_name_and_says_so():
    from conformance.adapters.keras.tf_keras import LEGACY_HARD_SIGMOID_NOTE

    got, want, info = tf_keras_run("gru-seq1-state1-random-b3t5-legacy_hard_sigmoid")
    for tensor, expected in zip(got, want):
        np.testing.assert_allclose(tensor, expected, atol=1e-5, rtol=1e-5)
    assert info["custom_activations"] == {"legacy_hard_sigmoid": LEGACY_HARD_SIGMOID_NOTE}


def test_tf_keras_hard_sigmoid_by_name_is_not_keras_3s_the_migration_trap():
    """Unchanged Keras 2 code's "hard_sigmoid" is 0.2x + 0.5, not Keras 3's x/6 + 0.5: the
    oracle (Keras 3's meaning) and tf_keras differ by far more than float32 rounding."""
    got, want, _ = tf_keras_run("lstm-seq1-state0-random-b3t5-hard_sigmoid")
    assert np.abs(got[0] - want[0]).max() > 1e-3


def test_bidirectional_spec_builds_one_keras_bidirectional(adapter):
    case = next(c for c in build_cases() if c.id == "gru-seq1-state1-random-b3t5-bidi_none").for_dtype("float32")
    assert isinstance(case.spec, BidirectionalSpec)
    got = adapter.run(case, "cpu")
    model = adapter.models.built[Structure.of(case, "cpu").key()].model
    wrappers = [layer for layer in model.layers if type(layer).__name__ == "Bidirectional"]
    assert len(wrappers) == 1 and type(wrappers[0].forward_layer).__name__ == "GRU"
    assert [g.shape for g in got] == [(3, 5, 4), (3, 5, 4), (3, 4), (3, 4)]


def _masking_case():
    case = next(c for c in build_cases() if c.id == "gru-seq0-state0-random-b3t5-masking_holes")
    return case.for_dtype("float32")


def _gru(module, case, tensor=np.asarray):
    """A GRU with the case's weights; ``tensor`` converts the arrays it is called on."""
    gru = module.layers.GRU(4)
    gru(tensor(case.x), initial_state=[tensor(case.initial_state[0])], mask=tensor(case.mask))
    gru.set_weights(weight_list(case.layer, case.weights["layer"]))
    return gru


# Keras's torch backend converts a tensor the old way (backend/torch/core.py, convert_to_numpy).
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_keras_3_drops_a_masking_layers_mask_when_initial_state_is_passed(keras):
    """FINDINGS: Keras 3's Layer.__call__ fills in mask= from the input only for a call with one
    tensor argument; with initial_state the Masking layer's mask is dropped, and the answer is
    the unmasked one exactly, while mask= passed explicitly gives the oracle's."""
    numpy = keras.ops.convert_to_numpy
    case = _masking_case()
    want = expected_outputs(case)[0]
    gru, state = _gru(keras, case), [case.initial_state[0]]
    masked_x = keras.layers.Masking(mask_value=0.0)(case.x)
    from_masking = numpy(gru(masked_x, initial_state=state))
    np.testing.assert_allclose(numpy(gru(case.x, initial_state=state, mask=case.mask)), want,
                               atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(from_masking, numpy(gru(case.x, initial_state=state)))
    assert np.abs(from_masking - want).max() > 0.1
    np.testing.assert_allclose(numpy(gru(masked_x)), numpy(gru(case.x, mask=case.mask)),
                               atol=1e-6)  # without initial_state the mask does propagate


def test_tf_keras_propagates_a_masking_layers_mask_beside_initial_state():
    tf_keras = pytest.importorskip("tf_keras")
    import tensorflow as tf

    case = _masking_case()
    gru = _gru(tf_keras, case, tf.constant)
    masked_x = tf_keras.layers.Masking(mask_value=0.0)(tf.constant(case.x))
    got = gru(masked_x, initial_state=[tf.constant(case.initial_state[0])])
    np.testing.assert_allclose(np.asarray(got), expected_outputs(case)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_keras_3_predict_carries_a_stateful_layers_state_on_every_backend_but_jax(backend):
    """FINDINGS: Keras 3 keeps a stateful RNN's state in variables the model does not track
    (rnn.py ``_create_state_variables`` under ``no_automatic_dependency_tracking``); JAX's
    predict is a ``stateless_call`` that drops their update, so every predict starts from zeros.
    Eager calls carry the state on every backend, predict on TensorFlow and torch too."""
    pytest.importorskip(backend)
    pytest.importorskip("keras")
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "tests.stateful_probe"], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parent.parent, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["backend"] == backend and not seen["state_tracked"]
    assert seen["eager"]["carried"] < 1e-5 < 1e-2 < seen["eager"]["from_zeros"]
    carried, lost = ("from_zeros", "carried") if backend == "jax" else ("carried", "from_zeros")
    assert seen["predict"][carried] < 1e-5 and seen["predict"][lost] > 1e-2
