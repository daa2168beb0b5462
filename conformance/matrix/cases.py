"""The case matrix: a deterministic, curated list of named cases.

Every family crosses the 12 cell x return_sequences x return_state
combinations. Ids read ``{cell}-seq{0|1}-state{0|1}-{scheme}-b{batch}t{steps}``
with ``-{option}`` appended for anything beyond the plain layer, e.g.
``lstm-seq1-state1-per_gate-b2t5`` or ``gru-seq0-state1-random-b3t5-mask_holes``.
Random values are drawn from a generator seeded by the case id, so a case
never changes when others are added.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import numpy as np

from conformance.matrix.case import Case
from conformance.matrix.drawn import adopted_cases
from conformance.matrix.making import (  # noqa: F401 - re-exported: the families' building blocks
    EARLIER_STEPS,
    FEATURES,
    SATURATING_INPUT,
    VOCABULARY,
    embedding_input,
    make_case,
    mask_with_empty_row,
    mask_with_holes,
    masking_input,
    on_reduced_grid,
    right_padded_mask,
    rng_for,
)
from conformance.matrix.spec import (
    CELLS,
    MERGE_MODES,
    AnySpec,
    BidirectionalSpec,
    EncoderDecoderSpec,
    LayerSpec,
    StackedSpec,
    flag_label,
)
from conformance.matrix.weights import uniform

FLAGS = ((False, False), (True, False), (False, True), (True, True))
UNITS = 4
TUTORIAL_INPUT = (0.1, 0.2, 0.3, 0.1, 0.2, 0.3)
LONG_STEPS = 48


def _id(cell: str, seq: bool, state: bool, scheme: str, batch: int, steps: int, option: str = "") -> str:
    base = f"{cell}-{flag_label(seq, state)}-{scheme}-b{batch}t{steps}"
    return f"{base}-{option}" if option else base


# --- families --------------------------------------------------------------------------------


def tutorial_cases() -> Iterator[Case]:
    """The tutorials' exact set-up: units 1, x = [.1 .2 .3 .1 .2 .3] as (1, 3, 2), constants."""
    x = np.asarray(TUTORIAL_INPUT).reshape(1, 3, 2)
    for cell in CELLS:
        for seq, state in FLAGS:
            spec = LayerSpec(cell, 1, return_sequences=seq, return_state=state)
            case_id = _id(cell, seq, state, "constant", 1, 3, "tutorial")
            yield make_case(case_id, spec, "constant", 1, 3, option="tutorial", features=2, x=x,
                            dtypes=("float32", "float64"))


CORE_SHAPES = {"constant": ((1, 1), (3, 5)), "per_gate": ((1, 1), (2, 5), (3, 7)),
               "random": ((1, 1), (3, 5), (4, LONG_STEPS))}


def core_cases() -> Iterator[Case]:
    """Plain layers: every scheme x shape, float64 on the random ones."""
    for cell in CELLS:
        for seq, state in FLAGS:
            for scheme, shapes in CORE_SHAPES.items():
                for batch, steps in shapes:
                    spec = LayerSpec(cell, UNITS, return_sequences=seq, return_state=state)
                    dtypes = ("float32", "float64") if scheme != "constant" else ("float32",)
                    yield make_case(_id(cell, seq, state, scheme, batch, steps), spec, scheme,
                                    batch, steps, dtypes=dtypes)


# option name -> (LayerSpec overrides, mask maker, initial_state, scheme)
LAYER_OPTIONS: dict[str, tuple[dict, Callable | None, bool, str]] = {
    "go_backwards": ({"go_backwards": True}, None, False, "per_gate"),
    "initial_state": ({}, None, True, "random"),
    "mask_right": ({}, right_padded_mask, False, "random"),
    "mask_holes": ({}, mask_with_holes, False, "random"),
    "mask_empty_row": ({}, mask_with_empty_row, True, "random"),
    "mask_go_backwards": ({"go_backwards": True}, right_padded_mask, False, "random"),
    "mask_holes_go_backwards": ({"go_backwards": True}, mask_with_holes, False, "random"),
    "zero_output_for_mask": ({"zero_output_for_mask": True}, right_padded_mask, False, "random"),
    "zero_output_for_mask_holes": ({"zero_output_for_mask": True}, mask_with_holes, False, "random"),
    "go_backwards_initial_state": ({"go_backwards": True}, None, True, "random"),
    "no_bias": ({"use_bias": False}, None, False, "per_gate"),
    "relu": ({"activation": "relu"}, None, False, "random"),
    "linear": ({"activation": "linear"}, None, False, "random"),
    "hard_sigmoid": ({"recurrent_activation": "hard_sigmoid"}, None, False, "random"),
    "legacy_hard_sigmoid": ({"recurrent_activation": "legacy_hard_sigmoid"}, None, False, "random"),
    "sigmoid_activation": ({"activation": "sigmoid"}, None, False, "random"),
    # Inference-invariant arguments (LayerSpec's doc): the plain layer's numbers are the answer.
    "unroll": ({"unroll": True}, None, False, "random"),
    "unroll_go_backwards": ({"unroll": True, "go_backwards": True}, None, True, "random"),
    "unroll_mask_holes": ({"unroll": True}, mask_with_holes, True, "random"),
    "dropout": ({"dropout": 0.5, "recurrent_dropout": 0.5}, None, False, "random"),
    "dropout_mask_right": ({"dropout": 0.5, "recurrent_dropout": 0.5}, right_padded_mask, True, "random"),
}

GRU_OPTIONS: dict[str, tuple[dict, Callable | None, bool, str]] = {
    "reset_before": ({"reset_after": False}, None, False, "per_gate"),
    "reset_before_random": ({"reset_after": False}, None, False, "random"),
    "reset_before_mask_right": ({"reset_after": False}, right_padded_mask, True, "random"),
    "reset_before_no_bias": ({"reset_after": False, "use_bias": False}, None, False, "random"),
}


def option_cases() -> Iterator[Case]:
    """Each layer option crossed with the 12 cell x flag combinations (GRU options: GRU only)."""
    batch, steps = 3, 5
    for cell in CELLS:
        options = dict(LAYER_OPTIONS, **(GRU_OPTIONS if cell == "gru" else {}))
        for option, (overrides, mask, initial_state, scheme) in options.items():
            if cell == "simple_rnn" and "hard_sigmoid" in option:
                continue  # SimpleRNN has no recurrent_activation
            for seq, state in FLAGS:
                spec = LayerSpec(cell, UNITS, return_sequences=seq, return_state=state, **overrides)
                dtypes = ("float32", "float64") if option in ("mask_holes", "go_backwards") else ("float32",)
                yield make_case(_id(cell, seq, state, scheme, batch, steps, option), spec, scheme,
                                batch, steps, option, mask, initial_state, dtypes=dtypes)


SATURATING_OPTIONS = {"": {}, "hard_sigmoid": {"recurrent_activation": "hard_sigmoid"},
                      "legacy_hard_sigmoid": {"recurrent_activation": "legacy_hard_sigmoid"}}


def whole_range_cases() -> Iterator[Case]:
    """Every cell x flags (and both hard sigmoids for LSTM and GRU) on the saturating scheme:
    each gate and activation through its middle and far into both tails (weights.py)."""
    batch, steps = 3, 5
    for cell in CELLS:
        for option, overrides in SATURATING_OPTIONS.items():
            if cell == "simple_rnn" and option:
                continue  # SimpleRNN has no recurrent_activation
            for seq, state in FLAGS:
                case_id = _id(cell, seq, state, "saturating", batch, steps, option)
                spec = LayerSpec(cell, UNITS, return_sequences=seq, return_state=state, **overrides)
                x = uniform(rng_for(case_id + "/x"), -SATURATING_INPUT, SATURATING_INPUT, (batch, steps, FEATURES))
                yield make_case(case_id, spec, "saturating", batch, steps, option or "plain", x=x)


SAME_SIZE = 4  # batch == timesteps == features == units


def same_size_cases() -> Iterator[Case]:
    """Batch, timesteps, features and units all 4: a framework or converter that swaps two
    axes (time-major for batch-major, a transposed kernel) raises no shape error here and
    must fail on values."""
    for cell in CELLS:
        for seq, state in FLAGS:
            spec = LayerSpec(cell, SAME_SIZE, return_sequences=seq, return_state=state)
            case_id = _id(cell, seq, state, "random", SAME_SIZE, SAME_SIZE, "same_sizes")
            yield make_case(case_id, spec, "random", SAME_SIZE, SAME_SIZE, "same_sizes",
                            initial_state=True, features=SAME_SIZE, dtypes=("float32", "float64"))


def _merge_label(merge_mode: str | None) -> str:
    return f"bidi_{merge_mode or 'none'}"


def bidirectional_cases() -> Iterator[Case]:
    """Every merge mode with every flag combination; then masks and initial states."""
    batch, steps = 3, 5
    for cell in CELLS:
        for seq, state in FLAGS:
            layer = LayerSpec(cell, UNITS, return_sequences=seq, return_state=state)
            for merge_mode in MERGE_MODES:
                option = _merge_label(merge_mode)
                yield make_case(_id(cell, seq, state, "random", batch, steps, option),
                                BidirectionalSpec(layer, merge_mode), "random", batch, steps, option)
            extras = {"bidi_concat_mask_right": (right_padded_mask, False),
                      "bidi_concat_mask_holes": (mask_with_holes, False),
                      "bidi_concat_initial_state": (None, True)}
            for option, (mask, initial_state) in extras.items():
                yield make_case(_id(cell, seq, state, "random", batch, steps, option),
                                BidirectionalSpec(layer, "concat"), "random", batch, steps,
                                option, mask, initial_state)
            # Keras overrides the layer's own zero_output_for_mask with return_sequences.
            zeroing = dataclasses.replace(layer, zero_output_for_mask=True)
            option = "bidi_concat_zero_output_for_mask"
            yield make_case(_id(cell, seq, state, "random", batch, steps, option),
                            BidirectionalSpec(zeroing, "concat"), "random", batch, steps, option,
                            right_padded_mask)


def composite_cases() -> Iterator[Case]:
    """Two stacked layers (plain, masked) and encoder states fed to a decoder."""
    batch, steps = 3, 5
    for cell in CELLS:
        for seq, state in FLAGS:
            first = LayerSpec(cell, 5, return_sequences=True)
            last = LayerSpec(cell, UNITS, return_sequences=seq, return_state=state)
            stacked = StackedSpec((first, last))
            for option, mask in (("stacked", None), ("stacked_mask_right", right_padded_mask)):
                yield make_case(_id(cell, seq, state, "random", batch, steps, option), stacked,
                                "random", batch, steps, option, mask)
            encoder = LayerSpec(cell, UNITS, return_state=True)
            pair = EncoderDecoderSpec(encoder, last)
            for option, mask in (("encdec", None), ("encdec_mask_right", right_padded_mask)):
                yield make_case(_id(cell, seq, state, "random", batch, steps, option), pair,
                                "random", batch, steps, option, mask)


# option name -> (mask maker, initial_state): masks a Masking layer derives from x.
MASKING_OPTIONS: dict[str, tuple[Callable, bool]] = {
    "masking_right": (right_padded_mask, False),
    "masking_holes": (mask_with_holes, True),
    "masking_empty_row": (mask_with_empty_row, True),
}


def masking_layer_cases() -> Iterator[Case]:
    """Masks from their usual source: a ``Masking(mask_value=0.0)`` layer ahead of the layer (of
    a stack, for the mask Keras propagates to its second layer; of a Bidirectional, whose two
    directions both take it), x zero at every masked step.
    What exporters must translate; other frameworks read the same mask as ``case.mask``."""
    batch, steps = 3, 5
    for cell in CELLS:
        for seq, state in FLAGS:
            spec = LayerSpec(cell, UNITS, return_sequences=seq, return_state=state)
            for option, (mask, initial_state) in MASKING_OPTIONS.items():
                yield make_case(_id(cell, seq, state, "random", batch, steps, option), spec, "random",
                                batch, steps, option, mask, initial_state, mask_source="masking")
            composites = {"stacked_masking_right": StackedSpec((LayerSpec(cell, 5, return_sequences=True), spec)),
                          "bidi_concat_masking_right": BidirectionalSpec(spec, "concat")}
            for option, composite in composites.items():
                yield make_case(_id(cell, seq, state, "random", batch, steps, option), composite, "random",
                                batch, steps, option, right_padded_mask, mask_source="masking")


# option name -> (spec maker from the plain layer, mask maker): masks an Embedding(mask_zero=True) gives.
EMBEDDING_OPTIONS: dict[str, tuple[Callable[[LayerSpec], AnySpec], Callable]] = {
    "embedding_right": (lambda layer: layer, right_padded_mask),
    "embedding_holes": (lambda layer: layer, mask_with_holes),
    "bidi_concat_embedding_right": (lambda layer: BidirectionalSpec(layer, "concat"), right_padded_mask),
}


def embedding_cases() -> Iterator[Case]:
    """Masks from an ``Embedding(mask_zero=True)`` ahead of the layer (right-padded, with holes,
    and ahead of a Bidirectional): the model reads int tokens, 0 at the masked steps. What
    exporters must translate (a Gather and the mask it implies); other frameworks read
    ``embeddings[tokens]`` as ``case.x`` and the mask as ``case.mask``."""
    batch, steps = 3, 5
    for cell in CELLS:
        for seq, state in FLAGS:
            layer = LayerSpec(cell, UNITS, return_sequences=seq, return_state=state)
            for option, (spec_of, mask) in EMBEDDING_OPTIONS.items():
                yield make_case(_id(cell, seq, state, "random", batch, steps, option), spec_of(layer), "random",
                                batch, steps, option, mask, mask_source="embedding")


# option name -> (LayerSpec overrides, reset_states between the calls)
STATEFUL_OPTIONS = {
    "stateful": ({}, False),
    "stateful_go_backwards": ({"go_backwards": True}, False),
    "stateful_reset": ({}, True),
}


def stateful_cases() -> Iterator[Case]:
    """``stateful=True``: a call on ``earlier_x`` (4 steps), then the case's call (5 steps) from the
    state the first left; with ``reset_states()`` between them, from zeros again."""
    batch, steps = 3, 5
    for cell in CELLS:
        for seq, state in FLAGS:
            for option, (overrides, reset) in STATEFUL_OPTIONS.items():
                spec = LayerSpec(cell, UNITS, return_sequences=seq, return_state=state, stateful=True, **overrides)
                yield make_case(_id(cell, seq, state, "random", batch, steps, option), spec, "random", batch, steps,
                                option, earlier_steps=EARLIER_STEPS, reset_states=reset)


REDUCED_PRECISION_SHAPES = (("random", 3, 5), ("random", 4, LONG_STEPS), ("saturating", 3, 5))
REDUCED_PRECISION_DTYPES = ("float32", "float16", "bfloat16")


def reduced_precision_cases() -> Iterator[Case]:
    """Rows in float16 and bfloat16 beside float32, for every cell x flags: the random scheme over
    5 and 48 steps (how error grows along the sequence) and the saturating one, on inputs and
    weights that each dtype holds exactly, judged against the float64 truth by the
    reduced-precision rule (tolerance.py)."""
    for cell in CELLS:
        for seq, state in FLAGS:
            spec = LayerSpec(cell, UNITS, return_sequences=seq, return_state=state)
            for scheme, batch, steps in REDUCED_PRECISION_SHAPES:
                case_id = _id(cell, seq, state, scheme, batch, steps, "reduced_precision")
                x = None
                if scheme == "saturating":
                    x = uniform(rng_for(case_id + "/x"), -SATURATING_INPUT, SATURATING_INPUT,
                                (batch, steps, FEATURES))
                case = make_case(case_id, spec, scheme, batch, steps, "reduced_precision", x=x,
                                 dtypes=REDUCED_PRECISION_DTYPES)
                yield on_reduced_grid(case)


FAMILIES = (tutorial_cases, core_cases, option_cases, bidirectional_cases, composite_cases, whole_range_cases,
            same_size_cases, masking_layer_cases, embedding_cases, stateful_cases,
            reduced_precision_cases, adopted_cases)


def build_cases() -> list[Case]:
    """The whole matrix, in a fixed order; duplicate ids are a bug and raise."""
    cases = [case for family in FAMILIES for case in family()]
    seen: set[str] = set()
    for case in cases:
        if case.id in seen:
            raise ValueError(f"duplicate case id {case.id!r}")
        seen.add(case.id)
    return cases


def replace_expected(case: Case, expected: tuple[np.ndarray, ...]) -> Case:
    return dataclasses.replace(case, expected=expected)
