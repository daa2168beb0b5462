"""The reference oracle: what Keras must return, in float64 numpy, no framework imported.

``forward(spec, weights, x, initial_state=None, mask=None) -> list[np.ndarray]``

- ``spec``: a ``LayerSpec`` or a composite spec from ``conformance.spec``.
- ``weights``: for a ``LayerSpec``, the Keras-layout dict ``kernel``
  (features, G*units), ``recurrent_kernel`` (units, G*units) and, with
  ``use_bias``, ``bias`` ((G*units,), or (2, 3*units) for GRU with
  ``reset_after``). For a composite, a dict of such dicts keyed by the
  sub-layer names of ``spec.sublayers()``.
- ``x``: (batch, timesteps, features); for ``EncoderDecoderSpec`` the pair
  ``(encoder_inputs, decoder_inputs)``.
- ``initial_state``: a list of (batch, units) arrays (``[h]`` or ``[h, c]``;
  twice that for Bidirectional, forward first).
- ``mask``: bool (batch, timesteps), True where a step is real.

Returns the Keras output list, always a list (one array when
``return_state`` is False). Bad shapes or dtypes raise ValueError naming the
tensor, the expected and the actual shape.
"""

from __future__ import annotations

import numpy as np

from conformance.reference import bidirectional, composite, validation
from conformance.reference.rnn import layer_output_list, run_layer
from conformance.spec import AnySpec, BidirectionalSpec, EncoderDecoderSpec, LayerSpec, StackedSpec


def _checked_weights(spec: AnySpec, weights, features: dict[str, int]) -> dict:
    if isinstance(spec, LayerSpec):
        return validation.layer_weights("weights.", spec, weights, features["layer"])
    if not isinstance(weights, dict):
        raise ValueError(f"weights: expected a dict keyed by {list(spec.sublayers())}")
    checked = {}
    for name, layer in spec.sublayers().items():
        if name not in weights:
            raise ValueError(f"weights[{name!r}]: missing; expected keys {list(spec.sublayers())}")
        checked[name] = validation.layer_weights(f"weights[{name!r}].", layer, weights[name], features[name])
    return checked


def _input_features(spec: AnySpec, features: int, decoder_features: int | None) -> dict[str, int]:
    """The width of what each sub-layer reads."""
    if isinstance(spec, StackedSpec):
        widths = [features] + [layer.units for layer in spec.layers[:-1]]
        return {name: width for name, width in zip(spec.sublayers(), widths)}
    if isinstance(spec, EncoderDecoderSpec):
        return {"encoder": features, "decoder": decoder_features}
    return {name: features for name in spec.sublayers()}


def forward(spec: AnySpec, weights, x, initial_state=None, mask=None) -> list[np.ndarray]:
    """The Keras output list for ``spec`` with these weights and inputs (see module doc)."""
    decoder_x = None
    if isinstance(spec, EncoderDecoderSpec):
        if not isinstance(x, (tuple, list)) or len(x) != 2:
            raise ValueError("x: an EncoderDecoderSpec takes (encoder_inputs, decoder_inputs)")
        x, decoder_x = x
        decoder_x = validation.as_float64("decoder_inputs", decoder_x, 3)
    x = validation.as_float64("x", x, 3)
    batch, timesteps, features = x.shape
    if decoder_x is not None and decoder_x.shape[0] != batch:
        raise ValueError(f"decoder_inputs: expected batch {batch}, got shape {decoder_x.shape}")
    widths = _input_features(spec, features, None if decoder_x is None else decoder_x.shape[2])
    checked = _checked_weights(spec, weights, widths)
    mask = validation.mask_array(mask, batch, timesteps)
    first = spec.encoder if isinstance(spec, EncoderDecoderSpec) else (
        spec.layers[0] if isinstance(spec, StackedSpec) else
        spec.layer if isinstance(spec, BidirectionalSpec) else spec)
    copies = 2 if isinstance(spec, BidirectionalSpec) else 1
    states = validation.state_list(initial_state, first, batch, copies)

    if isinstance(spec, LayerSpec):
        sequence, final_states = run_layer(spec, checked, x, states, mask)
        return layer_output_list(spec, sequence, final_states)
    if isinstance(spec, BidirectionalSpec):
        return bidirectional.forward(spec, checked, x, states, mask)
    if isinstance(spec, StackedSpec):
        return composite.stacked(spec, checked, x, states, mask)
    if isinstance(spec, EncoderDecoderSpec):
        return composite.encoder_decoder(spec, checked, (x, decoder_x), states, mask)
    raise ValueError(f"spec: expected a LayerSpec or composite spec, got {type(spec).__name__}")


__all__ = ["forward", "expected_outputs"]


def expected_outputs(case) -> list[np.ndarray]:
    """The oracle's answer for a ``conformance.case.Case`` (float64, whatever case.dtype)."""
    x = case.x if case.decoder_x is None else (case.x, case.decoder_x)
    weights = case.weights["layer"] if isinstance(case.spec, LayerSpec) else case.weights
    return forward(case.spec, weights, x, case.initial_state, case.mask)
