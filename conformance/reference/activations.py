"""Activation functions by their Keras names, in float64 numpy.

Two hard sigmoids exist and both are selectable: Keras 3's
``hard_sigmoid(x) = clip(x/6 + 1/2, 0, 1)`` and Keras <= 2's
``clip(0.2*x + 0.5, 0, 1)`` (named ``legacy_hard_sigmoid`` here), which old
published results need.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Activation = Callable[[np.ndarray], np.ndarray]


def sigmoid(x: np.ndarray) -> np.ndarray:
    # Split by sign so exp never overflows for large |x|.
    out = np.empty_like(x)
    positive = x >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-x[positive]))
    exp_x = np.exp(x[~positive])
    out[~positive] = exp_x / (1.0 + exp_x)
    return out


def hard_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


def legacy_hard_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)


ACTIVATION_FUNCTIONS: dict[str, Activation] = {
    "tanh": np.tanh,
    "sigmoid": sigmoid,
    "relu": lambda x: np.maximum(x, 0.0),
    "linear": lambda x: x,
    "hard_sigmoid": hard_sigmoid,
    "legacy_hard_sigmoid": legacy_hard_sigmoid,
}


def activation(name: str) -> Activation:
    try:
        return ACTIVATION_FUNCTIONS[name]
    except KeyError:
        raise ValueError(
            f"activation={name!r} is not allowed; expected one of {tuple(ACTIVATION_FUNCTIONS)}"
        ) from None
