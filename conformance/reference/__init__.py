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

``forward`` computes in float64 numpy (fast; its last bits depend on the CPU's
BLAS). ``exact_forward`` runs the same equations on exact enclosures and
returns the correctly rounded float64 of the exact result: the same bytes on
every machine, which is what the golden fixtures store (``numbers`` says how).
"""

from __future__ import annotations

import numpy as np

from conformance.reference import bidirectional, composite, numbers, validation
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
    """The Keras output list for ``spec`` with these weights and inputs, in float64 (module doc)."""
    return _forward(spec, weights, x, initial_state, mask, exact=False)


def _exact_weights(spec: AnySpec, checked: dict) -> dict:
    """Validated float64 weights as exact point intervals, nested as ``checked`` is."""
    if isinstance(spec, LayerSpec):
        return {key: numbers.to_exact(value) for key, value in checked.items()}
    return {name: _exact_weights(layer, checked[name]) for name, layer in spec.sublayers().items()}


def _exact_or_none(array):
    return None if array is None else numbers.to_exact(array)


def _forward(spec: AnySpec, weights, x, initial_state, mask, *, exact: bool) -> list[np.ndarray]:
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
    if exact:
        checked, x, decoder_x = _exact_weights(spec, checked), numbers.to_exact(x), _exact_or_none(decoder_x)
        states = None if states is None else [numbers.to_exact(state) for state in states]

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


# Bits of the exact enclosures, tried in turn until every output rounds to one float64.
# 128 suffices for every case of the matrix; the rest is for cases yet to come.
EXACT_PRECISIONS = (128, 256, 1024)


def exact_forward(spec: AnySpec, weights, x, initial_state=None, mask=None) -> list[np.ndarray]:
    """``forward``'s list, each value the correctly rounded float64 of the exact result."""
    for bits in EXACT_PRECISIONS:
        with numbers.working_precision(bits):
            enclosures = _forward(spec, weights, x, initial_state, mask, exact=True)
            try:
                return [numbers.round_to_float64(output) for output in enclosures]
            except numbers.StraddlesRounding as exc:
                straddle = exc
    raise ArithmeticError(f"an output's enclosure {straddle} at {EXACT_PRECISIONS[-1]} bits still "
                          "straddles a float64 rounding boundary (an exact tie or an exact zero "
                          "computed by cancellation?)")


__all__ = ["forward", "exact_forward", "expected_outputs", "exact_expected_outputs"]


def _case_arguments(case) -> tuple:
    x = case.x if case.decoder_x is None else (case.x, case.decoder_x)
    weights = case.weights["layer"] if isinstance(case.spec, LayerSpec) else case.weights
    return case.spec, weights, x, case.initial_state, case.mask


def expected_outputs(case) -> list[np.ndarray]:
    """The float64 oracle's answer for a ``conformance.case.Case`` (whatever case.dtype)."""
    return forward(*_case_arguments(case))


def exact_expected_outputs(case) -> list[np.ndarray]:
    """The correctly rounded answer for a ``Case``: what the golden fixtures store."""
    return exact_forward(*_case_arguments(case))
