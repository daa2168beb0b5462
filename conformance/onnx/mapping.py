"""Keras weights, activations and masks in the form of the ONNX RNN / GRU / LSTM operators.

Pure numpy, importable without ``onnx``. Verified against onnxruntime in
``tests/test_onnx_mapping.py``:

- ``W (G*H, features)`` is the Keras kernel transposed, ``R (G*H, H)`` the
  recurrent kernel transposed, ``B (2*G*H,)`` the input bias then the
  recurrent bias; one such triple per direction, stacked on a leading axis.
- Gate blocks: ONNX LSTM is i, o, f, c where Keras is i, f, c, o; GRU is
  z, r, h in both; RNN has one block.
- Keras GRU ``reset_after=True`` is ONNX ``linear_before_reset=1`` (bias rows
  = input bias, recurrent bias); ``reset_after=False`` is
  ``linear_before_reset=0`` with a zero recurrent bias.
- ``sequence_lens`` expresses right-padded masks only (``semantics.right_padded_lengths``).
"""

from __future__ import annotations

import numpy as np

from conformance.matrix.spec import LayerSpec

ONNX_OP = {"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}

# ONNX gate blocks, each given as the index of the Keras block it holds.
ONNX_GATE_ORDER = {"simple_rnn": (0,), "lstm": (0, 3, 1, 2), "gru": (0, 1, 2)}

# Keras activation name -> (ONNX activation name, alpha, beta); None where the
# ONNX function takes no parameter. Affine(alpha=1, beta=0) is the identity.
ONNX_ACTIVATION: dict[str, tuple[str, float | None, float | None]] = {
    "tanh": ("Tanh", None, None),
    "sigmoid": ("Sigmoid", None, None),
    "relu": ("Relu", None, None),
    "linear": ("Affine", 1.0, 0.0),
    "hard_sigmoid": ("HardSigmoid", 1.0 / 6.0, 0.5),
    "legacy_hard_sigmoid": ("HardSigmoid", 0.2, 0.5),
}


def reorder_gate_columns(matrix: np.ndarray, order: tuple[int, ...], units: int) -> np.ndarray:
    """The column blocks of a Keras (rows, G*units) matrix, taken in ``order``."""
    return np.concatenate([matrix[..., k * units:(k + 1) * units] for k in order], axis=-1)


def keras_biases(layer: LayerSpec, weights: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(input bias, recurrent bias), each (G*units,), zeros where Keras has none."""
    width = weights["recurrent_kernel"].shape[1]
    zeros = np.zeros(width, dtype=weights["recurrent_kernel"].dtype)
    if not layer.use_bias:
        return zeros, zeros
    bias = weights["bias"]
    if layer.cell == "gru" and layer.reset_after:
        return bias[0], bias[1]
    return bias, zeros


def onnx_direction_weights(layer: LayerSpec, weights: dict[str, np.ndarray],
                           order: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One direction's ``W (G*H, F)``, ``R (G*H, H)``, ``B (2*G*H,)`` from Keras weights.

    ``order`` overrides the gate order (only tests use it, to show that a wrong
    order changes the result).
    """
    order = ONNX_GATE_ORDER[layer.cell] if order is None else order
    units = layer.units
    w = reorder_gate_columns(weights["kernel"], order, units).T
    r = reorder_gate_columns(weights["recurrent_kernel"], order, units).T
    input_bias, recurrent_bias = keras_biases(layer, weights)
    b = np.concatenate([reorder_gate_columns(input_bias, order, units),
                        reorder_gate_columns(recurrent_bias, order, units)])
    return np.ascontiguousarray(w), np.ascontiguousarray(r), b


def onnx_weights(directions: list[tuple[LayerSpec, dict[str, np.ndarray]]],
                 order: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``W (dirs, G*H, F)``, ``R (dirs, G*H, H)``, ``B (dirs, 2*G*H)``: forward first."""
    per_direction = [onnx_direction_weights(layer, weights, order) for layer, weights in directions]
    return tuple(np.stack(parts) for parts in zip(*per_direction))  # type: ignore[return-value]


def onnx_activations(layer: LayerSpec) -> list[str]:
    """The Keras activations in the op's ``activations`` order: RNN f; GRU f, g; LSTM f, g, h."""
    if layer.cell == "simple_rnn":
        return [layer.activation]
    if layer.cell == "gru":
        return [layer.recurrent_activation, layer.activation]
    return [layer.recurrent_activation, layer.activation, layer.activation]


def activation_attributes(layers: list[LayerSpec]) -> dict[str, list]:
    """``activations``, ``activation_alpha``, ``activation_beta`` for one op (one layer per direction).

    alpha and beta are listed only for the functions that take them: the ONNX
    text ("consumed in the order of activation functions") leaves open whether
    every function takes a slot; onnxruntime (rnn_helpers.cc ActivationFuncs,
    observed with 1.32) consumes values only for functions that take them, and
    an Affine without alpha gets alpha 0 there, not the Affine op's default 1.
    """
    names, alphas, betas = [], [], []
    for layer in layers:
        for keras_name in onnx_activations(layer):
            onnx_name, alpha, beta = ONNX_ACTIVATION[keras_name]
            names.append(onnx_name)
            alphas += [] if alpha is None else [alpha]
            betas += [] if beta is None else [beta]
    attributes: dict[str, list] = {"activations": names}
    if alphas:
        attributes["activation_alpha"] = alphas
    if betas:
        attributes["activation_beta"] = betas
    return attributes
