"""The exact oracle: the correctly rounded float64 of the exact result, whatever the machine."""

from __future__ import annotations

import numpy as np
import pytest
from mpmath import iv, libmp, mp

from conformance.matrix.spec import LayerSpec
from conformance.reference import exact_forward, forward, numbers

TUTORIAL_X = np.array([0.1, 0.2, 0.3, 0.1, 0.2, 0.3], dtype=np.float32).astype(np.float64).reshape(1, 3, 2)
WEIGHT = float(np.float32(0.1))  # the tutorial's 0.1 is a float32 number, stored in float64


def nearest_float64(value) -> float:
    return libmp.to_float(mp.mpf(value)._mpf_, rnd="n")


def simple_rnn_tutorial_by_hand() -> list[float]:
    """h_t = tanh(0.1*x_t1 + 0.1*x_t2 + 0.1*h_{t-1}), h_0 = 0, in 400-bit point arithmetic."""
    with mp.workprec(400):
        h, outputs = mp.mpf(0), []
        for x1, x2 in TUTORIAL_X[0]:
            h = mp.tanh(WEIGHT * mp.mpf(x1) + WEIGHT * mp.mpf(x2) + WEIGHT * h)
            outputs.append(nearest_float64(h))
    return outputs


def test_exact_forward_gives_the_correctly_rounded_simple_rnn_tutorial_sequence():
    layer = LayerSpec("simple_rnn", 1, return_sequences=True)
    weights = {"kernel": np.full((2, 1), WEIGHT), "recurrent_kernel": np.full((1, 1), WEIGHT),
               "bias": np.zeros(1)}
    (sequence,) = exact_forward(layer, weights, TUTORIAL_X)
    assert sequence.ravel().tolist() == simple_rnn_tutorial_by_hand()


def test_the_float64_oracle_may_differ_from_the_exact_one_only_in_the_last_bits():
    layer = LayerSpec("simple_rnn", 1, return_sequences=True)
    weights = {"kernel": np.full((2, 1), WEIGHT), "recurrent_kernel": np.full((1, 1), WEIGHT),
               "bias": np.zeros(1)}
    (fast,), (exact,) = forward(layer, weights, TUTORIAL_X), exact_forward(layer, weights, TUTORIAL_X)
    assert np.all(np.abs(fast - exact) <= 4 * np.spacing(exact))


def test_an_enclosure_is_rounded_to_nearest_not_down():
    """mpmath's own float() rounds down: 1/10 would become 0.09999999999999999."""
    with numbers.working_precision(128):
        tenth = np.array([iv.mpf(1) / 10], dtype=object)
        assert numbers.round_to_float64(tenth).tolist() == [0.1]


def test_an_enclosure_straddling_a_rounding_boundary_is_refused():
    one_and_a_half_ulp = iv.mpf([1.0, 1.0 + 2.0 ** -51])
    with pytest.raises(numbers.StraddlesRounding):
        numbers.round_to_float64(np.array([one_and_a_half_ulp], dtype=object))


def test_the_working_precision_is_restored_after_an_exact_computation():
    before = iv.prec
    with numbers.working_precision(256):
        assert iv.prec == 256
    assert iv.prec == before
