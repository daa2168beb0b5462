"""The properties of a case: what a known-differences condition can name (``batch>=2``, ``!initial_state``).

A known difference has a cause — tract's LSTM fails for a batch above one without an initial
state, OpenVINO's fused kernel ignores the lengths of a masked row — and a cause is a property of
the case, not of its id: an unseen case (``conformance.matrix.unseen``) names its options in an
order and combination no fixed id has. This module is the one home of those properties:
``case_properties(case)`` reads them from a ``Case``, ``properties_of(case_id)`` from the case an
id names (a fixed case rebuilt by the matrix's code, an unseen one redrawn from its seed and
index), so that the pytest plugin, ``conformance run``'s planner and supervisor and ``conformance
compare`` judge an entry by the same facts.

``PROPERTIES`` is the vocabulary, each name with its kind and the values it takes. The layer
flags are those of the layers the user declares (a Bidirectional's one layer, a stack's layers, an
encoder and its decoder): a flag is true when any of them sets it; ``cell``, ``units`` and the
activations are the top layer's (``Case.layer``). The mask properties are read from the mask
itself, not from the option's name: a drawn ``mask_holes`` case of one step may hold no hole.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from conformance.matrix.case import MASK_SOURCES, Case
from conformance.matrix.cases import build_cases
from conformance.matrix.spec import ACTIVATIONS, CELLS, MERGE_MODES, LayerSpec
from conformance.matrix.unseen import is_unseen, redrawn

PropertyValue = bool | int | str
Properties = Mapping[str, PropertyValue]


@dataclass(frozen=True)
class Property:
    """One name of the vocabulary: its kind (``bool``, ``int`` or ``str``), the values a ``str`` one
    takes (none listed: any name), and what it says (the reference page lists these)."""

    kind: type
    doc: str
    values: tuple[str, ...] = ()


COMPOSITES = ("layer", "bidirectional", "stacked", "encoder_decoder")
SCHEMES = ("constant", "per_gate", "random", "saturating")
PROPERTIES: dict[str, Property] = {
    "cell": Property(str, "the top layer's cell", CELLS),
    "composite": Property(str, "how layers are combined", COMPOSITES),
    "merge_mode": Property(str, "a Bidirectional's merge mode (none elsewhere)",
                           tuple(str(m).lower() for m in MERGE_MODES)),
    "scheme": Property(str, "the weight scheme", SCHEMES),
    "option": Property(str, "the option label, the id's last part (any name: plain, tutorial, mask_holes, ...)"),
    "batch": Property(int, "rows of x"),
    "timesteps": Property(int, "steps of x (the encoder's, for an encoder-decoder)"),
    "features": Property(int, "features of x"),
    "units": Property(int, "the top layer's units"),
    "return_sequences": Property(bool, "the top layer returns its sequence"),
    "return_state": Property(bool, "the top layer returns its final states"),
    "go_backwards": Property(bool, "a declared layer runs backwards (not a Bidirectional's own copy)"),
    "activation": Property(str, "the top layer's activation", ACTIVATIONS),
    "recurrent_activation": Property(str, "the top layer's recurrent activation", ACTIVATIONS),
    "use_bias": Property(bool, "every declared layer has a bias"),
    "reset_after": Property(bool, "GRU's reset gate after the matmul (true for the other cells)"),
    "zero_output_for_mask": Property(bool, "a declared layer zeroes its output at masked steps"),
    "unroll": Property(bool, "a declared layer is unrolled"),
    "dropout": Property(bool, "a declared layer sets dropout or recurrent_dropout"),
    "recurrent_dropout": Property(bool, "a declared layer sets recurrent_dropout (Keras then takes its generic loop)"),
    "stateful": Property(bool, "a stateful layer: an earlier call's state carried into this one"),
    "reset_states": Property(bool, "reset_states() between the stateful calls"),
    "initial_state": Property(bool, "an initial state is passed"),
    "mask": Property(bool, "a mask is given"),
    "mask_source": Property(str, "how a Keras model receives the mask (argument where there is none)",
                            MASK_SOURCES),
    "masked_row": Property(bool, "a row of the mask has no real step"),
    "masked_start": Property(bool, "a row's first step is masked"),
    "mask_holes": Property(bool, "a masked step comes before a real one in some row"),
    "padded": Property(bool, "a row with real steps ends in masked ones (right padding)"),
    "unseen": Property(bool, "an unseen case, drawn at run time"),
}


def declared_layers(case: Case) -> list[LayerSpec]:
    """The layers the user writes: a Bidirectional's backward copy is the framework's, not theirs."""
    spec = case.spec
    return [spec.layer] if spec.kind == "bidirectional" else list(spec.sublayers().values())


def case_properties(case: Case) -> dict[str, PropertyValue]:
    """Every property of ``PROPERTIES`` for ``case`` (module doc)."""
    layers, top = declared_layers(case), case.layer
    merge_mode = getattr(case.spec, "merge_mode", None)
    return {
        "cell": case.cell, "composite": case.spec.kind, "merge_mode": str(merge_mode).lower(),
        "scheme": case.scheme, "option": case.option, "batch": case.batch, "timesteps": case.timesteps,
        "features": case.features,
        "units": top.units, "return_sequences": top.return_sequences, "return_state": top.return_state,
        "go_backwards": any(layer.go_backwards for layer in layers), "activation": top.activation,
        "recurrent_activation": top.recurrent_activation,
        "use_bias": all(layer.use_bias for layer in layers),
        "reset_after": all(layer.reset_after for layer in layers),
        "zero_output_for_mask": any(layer.zero_output_for_mask for layer in layers),
        "unroll": any(layer.unroll for layer in layers),
        "dropout": any(layer.dropout or layer.recurrent_dropout for layer in layers),
        "recurrent_dropout": any(layer.recurrent_dropout for layer in layers),
        "stateful": any(layer.stateful for layer in layers), "reset_states": case.reset_states,
        "initial_state": case.initial_state is not None,
        "mask_source": case.mask_source if case.mask is not None else "argument",
        **mask_properties(case.mask), "unseen": is_unseen(case.id),
    }


def mask_properties(mask: np.ndarray | None) -> dict[str, bool]:
    """What the mask's shape of real and masked steps is (all false without a mask)."""
    if mask is None:
        return {"mask": False, "masked_row": False, "masked_start": False, "mask_holes": False, "padded": False}
    mask = np.asarray(mask, dtype=bool)
    real_after = np.flip(np.logical_or.accumulate(np.flip(mask, axis=1), axis=1), axis=1)
    return {"mask": True, "masked_row": bool((~mask.any(axis=1)).any()), "masked_start": bool((~mask[:, 0]).any()),
            "mask_holes": bool((~mask[:, :-1] & real_after[:, 1:]).any()),
            "padded": bool((mask.any(axis=1) & ~mask[:, -1]).any())}


# Cases a process holds already (``remember``), by id: their properties without rebuilding them.
_REMEMBERED: dict[str, dict[str, PropertyValue]] = {}


def remember(cases: Iterable[Case]) -> None:
    """Keep the properties of cases this process loaded (the fixtures, the unseen cases it drew), so
    that ``properties_of`` reads them instead of rebuilding each case (a second for 200 unseen
    cases, two for the matrix, on a loaded machine)."""
    _REMEMBERED.update((case.id, case_properties(case)) for case in cases)


def properties_of(case_id: str) -> dict[str, PropertyValue] | None:
    """The properties of the case ``case_id`` names (a test id's ``[...]`` part is ignored): one this
    process ``remember``s, else an unseen case redrawn from its seed and index, a fixed one rebuilt
    by the matrix's code; None for an id none of these names (a drawn case of the search)."""
    case_id = case_id.partition("[")[0]
    if case_id in _REMEMBERED:
        return _REMEMBERED[case_id]
    if is_unseen(case_id):
        return _unseen_properties(case_id)
    return _fixed_properties().get(case_id)


@functools.lru_cache(maxsize=4096)
def _unseen_properties(case_id: str) -> dict[str, PropertyValue] | None:
    case = redrawn(case_id)
    return None if case is None else case_properties(case)


@functools.lru_cache(maxsize=1)
def _fixed_properties() -> dict[str, dict[str, PropertyValue]]:
    """Every fixed case's properties, by id: the matrix built once per process (half a second)."""
    return {case.id: case_properties(case) for case in build_cases()}
