"""The oracle against the tutorials' case, derived by hand in plain Python.

Set-up (the tutorials'): units 1, x = [0.1, 0.2, 0.3, 0.1, 0.2, 0.3] reshaped to
(1, 3, 2), so the steps are (0.1, 0.2), (0.3, 0.1), (0.2, 0.3); every kernel and
recurrent weight 0.1, bias 0 (LSTM: forget block 1, by unit_forget_bias). Every
number is the float32 nearest it, as in the case matrix (float32 numbers are
what both dtypes share), so the derivations use those values and the oracle
must agree to the last few bits (relative 1e-15), not merely to float32.

With one unit and one constant per matrix every gate sees the same
pre-activation; only the biases tell the gates apart. The derivations use
``math`` and the equations written out, never ``conformance.reference``.
"""

import math
import struct

import numpy as np
import pytest

from conformance.matrix.cases import build_cases
from conformance.matrix.spec import LayerSpec
from conformance.reference import forward


def f32(value: float) -> float:
    """The float32 nearest ``value``, as a Python float: what the case stores."""
    return struct.unpack("f", struct.pack("f", value))[0]


K = f32(0.1)  # every kernel weight
U = f32(0.1)  # every recurrent weight
FORGET_BIAS = 1.0  # LSTM's forget block, set by unit_forget_bias; every other bias is 0
STEPS = [(f32(0.1), f32(0.2)), (f32(0.3), f32(0.1)), (f32(0.2), f32(0.3))]  # (x_t1, x_t2), t = 1, 2, 3
TIGHT = 1e-15  # relative: a few float64 ulps for a different but equally exact evaluation order


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def simple_rnn_by_hand() -> tuple[list[float], list[float]]:
    """y_t = h_t = tanh(K x_t1 + K x_t2 + U h_{t-1}); returns ([y_1, y_2, y_3], [h_3])."""
    h, outputs = 0.0, []
    for x1, x2 in STEPS:
        z = K * x1 + K * x2 + U * h
        h = math.tanh(z)
        outputs.append(h)
    return outputs, [h]


def lstm_by_hand() -> tuple[list[float], list[float]]:
    """Keras gate order i, f, c, o, all on the one pre-activation z; returns ([y_t], [h_3, c_3])."""
    h = c = 0.0
    outputs = []
    for x1, x2 in STEPS:
        z = K * x1 + K * x2 + U * h
        i = sigmoid(z)  # input gate, bias 0
        f = sigmoid(z + FORGET_BIAS)  # forget gate, bias 1
        g = math.tanh(z)  # candidate cell, bias 0
        o = sigmoid(z)  # output gate, bias 0
        c = f * c + i * g
        h = o * math.tanh(c)
        outputs.append(h)
    return outputs, [h, c]


def gru_by_hand(reset_after: bool) -> tuple[list[float], list[float]]:
    """Keras gate order z, r, h; h_t = z h_{t-1} + (1 - z) candidate; returns ([y_t], [h_3]).

    reset_after (Keras 3's default, cuDNN's): r scales the recurrent product, r (U h).
    reset_before (Keras 2's original): r scales the state first, U (r h). With all
    biases 0 and one unit both are r U h, so this case cannot tell them apart (the
    per_gate cases can).
    """
    h, outputs = 0.0, []
    for x1, x2 in STEPS:
        xw = K * x1 + K * x2  # the input's share, the same for every gate
        update = sigmoid(xw + U * h)
        reset = sigmoid(xw + U * h)
        candidate = math.tanh(xw + reset * (U * h)) if reset_after else math.tanh(xw + U * (reset * h))
        h = update * h + (1.0 - update) * candidate
        outputs.append(h)
    return outputs, [h]


BY_HAND = {
    "SimpleRNN": (LayerSpec("simple_rnn", 1), simple_rnn_by_hand),
    "LSTM": (LayerSpec("lstm", 1), lstm_by_hand),
    "GRU(reset_after=True)": (LayerSpec("gru", 1), lambda: gru_by_hand(reset_after=True)),
    "GRU(reset_after=False)": (LayerSpec("gru", 1, reset_after=False), lambda: gru_by_hand(reset_after=False)),
}
X = np.array(STEPS).reshape(1, 3, 2)


def tutorial_weights(layer: LayerSpec) -> dict[str, np.ndarray]:
    """The set-up in Keras layout: kernel (2, G), recurrent (1, G), bias (G,) or (2, G)."""
    gates = len(layer.gates)
    bias = np.zeros((2, gates) if layer.cell == "gru" and layer.reset_after else gates)
    if layer.cell == "lstm":
        bias[1] = FORGET_BIAS
    return {"kernel": np.full((2, gates), K), "recurrent_kernel": np.full((1, gates), U), "bias": bias}


def keras_list(derivation, return_sequences: bool, return_state: bool) -> list[np.ndarray]:
    """The Keras output list from a derivation's outputs and final states."""
    outputs, states = derivation()
    listed = [np.array(outputs).reshape(1, 3, 1) if return_sequences else np.array([[outputs[-1]]])]
    return listed + [np.array([[s]]) for s in states] if return_state else listed


@pytest.mark.parametrize("layer_name", BY_HAND)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("return_state", [False, True])
def test_the_oracle_gives_the_hand_derivation_of_the_tutorial_case(layer_name, return_sequences, return_state):
    base, derivation = BY_HAND[layer_name]
    layer = LayerSpec(base.cell, 1, return_sequences=return_sequences, return_state=return_state,
                      reset_after=base.reset_after)
    got = forward(layer, tutorial_weights(layer), X)
    want = keras_list(derivation, return_sequences, return_state)
    assert [a.shape for a in got] == [a.shape for a in want]
    for got_tensor, want_tensor in zip(got, want):
        np.testing.assert_allclose(got_tensor, want_tensor, rtol=TIGHT, atol=0)


def test_the_hand_derivation_gives_the_simple_rnn_numbers_tutorials_print():
    outputs, _ = simple_rnn_by_hand()
    assert [round(y, 7) for y in outputs] == [0.0299910, 0.0429726, 0.0542440]


def test_the_matrix_s_tutorial_cases_are_the_set_up_derived_here():
    tutorial = [case for case in build_cases() if case.option == "tutorial"]
    assert len(tutorial) == 12
    for case in tutorial:
        np.testing.assert_array_equal(case.x, X, err_msg=case.id)
        want = tutorial_weights(case.layer)
        assert sorted(case.weights["layer"]) == sorted(want), case.id
        for name, value in want.items():
            np.testing.assert_array_equal(case.weights["layer"][name], value, err_msg=f"{case.id} {name}")
