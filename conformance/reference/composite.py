"""The two compositions tutorials teach: stacking, and encoder states as decoder initial_state."""

from __future__ import annotations

import numpy as np

from conformance.reference.rnn import layer_output_list, run_layer
from conformance.spec import EncoderDecoderSpec, StackedSpec


def stacked(spec: StackedSpec, weights: dict[str, dict[str, np.ndarray]], x: np.ndarray,
            initial_state: list[np.ndarray] | None, mask: np.ndarray | None) -> list[np.ndarray]:
    """Each layer feeds the next its whole sequence; the mask reaches every layer.

    ``initial_state`` goes to the first layer.
    """
    hidden = x
    names = list(spec.sublayers())
    for n, name in enumerate(names):
        layer = spec.sublayers()[name]
        sequence, states = run_layer(layer, weights[name], hidden,
                                     initial_state if n == 0 else None, mask)
        hidden = sequence
    return layer_output_list(spec.layers[-1], sequence, states)


def encoder_decoder(spec: EncoderDecoderSpec, weights: dict[str, dict[str, np.ndarray]],
                    x: tuple[np.ndarray, np.ndarray], initial_state: list[np.ndarray] | None,
                    mask: np.ndarray | None) -> list[np.ndarray]:
    """Encoder (with the mask and initial state) -> its states -> decoder's initial_state."""
    encoder_x, decoder_x = x
    _, encoder_states = run_layer(spec.encoder, weights["encoder"], encoder_x, initial_state, mask)
    sequence, states = run_layer(spec.decoder, weights["decoder"], decoder_x, encoder_states, None)
    return layer_output_list(spec.decoder, sequence, states)
