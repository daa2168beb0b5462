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

Also here: the state and mask conventions (``h0`` with a leading
``directions`` axis, lengths from a right-padded mask, the per-row time flip
that packed sequences use for a backward pass).
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
    order = TORCH_GATE_ORDER[cell]
    blocks = np.split(np.asarray(array), len(order), axis=axis)
    return np.concatenate([blocks[k] for k in order], axis=axis)


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


def right_padded_lengths(mask: np.ndarray) -> np.ndarray | None:
    """Each row's number of real steps, or None if some row has a masked step before a real one."""
    mask = np.asarray(mask, dtype=bool)
    lengths = mask.sum(axis=1)
    padded = np.arange(mask.shape[1])[None, :] < lengths[:, None]
    return lengths.astype(np.int64) if np.array_equal(mask, padded) else None


def flip_valid_prefix(sequence: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Reverse each row's first ``lengths[b]`` steps (axis 1), leaving the padding in place.

    This is how packed sequences run a backward pass: torch's reverse direction
    starts at each row's own last real step, not at the padded end.
    """
    steps = sequence.shape[1]
    t = np.arange(steps)[None, :]
    lengths = np.asarray(lengths)[:, None]
    source = np.where(t < lengths, lengths - 1 - t, t)
    return np.take_along_axis(sequence, source[:, :, None], axis=1)


def backward_pass_to_keras_order(sequence: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    """A backward pass's outputs in *input* order -> Keras ``go_backwards`` processing order.

    Keras reverses the whole padded sequence, so its padded steps come first
    (as zeros: nothing unmasked has been output yet) and the real steps follow
    from last to first. That is the input-order sequence flipped end to end.
    """
    del lengths  # the same flip for every row: padding is already where Keras wants it
    return sequence[:, ::-1]
