"""GRU cell, Keras gate order z, r, h in the columns of every matrix.

``reset_after=True`` (bias (2, 3*units): input row, recurrent row) applies the
reset gate after the recurrent matmul: ``ĥ = act(xW_h + b_h + r*(hU_h + rb_h))``.
``reset_after=False`` (bias (3*units,)) applies it before:
``ĥ = act(xW_h + (r*h)U_h + b_h)``. Both: ``h_t = z*h_{t-1} + (1-z)*ĥ``.
"""

from __future__ import annotations

import numpy as np

from conformance.matrix.spec import LayerSpec
from conformance.reference import numbers
from conformance.reference.activations import Observer, observed


def _biases(layer: LayerSpec, weights: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(input bias, recurrent bias), zeros where the layer has none."""
    recurrent = weights["recurrent_kernel"]
    zero = numbers.zeros((recurrent.shape[1],), like=recurrent)
    if not layer.use_bias:
        return zero, zero
    if layer.reset_after:
        return weights["bias"][0], weights["bias"][1]
    return weights["bias"], zero


def step(layer: LayerSpec, weights: dict[str, np.ndarray], x_t: np.ndarray,
         states: list[np.ndarray], observe: Observer | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """One time step. x_t: (batch, features); states: [h (batch, units)]."""
    (h,) = states
    act = observed(layer.activation, "activation:candidate", observe)
    input_bias, recurrent_bias = _biases(layer, weights)
    x_z, x_r, x_h = np.split(x_t @ weights["kernel"] + input_bias, 3, axis=-1)
    u_z, u_r, u_h = np.split(weights["recurrent_kernel"], 3, axis=-1)
    rb_z, rb_r, rb_h = np.split(recurrent_bias, 3)
    z = observed(layer.recurrent_activation, "recurrent_activation:update", observe)(x_z + h @ u_z + rb_z)
    r = observed(layer.recurrent_activation, "recurrent_activation:reset", observe)(x_r + h @ u_r + rb_r)
    if layer.reset_after:
        candidate = act(x_h + r * (h @ u_h + rb_h))
    else:
        candidate = act(x_h + (r * h) @ u_h)
    h_new = z * h + (1.0 - z) * candidate
    return h_new, [h_new]
