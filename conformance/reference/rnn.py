"""The time loop shared by every cell: go_backwards, initial states and masks.

Mirrors the generic loop of Keras's backends (``keras.src.backend.*.rnn``):
at a masked step the states are carried over unchanged and the output is the
previous step's output (zeros before the first unmasked step), or zeros with
``zero_output_for_mask``. With ``go_backwards`` the inputs and the mask are
reversed and the returned sequence stays in processing order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from conformance.matrix.spec import LayerSpec
from conformance.reference import gru, lstm, numbers, simple_rnn
from conformance.reference.activations import Observer

Step = Callable[..., tuple[np.ndarray, list[np.ndarray]]]
CELL_STEPS: dict[str, Step] = {"simple_rnn": simple_rnn.step, "lstm": lstm.step, "gru": gru.step}


def run_layer(layer: LayerSpec, weights: dict[str, np.ndarray], x: np.ndarray,
              initial_state: list[np.ndarray] | None = None,
              mask: np.ndarray | None = None,
              observe: Observer | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """The whole sequence of outputs (batch, T, units), processing order, and final states;
    ``observe`` sees every pre-activation of every step (masked steps are computed too)."""
    batch, timesteps, _ = x.shape
    states = ([numbers.zeros((batch, layer.units), like=x) for _ in layer.state_names]
              if initial_state is None else list(initial_state))
    step = CELL_STEPS[layer.cell]
    order = range(timesteps - 1, -1, -1) if layer.go_backwards else range(timesteps)
    previous_output = numbers.zeros((batch, layer.units), like=x)
    outputs = []
    for t in order:
        output, new_states = step(layer, weights, x[:, t, :], states, observe)
        if mask is not None:
            keep = mask[:, t][:, None]
            fallback = numbers.zeros(output.shape, like=output) if layer.zero_output_for_mask else previous_output
            output = np.where(keep, output, fallback)
            new_states = [np.where(keep, new, old) for new, old in zip(new_states, states)]
        outputs.append(output)
        previous_output, states = output, new_states
    return np.stack(outputs, axis=1), states

