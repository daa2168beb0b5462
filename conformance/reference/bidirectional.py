"""Keras ``Bidirectional``: a forward copy and a go_backwards copy, merged.

The backward sequence is flipped back to input order before merging.
``initial_state`` is split in halves (forward states, then backward).
With ``return_sequences``, Keras sets ``zero_output_for_mask=True`` on both
copies (keras/src/layers/rnn/bidirectional.py), so padded steps are zeros.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from conformance.reference.rnn import run_layer
from conformance.spec import BidirectionalSpec

MERGES = {
    "concat": lambda a, b: np.concatenate([a, b], axis=-1),
    "sum": lambda a, b: a + b,
    "ave": lambda a, b: (a + b) / 2.0,
    "mul": lambda a, b: a * b,
}


def forward(spec: BidirectionalSpec, weights: dict[str, dict[str, np.ndarray]], x: np.ndarray,
            initial_state: list[np.ndarray] | None, mask: np.ndarray | None) -> list[np.ndarray]:
    layers = spec.sublayers()
    if spec.layer.return_sequences:
        layers = {name: dataclasses.replace(layer, zero_output_for_mask=True)
                  for name, layer in layers.items()}
    n_states = len(spec.layer.state_names)
    halves = {"forward": None, "backward": None}
    if initial_state is not None:
        halves = {"forward": list(initial_state[:n_states]), "backward": list(initial_state[n_states:])}
    results = {name: run_layer(layer, weights[name], x, halves[name], mask)
               for name, layer in layers.items()}
    (seq_fw, states_fw), (seq_bw, states_bw) = results["forward"], results["backward"]
    if spec.layer.return_sequences:
        y_fw, y_bw = seq_fw, seq_bw[:, ::-1, :]
    else:
        y_fw, y_bw = seq_fw[:, -1, :], seq_bw[:, -1, :]
    outputs = [y_fw, y_bw] if spec.merge_mode is None else [MERGES[spec.merge_mode](y_fw, y_bw)]
    if spec.layer.return_state:
        outputs += [*states_fw, *states_bw]
    return outputs
