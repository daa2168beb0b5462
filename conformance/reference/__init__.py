"""The reference oracle: what Keras must return, in float64 numpy, no framework imported.

``forward(spec, weights, x, initial_state=None, mask=None) -> list[np.ndarray]``

- ``spec``: a ``LayerSpec`` or a composite spec from ``conformance.matrix.spec``.
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

import dataclasses

import numpy as np

from conformance import semantics
from conformance.matrix.spec import AnySpec, BidirectionalSpec, EncoderDecoderSpec, LayerSpec
from conformance.reference import numbers, validation
from conformance.reference.rnn import run_layer


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


def forward(spec: AnySpec, weights, x, initial_state=None, mask=None, observe=None) -> list[np.ndarray]:
    """The Keras output list for ``spec`` with these weights and inputs, in float64 (module doc);
    ``observe(role, pre_activations)`` sees every activation's argument (``activations.Observer``)."""
    return _forward(spec, weights, x, initial_state, mask, exact=False, observe=observe)


def _exact_weights(spec: AnySpec, checked: dict) -> dict:
    """Validated float64 weights as exact point intervals, nested as ``checked`` is."""
    if isinstance(spec, LayerSpec):
        return {key: numbers.to_exact(value) for key, value in checked.items()}
    return {name: _exact_weights(layer, checked[name]) for name, layer in spec.sublayers().items()}


def _exact_or_none(array):
    return None if array is None else numbers.to_exact(array)


def _forward(spec: AnySpec, weights, x, initial_state, mask, *, exact: bool, observe=None) -> list[np.ndarray]:
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
    widths = semantics.input_widths(spec, features, None if decoder_x is None else decoder_x.shape[2])
    checked = _checked_weights(spec, weights, widths)
    mask = validation.mask_array(mask, batch, timesteps)
    copies = 2 if isinstance(spec, BidirectionalSpec) else 1
    states = validation.state_list(initial_state, semantics.first_layer(spec), batch, copies)
    if exact:
        checked, x, decoder_x = _exact_weights(spec, checked), numbers.to_exact(x), _exact_or_none(decoder_x)
        states = None if states is None else [numbers.to_exact(state) for state in states]

    by_name = {"layer": checked} if isinstance(spec, LayerSpec) else checked

    def run(name, layer, inputs, layer_states, masked) -> semantics.LayerRun:
        """One sub-layer through the shared time loop (``rnn.run_layer``)."""
        sequence, final_states = run_layer(layer, by_name[name], inputs, layer_states, mask if masked else None,
                                           observe)
        return semantics.LayerRun(sequence, final_states)

    return semantics.output_list(spec, semantics.route(spec, run, x, states, decoder_x))


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


__all__ = ["forward", "exact_forward", "expected_outputs", "exact_expected_outputs", "answered",
           "preactivation_range", "preactivation_ranges"]


def _case_arguments(case) -> tuple:
    x = case.x if case.decoder_x is None else (case.x, case.decoder_x)
    if carries_state(case):
        x = semantics.one_call_input(case.spec, case.earlier_x, case.x)
    weights = case.weights["layer"] if isinstance(case.spec, LayerSpec) else case.weights
    return case.spec, weights, x, case.initial_state, case.mask


def carries_state(case) -> bool:
    """Whether the case's call starts from the state an earlier call left (a stateful layer, no reset)."""
    return case.earlier_x is not None and not case.reset_states


def _case_outputs(case, outputs: list[np.ndarray]) -> list[np.ndarray]:
    """The outputs of the call on ``_case_arguments`` as the case's own call's list."""
    return semantics.later_call_outputs(case.spec, outputs, case.timesteps) if carries_state(case) else outputs


def expected_outputs(case) -> list[np.ndarray]:
    """The float64 oracle's answer for a ``conformance.matrix.case.Case`` (whatever case.dtype)."""
    return _case_outputs(case, forward(*_case_arguments(case)))


def exact_expected_outputs(case) -> list[np.ndarray]:
    """The correctly rounded answer for a ``Case``: what the golden fixtures store."""
    return _case_outputs(case, exact_forward(*_case_arguments(case)))


def answered(case):
    """``case`` with the float64 oracle's answer as its ``expected``: how a case drawn at run time (an
    unseen one, ``conformance.matrix.unseen``) gets its answer, in the process that judges."""
    return dataclasses.replace(case, expected=tuple(expected_outputs(case)))


RANGE_STEP = 0.1  # the recorded range is rounded outward to this


def _widen(ranges: dict[str, list[float]], key: str, low: float, high: float) -> None:
    """``ranges[key]`` grown to hold [low, high]."""
    bounds = ranges.setdefault(key, [low, high])
    bounds[0], bounds[1] = min(bounds[0], low), max(bounds[1], high)


def preactivation_ranges(case) -> dict[str, list[float]]:
    """The smallest and largest argument each use of an activation gets anywhere in the case
    (every sub-layer, step, row and unit), keyed "KIND:USE" (``activations.Observer``), in float64."""
    seen: dict[str, list[float]] = {}

    def observe(role: str, values: np.ndarray) -> None:
        _widen(seen, role, float(np.min(values)), float(np.max(values)))

    spec, weights, x, initial_state, mask = _case_arguments(case)
    forward(spec, weights, x, initial_state, mask, observe=observe)
    return dict(sorted(seen.items()))


def preactivation_range(case) -> dict[str, list[float]]:
    """Per kind of activation ("activation", "recurrent_activation"), the range its arguments
    cover in the case, rounded outward to 0.1: the coverage the fixtures manifest records. A
    bound lands on another 0.1 step only for a value within rounding of a multiple of 0.1, which
    no case of the matrix has."""
    by_kind: dict[str, list[float]] = {}
    for role, (low, high) in preactivation_ranges(case).items():
        _widen(by_kind, role.split(":")[0], low, high)
    return {kind: [float(np.floor(low / RANGE_STEP) / 10), float(np.ceil(high / RANGE_STEP) / 10)]
            for kind, (low, high) in sorted(by_kind.items())}
