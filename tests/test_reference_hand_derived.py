"""The oracle against values derived by hand for the tutorials' case.

Set-up (the tutorials'): units 1, x = [0.1, 0.2, 0.3, 0.1, 0.2, 0.3] reshaped to
(1, 3, 2), so the steps are (0.1, 0.2), (0.3, 0.1), (0.2, 0.3); every kernel and
recurrent weight 0.1, bias 0 (LSTM: forget block 1 by unit_forget_bias).
With one unit every gate sees the same pre-activation a_t = 0.1*(x_t1 + x_t2) + 0.1*h_{t-1}.
"""

import math

import numpy as np
import pytest

from conformance.reference import forward
from conformance.spec import LayerSpec
from conformance.weights import constant_weights

STEPS = [(0.1, 0.2), (0.3, 0.1), (0.2, 0.3)]
X = np.array(STEPS).reshape(1, 3, 2)
# The oracle reads weights rounded to float32 (0.1 -> 0.100000001...), hence 1e-7.
CLOSE = 1e-7


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def simple_rnn_by_hand():
    """h_t = tanh(a_t)."""
    h, hs = 0.0, []
    for x1, x2 in STEPS:
        h = math.tanh(0.1 * (x1 + x2) + 0.1 * h)
        hs.append(h)
    return hs, [h]


def lstm_by_hand():
    """i = o = sigmoid(a), f = sigmoid(a + 1) (forget bias 1), g = tanh(a); c = f c + i g; h = o tanh(c)."""
    h = c = 0.0
    hs = []
    for x1, x2 in STEPS:
        a = 0.1 * (x1 + x2) + 0.1 * h
        i, f, g, o = sigmoid(a), sigmoid(a + 1.0), math.tanh(a), sigmoid(a)
        c = f * c + i * g
        h = o * math.tanh(c)
        hs.append(h)
    return hs, [h, c]


def gru_by_hand():
    """z = r = sigmoid(a); candidate = tanh(0.1(x1+x2) + r*(0.1 h)) (reset after); h = z h + (1-z) cand."""
    h, hs = 0.0, []
    for x1, x2 in STEPS:
        a = 0.1 * (x1 + x2) + 0.1 * h
        z = r = sigmoid(a)
        candidate = math.tanh(0.1 * (x1 + x2) + r * (0.1 * h))
        h = z * h + (1.0 - z) * candidate
        hs.append(h)
    return hs, [h]


BY_HAND = {"simple_rnn": simple_rnn_by_hand, "lstm": lstm_by_hand, "gru": gru_by_hand}


@pytest.mark.parametrize("cell", BY_HAND)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("return_state", [False, True])
def test_tutorial_case_matches_the_hand_derivation(cell, return_sequences, return_state):
    spec = LayerSpec(cell, 1, return_sequences=return_sequences, return_state=return_state)
    outputs = forward(spec, constant_weights(spec, 2), X)
    sequence, states = BY_HAND[cell]()
    want = [np.array(sequence).reshape(1, 3, 1) if return_sequences else np.array([[sequence[-1]]])]
    if return_state:
        want += [np.array([[s]]) for s in states]
    assert len(outputs) == len(want)
    for got, expected in zip(outputs, want):
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=CLOSE)


def test_the_tutorials_printed_simple_rnn_sequence():
    """The numbers tutorials print for this set-up: 0.0299910, 0.0429726, 0.0542440."""
    spec = LayerSpec("simple_rnn", 1, return_sequences=True)
    got = forward(spec, constant_weights(spec, 2), X)[0].ravel()
    np.testing.assert_allclose(got, [math.tanh(0.03), math.tanh(0.04 + 0.1 * math.tanh(0.03)),
                                     simple_rnn_by_hand()[0][2]], atol=CLOSE)
