"""Activation functions by their Keras names, in either of the oracle's number systems.

Two hard sigmoids exist and both are selectable: Keras 3's
``hard_sigmoid(x) = clip(x/6 + 1/2, 0, 1)`` and Keras <= 2's
``clip(0.2*x + 0.5, 0, 1)`` (named ``legacy_hard_sigmoid`` here), which old
published results need. The real number 0.2 is written ``x / 5``: in the
exact number system ``0.2`` would be the float64 nearest to it, not 1/5.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from conformance.reference import numbers

Activation = Callable[[np.ndarray], np.ndarray]
# Called with ("KIND:USE", the pre-activation array) by a cell step before it applies that
# activation, KIND "activation" or "recurrent_activation" and USE the gate or quantity
# ("recurrent_activation:forget", "activation:cell_state", ...): how the matrix measures what
# range each case reaches, per activation in the manifest and per gate in the tests.
Observer = Callable[[str, np.ndarray], None]


def hard_sigmoid(x: np.ndarray) -> np.ndarray:
    return numbers.clip(x / 6.0 + 0.5, 0.0, 1.0)


def legacy_hard_sigmoid(x: np.ndarray) -> np.ndarray:
    return numbers.clip(x / 5.0 + 0.5, 0.0, 1.0)


def relu(x: np.ndarray) -> np.ndarray:
    return numbers.clip(x, 0.0, np.inf)


ACTIVATION_FUNCTIONS: dict[str, Activation] = {
    "tanh": numbers.tanh,
    "sigmoid": numbers.sigmoid,
    "relu": relu,
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


def observed(name: str, role: str, observe: Observer | None) -> Activation:
    """``activation(name)``, reporting each argument to ``observe`` as ``role`` first."""
    function = activation(name)
    if observe is None:
        return function

    def reporting(x: np.ndarray) -> np.ndarray:
        observe(role, x)
        return function(x)

    return reporting
