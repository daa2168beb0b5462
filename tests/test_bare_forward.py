"""``bare_forward(case, device)``: the bare framework call ``conformance bench`` times.

The closure must compute the very forward pass ``run`` computes (else the
overhead figure compares different work): on plain ``return_sequences=True``
cases its raw first output, converted here, equals ``run``'s first output.
Composite specs only have to run.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from conformance.adapters import load_adapter
from conformance.adapters.keras.keras3 import loaded_keras_backend
from conformance.fixtures import load_cases
from conformance.matrix.spec import BidirectionalSpec, LayerSpec

# Plain sequence-returning layers, one per cell, unmasked, one with an initial state.
SEQUENCE_CASES = ("simple_rnn-seq1-state0-random-b3t5", "lstm-seq1-state0-random-b3t5-initial_state",
                  "gru-seq1-state0-per_gate-b3t7")


@functools.cache
def _cases() -> dict:
    return {case.id: case for case in load_cases()}


def _sequence_cases(dtype: str = "float32") -> list:
    return [_cases()[case_id].for_dtype(dtype) for case_id in SEQUENCE_CASES]


def _first_supported(adapter, spec_type: type):
    """The first float32 case of ``spec_type`` (masked or not) that ``adapter`` supports."""
    for case in _cases().values():
        bound = case.for_dtype("float32")
        if isinstance(case.spec, spec_type) and not adapter.supports(bound):
            return bound
    pytest.skip(f"{adapter.name} supports no {spec_type.__name__} case")


# Each framework's raw result -> its sequence output as numpy (the test converts; adapters may not).
FIRST_OUTPUT = {
    "torch": lambda raw: raw[0].numpy(),  # (output, h_n[, c_n])
    "onnx-torch": lambda raw: raw[0],  # session.run's list
    "flax": lambda raw: np.asarray(raw["layer"][1]),  # {sub-layer: (carry, sequence)}
    "tf-keras": lambda raw: raw.numpy(),  # a bare tensor: one output
    "keras-tensorflow": lambda raw: raw.numpy(),
}


def _assert_bare_matches_run(adapter_name: str, dtypes: tuple[str, ...] = ("float32",)) -> None:
    adapter = load_adapter(adapter_name)
    reason = adapter.available()
    if reason:
        pytest.skip(reason)
    compared = 0
    for dtype in dtypes:
        for case in _sequence_cases(dtype):
            assert isinstance(case.spec, LayerSpec) and case.output_names == ["output"]
            if adapter.supports(case):
                continue
            expected = adapter.run(case, "cpu")[0]
            forward = adapter.bare_forward(case, "cpu")
            forward()
            bare = FIRST_OUTPUT[adapter_name](forward())
            np.testing.assert_array_equal(bare, expected, err_msg=f"{case.id}[{dtype}]")
            assert bare.dtype == expected.dtype == np.dtype(dtype), f"{case.id}[{dtype}]"  # run casts nothing
            compared += 1
    assert compared, f"{adapter_name} supports none of {SEQUENCE_CASES}"


# --- torch -------------------------------------------------------------------------------------


def test_torch_bare_forward_computes_what_run_returns():
    pytest.importorskip("torch")
    _assert_bare_matches_run("torch", ("float32", "float64"))


def test_torch_bare_forward_replays_a_stack_to_its_last_sequence():
    pytest.importorskip("torch")
    adapter = load_adapter("torch")
    case = _cases()["gru-seq1-state1-random-b3t5-stacked"].for_dtype("float32")
    replay = adapter.bare_forward(case, "cpu")()
    assert len(replay) == len(case.spec.sublayers())
    np.testing.assert_array_equal(replay[-1][0].numpy(), adapter.run(case, "cpu")[0])


def test_torch_bare_forward_keeps_encoder_and_decoder_weights_apart(monkeypatch):
    """Encoder and decoder of one structure share ``run``'s cached module; the replayed
    encoder must still hold the encoder's weights: its h_n is the state run handed the decoder."""
    pytest.importorskip("torch")
    adapter = load_adapter("torch")
    case = _cases()["lstm-seq1-state0-random-b3t5-encdec"].for_dtype("float32")
    handed_states, run_module = [], adapter.adapter._run_module

    def spy(key, params, x, lengths, states):
        handed_states.append(states)
        return run_module(key, params, x, lengths, states)

    monkeypatch.setattr(adapter.adapter, "_run_module", spy)
    encoder, decoder = adapter.bare_forward(case, "cpu")()
    np.testing.assert_array_equal(encoder[1].numpy(), handed_states[1][0])  # h_n: (1, batch, units)
    np.testing.assert_array_equal(decoder[0].numpy(), adapter.run(case, "cpu")[0])


def test_onnx_torch_bare_forward_computes_what_run_returns():
    for module in ("torch", "onnx", "onnxruntime", "onnxscript"):
        pytest.importorskip(module)
    _assert_bare_matches_run("onnx-torch")


def test_onnx_torch_export_cache_off_exports_again_and_keeps_results():
    for module in ("torch", "onnx", "onnxruntime", "onnxscript"):
        pytest.importorskip(module)
    adapter = load_adapter("onnx-torch")
    case = _sequence_cases()[0]
    cached = adapter.run(case, "cpu")
    adapter.export_cache = False
    uncached = adapter.run(case, "cpu")
    assert adapter.adapter.export_cache is False  # the loaded adapter's switch is the adapter's own
    assert len(adapter.adapter._sessions) == 1  # the uncached run stored nothing
    np.testing.assert_array_equal(uncached[0], cached[0])


# --- flax ---------------------------------------------------------------------------------------


def test_flax_bare_forward_computes_what_run_returns():
    pytest.importorskip("jax")
    pytest.importorskip("flax.nnx")
    _assert_bare_matches_run("flax", ("float32", "float64"))


def test_flax_bare_forward_runs_a_bidirectional_case():
    pytest.importorskip("jax")
    pytest.importorskip("flax.nnx")
    adapter = load_adapter("flax")
    case = _first_supported(adapter, BidirectionalSpec)
    results = adapter.bare_forward(case, "cpu")()
    assert set(results) == {"forward", "backward"}
    assert results["forward"][1].shape[:2] == case.x.shape[:2]


# --- Keras --------------------------------------------------------------------------------------


def test_tf_keras_bare_forward_computes_what_run_returns():
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf_keras")
    _assert_bare_matches_run("tf-keras")


def test_keras_tensorflow_bare_forward_computes_what_run_returns():
    loaded = loaded_keras_backend()
    if loaded not in (None, "tensorflow"):
        pytest.skip(f"keras already imported with backend {loaded} in this process; "
                    "keras-tensorflow needs a process of its own")
    pytest.importorskip("tensorflow")
    _assert_bare_matches_run("keras-tensorflow")
