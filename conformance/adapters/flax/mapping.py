"""Keras weights -> Flax NNX cell parameters, in pure numpy (importable without jax).

Parameter layout of ``flax.nnx`` 0.12 cells (flax/nnx/nn/recurrent.py), each
projection an ``nnx.Linear`` whose kernel is ``(in, out)`` like Keras's, so
nothing is transposed:

- ``SimpleCell``: ``dense_i`` (kernel, bias) and ``dense_h`` (kernel, no bias):
  ``h' = act(x W_i + b_i + h W_h)``, the Keras SimpleRNN with ``residual=False``.
- ``LSTMCell``: one Linear per gate and side: input ``ii, if_, ig, io`` (no
  bias), recurrent ``hi, hf, hg, ho`` (with bias); Keras blocks i, f, c, o map
  in order. The carry is ``(c, h)``, c first.
- ``GRUCell``: ``dense_i`` (kernel (in, 3H), bias) and ``dense_h`` (kernel
  (H, 3H), *no* bias), column blocks in order r, z, n (Keras: z, r, h), and
  ``n = act(x W_in + b_in + r * (h W_hn))``: Keras's ``reset_after=True``
  without the candidate's recurrent bias. The class docstring shows a
  ``b_hn`` inside ``r * (...)``; the code has none.

Folding: Keras's recurrent biases of z and r only ever add to the input
biases, so the Flax input bias of those blocks is their sum (adding two given
numbers to set one parameter, a weight-mapping convention). The candidate's
recurrent bias sits inside ``r * (...)`` and cannot fold: a non-zero one is
not expressible. With ``use_bias=False`` the Flax biases are zeros.
"""

from __future__ import annotations

import numpy as np

from conformance import semantics
from conformance.matrix.spec import AnySpec, LayerSpec, StackedSpec

ParamPath = tuple[str, ...]
FlaxParams = dict[ParamPath, np.ndarray]

CELL_CLASSES = {"simple_rnn": "SimpleCell", "lstm": "LSTMCell", "gru": "GRUCell"}

# Keras activation name -> the flax.nnx function of that definition. Checked:
# nnx.hard_sigmoid is jax.nn.hard_sigmoid = relu6(x + 3) / 6 = clip(x/6 + 1/2, 0, 1),
# Keras 3's definition; nnx.identity is the identity.
FLAX_ACTIVATIONS = {"tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu",
                    "linear": "identity", "hard_sigmoid": "hard_sigmoid"}
MISSING_ACTIVATIONS = {
    "legacy_hard_sigmoid": "flax.nnx / jax.nn have no clip(0.2*x + 0.5, 0, 1) hard sigmoid "
                           "(nnx.hard_sigmoid is Keras 3's clip(x/6 + 1/2, 0, 1)); the cells "
                           "take any callable, but writing the activation would be the "
                           "adapter computing it",
}

# Keras gate blocks (i, f, c, o) -> (input Linear, recurrent Linear) of LSTMCell.
LSTM_GATE_MODULES = (("ii", "hi"), ("if_", "hf"), ("ig", "hg"), ("io", "ho"))
# GRUCell's column blocks r, z, n as indices into Keras's z, r, h.
GRU_BLOCK_ORDER = (1, 0, 2)


def gate_blocks(matrix: np.ndarray, gates: int) -> list[np.ndarray]:
    """Split the last axis of a Keras weight into its ``gates`` equal column blocks (views;
    slices, as ``np.split``'s generic path costs ~8 us a call, several per case)."""
    matrix = np.asarray(matrix)
    size, rest = divmod(matrix.shape[-1], gates)
    if rest:
        raise ValueError(f"a last axis of {matrix.shape[-1]} does not split into {gates} gate blocks")
    return [matrix[..., k * size:(k + 1) * size] for k in range(gates)]


def _input_bias(layer: LayerSpec, weights: dict[str, np.ndarray]) -> np.ndarray:
    """Keras's input bias (G*units,), zeros without ``use_bias``."""
    dtype = weights["kernel"].dtype
    if "bias" not in weights:
        return np.zeros(weights["kernel"].shape[-1], dtype=dtype)
    bias = weights["bias"]
    return bias[0] if bias.ndim == 2 else bias


def simple_rnn_params(layer: LayerSpec, weights: dict[str, np.ndarray]) -> FlaxParams:
    return {("dense_i", "kernel"): weights["kernel"],
            ("dense_i", "bias"): _input_bias(layer, weights),
            ("dense_h", "kernel"): weights["recurrent_kernel"]}


def lstm_params(layer: LayerSpec, weights: dict[str, np.ndarray]) -> FlaxParams:
    kernels = gate_blocks(weights["kernel"], 4)
    recurrent = gate_blocks(weights["recurrent_kernel"], 4)
    biases = gate_blocks(_input_bias(layer, weights), 4)
    params: FlaxParams = {}
    for (input_name, hidden_name), w, u, b in zip(LSTM_GATE_MODULES, kernels, recurrent, biases):
        params[(input_name, "kernel")] = w
        params[(hidden_name, "kernel")] = u
        params[(hidden_name, "bias")] = b
    return params


def gru_params(layer: LayerSpec, weights: dict[str, np.ndarray]) -> FlaxParams:
    """Keras z, r, h -> Flax r, z, n; recurrent biases of z and r folded into the input bias."""
    if not layer.reset_after:
        raise ValueError(gru_reason(layer, weights))
    bias = gate_blocks(_input_bias(layer, weights), 3)
    if "bias" in weights:
        recurrent_bias = gate_blocks(weights["bias"][1], 3)
        bias = [bias[0] + recurrent_bias[0], bias[1] + recurrent_bias[1], bias[2]]
    reorder = (lambda blocks: np.concatenate([blocks[n] for n in GRU_BLOCK_ORDER], axis=-1))
    return {("dense_i", "kernel"): reorder(gate_blocks(weights["kernel"], 3)),
            ("dense_i", "bias"): reorder(bias),
            ("dense_h", "kernel"): reorder(gate_blocks(weights["recurrent_kernel"], 3))}


def gru_reason(layer: LayerSpec, weights: dict[str, np.ndarray]) -> str | None:
    """Why these GRU weights have no GRUCell equivalent, or None."""
    if not layer.reset_after:
        return ("GRU reset_after=False: nnx.GRUCell is reset-after only, "
                "n = act(x W_in + b_in + r * (h W_hn)); Keras applies r before the "
                "recurrent matmul, ((r * h) U_h)")
    if "bias" in weights:
        candidate = gate_blocks(weights["bias"][1], 3)[2]
        if np.any(candidate != 0):
            return ("GRU recurrent bias of the candidate block is non-zero: nnx.GRUCell's "
                    "dense_h has no bias, and this one sits inside r * (...) so it cannot "
                    "fold into the input bias")
    return None


def activation_reason(layer: LayerSpec) -> str | None:
    """Why a Keras activation of ``layer`` has no flax.nnx function, or None."""
    names = [layer.activation] + ([layer.recurrent_activation] if layer.cell != "simple_rnn" else [])
    for name in names:
        if name in MISSING_ACTIVATIONS:
            return f"activation {name!r}: {MISSING_ACTIVATIONS[name]}"
    return None


def dropout_reason(layer: LayerSpec) -> str | None:
    """Why nnx's cells cannot take ``layer``'s dropout, or None."""
    if layer.dropout or layer.recurrent_dropout:
        return (f"dropout={layer.dropout}, recurrent_dropout={layer.recurrent_dropout}: "
                f"nnx.{CELL_CLASSES[layer.cell]} has no dropout on its inputs or recurrent state")
    return None


CELL_PARAMS = {"simple_rnn": simple_rnn_params, "lstm": lstm_params, "gru": gru_params}


def flax_params(layer: LayerSpec, weights: dict[str, np.ndarray]) -> FlaxParams:
    """Keras-layout weights of one layer -> {path inside the cell: array}."""
    return CELL_PARAMS[layer.cell](layer, weights)


def keras_states_to_carry(cell: str, states: tuple[np.ndarray, ...]):
    """Keras ``[h]`` / ``[h, c]`` -> Flax carry ``h`` / ``(c, h)``."""
    if cell == "lstm":
        h, c = states
        return (c, h)
    (h,) = states
    return h


def carry_to_keras_states(cell: str, carry) -> list[np.ndarray]:
    """Flax carry ``h`` / ``(c, h)`` -> Keras states ``[h]`` / ``[h, c]``."""
    if cell == "lstm":
        c, h = carry
        return [h, c]
    return [carry]


SEQUENCE_UNDER_MASK = (
    "return_sequences under a mask: at padded steps Keras repeats the last output "
    "(zeros with zero_output_for_mask, forced inside Bidirectional), while nnx.RNN with "
    "seq_lengths runs the cell on the padding values and returns what it computed there")


def mask_reason(spec: AnySpec, mask: np.ndarray) -> str | None:
    """Why a Keras mask has no nnx.RNN equivalent for this spec, or None."""
    lengths = semantics.right_padded_lengths(mask)
    if lengths is None:
        return ("mask with holes: nnx.RNN takes only seq_lengths, a valid prefix per row "
                "(right padding)")
    if lengths.min() == 0:
        return ("fully masked row: Keras keeps the initial state and outputs zeros; nnx.RNN "
                "has no empty sequence (seq_lengths=0 selects carry index -1, the state after "
                "every padded step)")
    if isinstance(spec, StackedSpec) and any(layer.go_backwards for layer in spec.layers[:-1]):
        return ("stacked go_backwards layer under a mask: Keras passes on its processing-order "
                "sequence (padding first) with the unreversed mask; nnx.RNN's has padding last")
    # Inside a stack the mask reaches every layer, so what the first layer emits at padded
    # steps is masked out of the next layer's state: only the output layers' outputs show.
    for layer in semantics.masked_output_layers(spec):
        if layer.return_sequences:
            return SEQUENCE_UNDER_MASK
        last_step = mask[:, 0] if layer.go_backwards else mask[:, -1]
        if layer.zero_output_for_mask and not last_step.all():
            return ("zero_output_for_mask: Keras's last output is zero for a row whose last "
                    "processed step is padding; nnx.RNN returns the cell's output")
    return None
