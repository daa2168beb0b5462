"""Building one case: its values seeded by its id, its mask, what a Masking layer or an Embedding
derives that mask from, and the reduced-precision grid. Shared by the listed families
(``cases.py``) and the drawn ones (``drawn.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import numpy as np

from conformance.matrix.case import MASK_VALUE, Case
from conformance.matrix.spec import AnySpec, BidirectionalSpec, EncoderDecoderSpec, LayerSpec, StackedSpec
from conformance.matrix.weights import as_float32_values, as_reduced_values, make_weights, uniform

FEATURES = 3
SATURATING_INPUT = 2.0  # inputs within ±2 beside the saturating scheme's weights
EARLIER_STEPS = 4  # the earlier call's length: not the later one's, so the two cannot be mixed up


def rng_for(case_id: str) -> np.random.Generator:
    seed = int.from_bytes(hashlib.sha256(case_id.encode()).digest()[:8], "little")
    return np.random.default_rng(seed)


# --- masks: True where a step is real -------------------------------------------------


def right_padded_mask(batch: int, steps: int) -> np.ndarray:
    """Row lengths steps, steps-2, 1, steps-1, ...: every row keeps >= 1 step."""
    lengths = [steps, max(1, steps - 2), 1, max(1, steps - 1)]
    lengths = [lengths[n % len(lengths)] for n in range(batch)]
    return np.arange(steps)[None, :] < np.asarray(lengths)[:, None]


def mask_with_holes(batch: int, steps: int) -> np.ndarray:
    """Masked steps in the middle and at the start, not only at the end."""
    patterns = ([1, 0, 1, 1, 0], [1, 1, 0, 0, 1], [0, 1, 1, 0, 1], [1, 0, 0, 1, 1])
    rows = [np.resize(patterns[n % len(patterns)], steps) for n in range(batch)]
    return np.asarray(rows, dtype=bool)


def mask_with_empty_row(batch: int, steps: int) -> np.ndarray:
    """Row 1 is fully masked; the others are right-padded."""
    mask = right_padded_mask(batch, steps)
    mask[1 % batch] = False
    return mask


# --- building one case --------------------------------------------------------------------


def _spec_layers(spec: AnySpec) -> dict[str, LayerSpec]:
    return spec.sublayers()


def _layer_input_width(spec: AnySpec, name: str, features: int) -> int:
    if isinstance(spec, StackedSpec):
        index = int(name.split("_")[1])
        return features if index == 0 else spec.layers[index - 1].units
    return features


def make_case(case_id: str, spec: AnySpec, scheme: str, batch: int, steps: int,
              option: str = "plain", mask: Callable[[int, int], np.ndarray] | None = None,
              initial_state: bool = False, features: int = FEATURES,
              x: np.ndarray | None = None, dtypes: tuple[str, ...] = ("float32",),
              mask_source: str = "argument", earlier_steps: int | None = None,
              reset_states: bool = False) -> Case:
    rng = rng_for(case_id)
    mask_array = None if mask is None else mask(batch, steps)
    if x is None:
        x = uniform(rng, -1.0, 1.0, (batch, steps, features))
    if mask_source == "masking":
        x = masking_input(x, mask_array)
    tokens = embeddings = None
    if mask_source == "embedding":
        tokens, embeddings = embedding_input(rng_for(case_id + "/tokens"), mask_array, features)
        x = embeddings[tokens]
    earlier_x = None
    if earlier_steps is not None:
        earlier = uniform(rng_for(case_id + "/earlier"), -1.0, 1.0, (batch, earlier_steps, features))
        earlier_x = as_float32_values(earlier)
    weights = {name: make_weights(layer, _layer_input_width(spec, name, features), scheme, rng)
               for name, layer in _spec_layers(spec).items()}
    decoder_x = None
    if isinstance(spec, EncoderDecoderSpec):
        decoder_x = as_float32_values(uniform(rng, -1.0, 1.0, (batch, max(1, steps - 1), features)))
    states = None
    if initial_state:
        first = next(iter(_spec_layers(spec).values()))
        copies = 2 if isinstance(spec, BidirectionalSpec) else 1
        states = tuple(as_float32_values(uniform(rng, -0.8, 0.8, (batch, first.units)))
                       for _ in range(copies * len(first.state_names)))
    return Case(id=case_id, spec=spec, x=as_float32_values(x), weights=weights,
                mask=mask_array, initial_state=states,
                decoder_x=decoder_x, scheme=scheme, option=option, dtypes=dtypes, mask_source=mask_source,
                tokens=tokens, embeddings=embeddings, earlier_x=earlier_x, reset_states=reset_states)


def masking_input(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``x`` as a ``Masking(mask_value=MASK_VALUE)`` layer must see it to derive ``mask``: every
    feature of a masked step is MASK_VALUE; and each row's first real step has its first feature
    at MASK_VALUE too, because Masking masks a step only when *all* its features equal the value
    (a port that masks on any one of them is caught there)."""
    x = np.where(mask[:, :, None], x, MASK_VALUE)
    for row, keep in enumerate(mask):
        real = np.flatnonzero(keep)
        if real.size:
            x[row, real[0], 0] = MASK_VALUE
    return x


VOCABULARY = 6  # token ids 0..5; 0 is the padding id Embedding(mask_zero=True) masks


def embedding_input(rng: np.random.Generator, mask: np.ndarray, features: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and an embedding table for ``Embedding(VOCABULARY, features, mask_zero=True)`` to give
    ``mask``: token 0 exactly at the masked steps, 1.. elsewhere. Row 0 of the table is no zero
    vector, so a port that forgets the mask (or derives it from zero vectors, as ``Masking``
    would) computes on it and is caught."""
    embeddings = as_float32_values(uniform(rng, -1.0, 1.0, (VOCABULARY, features)))
    tokens = rng.integers(1, VOCABULARY, size=mask.shape).astype(np.int32)
    return np.where(mask, tokens, 0).astype(np.int32), embeddings


def on_reduced_grid(case: Case) -> Case:
    """``case`` with every input, state and weight rounded to the bfloat16 grid (weights.py
    ``as_reduced_values``): values each dtype holds exactly."""
    rounded = (lambda a: None if a is None else as_reduced_values(a))
    return dataclasses.replace(
        case, x=rounded(case.x), decoder_x=rounded(case.decoder_x), embeddings=rounded(case.embeddings),
        earlier_x=rounded(case.earlier_x),
        initial_state=None if case.initial_state is None else tuple(rounded(s) for s in case.initial_state),
        weights={name: {k: rounded(v) for k, v in w.items()} for name, w in case.weights.items()})
