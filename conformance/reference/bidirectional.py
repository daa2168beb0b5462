"""Keras ``Bidirectional``: a forward copy and a go_backwards copy, merged.

The backward sequence is flipped back to input order before merging.
``initial_state`` is split in halves (forward states, then backward).
Keras sets ``zero_output_for_mask = return_sequences`` on both copies
(keras/src/layers/rnn/bidirectional.py, ``force_zero_output_for_mask``; the
same in tf_keras): padded steps of a returned sequence are zeros, and a
layer's own ``zero_output_for_mask=True`` is switched *off* when the
Bidirectional returns only the last output.
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
    forced = spec.layer.return_sequences
    layers = {name: dataclasses.replace(layer, zero_output_for_mask=forced)
              for name, layer in spec.sublayers().items()}
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
