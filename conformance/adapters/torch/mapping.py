"""Keras layout -> PyTorch ``nn.RNN/LSTM/GRU`` layout, in pure numpy (no torch import).

PyTorch stores ``weight_ih_l0`` as ``(G*units, features)`` and ``weight_hh_l0``
as ``(G*units, units)``: Keras's ``kernel`` and ``recurrent_kernel`` transposed,
gate blocks along the rows. Gate rows (torch.nn.LSTM / torch.nn.GRU docs,
confirmed against the oracle by tests/test_torch_mapping.py):

- LSTM ``i, f, g, o``: the same order as Keras's ``i, f, c, o``;
- GRU ``r, z, n``: Keras's ``z, r, h`` with the first two blocks swapped.

PyTorch has two biases that add, ``b_ih + b_hh``, except GRU's ``b_hn``, which
sits inside ``r * (W_hn h + b_hn)``: exactly Keras's recurrent bias row with
``reset_after=True``. Single-bias layers put the Keras bias in ``b_ih`` and
zeros in ``b_hh``.

Also here: the state convention (``h0`` with a leading ``directions`` axis).
A mask's lengths and the per-row time flip of a packed backward pass are
``semantics.right_padded_lengths`` and ``semantics.flip_valid_prefix``.
"""

from __future__ import annotations

import numpy as np

from conformance.matrix.spec import LayerSpec

# Position i holds the Keras gate block that goes to torch's gate row block i.
TORCH_GATE_ORDER = {"simple_rnn": (0,), "lstm": (0, 1, 2, 3), "gru": (1, 0, 2)}

# Keras activation names -> torch.nn.RNN(nonlinearity=...); the only two torch has.
RNN_NONLINEARITY = {"tanh": "tanh", "relu": "relu"}


def reorder_gate_blocks(array: np.ndarray, cell: str, axis: int = -1) -> np.ndarray:
    """The gate blocks of ``array`` along ``axis`` in torch's order for ``cell``."""
    order, array = TORCH_GATE_ORDER[cell], np.asarray(array)
    if order == tuple(range(len(order))):  # LSTM, SimpleRNN: already torch's order
        return array
    # One take of the blocks' indices: np.split's generic path costs ~8 us a call, 8 a GRU pair.
    size, rest = divmod(array.shape[axis], len(order))
    if rest:
        raise ValueError(f"an axis of {array.shape[axis]} does not split into {len(order)} gate blocks")
    return np.take(array, np.concatenate([np.arange(k * size, (k + 1) * size) for k in order]), axis=axis)


def torch_layer_params(layer: LayerSpec, weights: dict[str, np.ndarray],
                       suffix: str = "_l0") -> dict[str, np.ndarray]:
    """One direction's torch parameters (``weight_ih_l0``...) from Keras-layout ``weights``.

    ``suffix`` is ``_l0`` or ``_l0_reverse`` (torch's name for the backward
    direction of a ``bidirectional=True`` module). Without ``use_bias`` there
    are no bias entries (torch's ``bias=False``).
    """
    cell = layer.cell
    params = {
        f"weight_ih{suffix}": reorder_gate_blocks(weights["kernel"], cell).T,
        f"weight_hh{suffix}": reorder_gate_blocks(weights["recurrent_kernel"], cell).T,
    }
    if "bias" not in weights:
        return params
    bias = np.asarray(weights["bias"])
    if bias.ndim == 2:  # GRU reset_after: (input bias row, recurrent bias row)
        params[f"bias_ih{suffix}"] = reorder_gate_blocks(bias[0], cell)
        params[f"bias_hh{suffix}"] = reorder_gate_blocks(bias[1], cell)
    else:
        params[f"bias_ih{suffix}"] = reorder_gate_blocks(bias, cell)
        params[f"bias_hh{suffix}"] = np.zeros_like(bias)
    return {name: np.ascontiguousarray(value) for name, value in params.items()}


def torch_module_params(directions: list[tuple[LayerSpec, dict[str, np.ndarray]]]) -> dict[str, np.ndarray]:
    """The state dict of a one-layer torch module: forward, then ``_reverse`` if two directions."""
    params = {}
    for (layer, weights), suffix in zip(directions, ("_l0", "_l0_reverse")):
        params.update(torch_layer_params(layer, weights, suffix))
    return params


def torch_initial_states(states: tuple[np.ndarray, ...] | None, n_states: int,
                         directions: int) -> list[np.ndarray] | None:
    """Keras's flat state list -> torch's ``[h0]`` / ``[h0, c0]``, each (directions, batch, units).

    Keras lists a Bidirectional's states as forward ``h, c`` then backward ``h, c``.
    """
    if states is None:
        return None
    per_direction = [states[d * n_states:(d + 1) * n_states] for d in range(directions)]
    return [np.stack([per_direction[d][k] for d in range(directions)]) for k in range(n_states)]
