"""SimpleRNN cell: ``h_t = act(x_t W + h_{t-1} U + b)``; states ``[h]``."""

from __future__ import annotations

import numpy as np

from conformance.matrix.spec import LayerSpec
from conformance.reference.activations import Observer, observed


def step(layer: LayerSpec, weights: dict[str, np.ndarray], x_t: np.ndarray,
         states: list[np.ndarray], observe: Observer | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """One time step. x_t: (batch, features); states: [h (batch, units)]."""
    (h,) = states
    z = x_t @ weights["kernel"] + h @ weights["recurrent_kernel"]
    if layer.use_bias:
        z = z + weights["bias"]
    h_new = observed(layer.activation, "activation:hidden", observe)(z)
    return h_new, [h_new]
