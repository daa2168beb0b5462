"""LSTM cell, Keras gate order i, f, c, o in the columns of every matrix.

``c_t = f*c_{t-1} + i*g``, ``h_t = o*act(c_t)``; states ``[h, c]``.
``unit_forget_bias`` is an initializer detail and has no place here: with
explicit weights it changes nothing (the weight schemes apply it).
"""

from __future__ import annotations

import numpy as np

from conformance.matrix.spec import LayerSpec
from conformance.reference.activations import Observer, observed


def step(layer: LayerSpec, weights: dict[str, np.ndarray], x_t: np.ndarray,
         states: list[np.ndarray], observe: Observer | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """One time step. x_t: (batch, features); states: [h, c], each (batch, units)."""
    h, c = states
    z = x_t @ weights["kernel"] + h @ weights["recurrent_kernel"]
    if layer.use_bias:
        z = z + weights["bias"]
    z_i, z_f, z_c, z_o = np.split(z, 4, axis=-1)

    def act(use, value):
        return observed(layer.activation, "activation:" + use, observe)(value)

    def ract(use, value):
        return observed(layer.recurrent_activation, "recurrent_activation:" + use, observe)(value)

    i, f, g, o = ract("input", z_i), ract("forget", z_f), act("candidate", z_c), ract("output", z_o)
    c_new = f * c + i * g
    h_new = o * act("cell_state", c_new)
    return h_new, [h_new, c_new]
