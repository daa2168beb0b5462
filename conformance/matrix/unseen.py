"""Unseen cases: drawn at run time from a seed, so that no adapter can have been tuned to them.

The golden fixtures are public; a runtime tuned until they pass has certified them, not the layer
(issue 30). ``unseen_cases(count, seed)`` draws ``count`` more cases from the space the fixed
matrix covers. They come without their answer (``expected`` None), as an adapter must see them;
the process that judges gives each the float64 oracle's, ``conformance.reference.answered(case)``:
a millisecond a case, where the exact oracle the fixtures use takes fifty (SEMANTICS.md §7 says
why the float64 answer is good enough for the tolerances used).

**Proportions.** Case ``k`` belongs to the fixed family ``k mod 12`` (``cases.FAMILIES``, in
their order), so any ``count`` of at least 12 reaches every family. Within its family a case is
a ``Draw`` (``drawn.py``: the one description of the matrix's space) whose fields that family
varies (``FAMILY_SPACES``) are drawn from that family's values, the others left at the simplest
value; its dtype rows are those the family gives its cases (float32 and float64 on the plain
layers, float32, float16 and bfloat16 on the reduced-precision family, ...).

**Ids** follow the fixed grammar with ``unseen{SEED}-{INDEX}`` where a drawn case has
``drawn{KEY}``, e.g. ``gru-seq1-state0-random-b3t5-unseen42-7-mask_holes``: they say they are
unseen (``is_unseen``), are unique within a seed and differ between seeds, and keep the cell
first, the flags and scheme where the fixed ids have them and the option label (``Draw.option``)
last, so that a known-differences pattern on those applies to them as written. (A pattern on a
fixed option's whole label, ``*-masking_holes[...]``, misses an unseen case whose label names more
options after it: ``...-masking_holes_initial_state``.)

**Determinism.** Case ``k`` of seed ``S`` is drawn from ``numpy.random.default_rng((S, k))``
and its values, as every case's, from a generator seeded by its id: the same seed gives the same
cases, bit for bit, on any machine, whatever its kernels, and whatever ``count`` asked for them.
The float64 answer is the same bytes under other thread counts; under other SIMD and BLAS
kernels its last bits move (``reference.numbers``), within the bound the fixtures hold that oracle
to (``tests/test_unseen_independence.py``), a negligible share of every tolerance (SEMANTICS.md §7).
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from conformance.matrix import drawn
from conformance.matrix.case import Case
from conformance.matrix.cases import FAMILIES, LONG_STEPS, REDUCED_PRECISION_DTYPES, SAME_SIZE
from conformance.matrix.drawn import Draw, base_case

# Seeds are unsigned 64-bit integers: any numpy's SeedSequence takes, short enough for an id.
MAX_SEED = 2 ** 64 - 1
UNSEEN_LABEL = re.compile(r"-unseen(?P<seed>\d+)-(?P<index>\d+)-")

# What every family varies: the cell, the output flags and the sizes.
EVERY_FAMILY = ("cell", "return_sequences", "return_state", "batch", "steps", "features", "units")
# The families that run long sequences (cases.LONG_STEPS) draw that length beside the short ones.
WITH_LONG_STEPS = drawn.SPACE["steps"] + (LONG_STEPS,)
FLOAT32 = ("float32",)
FLOAT32_AND_64 = ("float32", "float64")


@dataclass(frozen=True)
class FamilySpace:
    """The part of the space one fixed family covers: the ``Draw`` fields it varies over all their
    values (``drawn.SPACE``; the cell, flags and sizes always), those it varies over some
    (``narrowed``), the rest left at ``Draw``'s defaults; the dtype rows it gives its cases (None:
    the draw's own dtype alone); and a last adjustment (a tie between fields)."""

    varies: tuple[str, ...] = ()
    narrowed: dict[str, tuple] = field(default_factory=dict)
    rows: tuple[tuple[str, ...], ...] | None = (FLOAT32,)
    adjust: Callable[[Draw], Draw] | None = None

    def choices(self) -> dict[str, tuple]:
        """Each varied field and its values, in ``Draw``'s field order."""
        chosen = {name: drawn.SPACE[name] for name in EVERY_FAMILY + self.varies} | self.narrowed
        return {name: chosen[name] for name in drawn.SPACE if name in chosen}


def _same_sizes(draw: Draw) -> Draw:
    """Batch, steps, features and units one number, as on the fixed same-size cases."""
    return dataclasses.replace(draw, steps=draw.batch, features=draw.batch, units=draw.batch)


LAYER_OPTIONS = ("go_backwards", "initial_state", "mask", "zero_output_for_mask", "use_bias", "reset_after",
                 "activation", "recurrent_activation", "unroll", "dropout")
MASKED = drawn.MASKS[1:]
# One entry per fixed family (cases.FAMILIES, by function name): what its cases vary.
FAMILY_SPACES: dict[str, FamilySpace] = {
    "tutorial_cases": FamilySpace(narrowed={"batch": (1,), "steps": (3,), "features": (2,), "units": (1,)},
                                  rows=(FLOAT32_AND_64,)),
    "core_cases": FamilySpace(narrowed={"steps": WITH_LONG_STEPS, "scheme": ("constant", "per_gate", "random")},
                              rows=(FLOAT32, FLOAT32_AND_64)),
    "option_cases": FamilySpace(LAYER_OPTIONS, {"scheme": ("per_gate", "random")}, rows=(FLOAT32, FLOAT32_AND_64)),
    "bidirectional_cases": FamilySpace(
        ("merge_mode", "initial_state", "zero_output_for_mask"),
        {"composite": ("bidirectional",), "mask": ("none", "right", "holes"), "scheme": ("random",)}),
    "composite_cases": FamilySpace(narrowed={"composite": ("stacked", "encdec"), "mask": ("none", "right"),
                                             "scheme": ("random",)}),
    "whole_range_cases": FamilySpace(("recurrent_activation",), {"scheme": ("saturating",)}),
    "same_size_cases": FamilySpace(narrowed={"batch": tuple(range(2, SAME_SIZE + 1)), "initial_state": (True,),
                                             "scheme": ("random",)}, rows=(FLOAT32_AND_64,), adjust=_same_sizes),
    "masking_layer_cases": FamilySpace(("initial_state",), {"mask_source": ("masking",), "mask": MASKED,
                                                            "composite": ("layer", "bidirectional", "stacked"),
                                                            "scheme": ("random",)}),
    "embedding_cases": FamilySpace(narrowed={"mask_source": ("embedding",), "mask": MASKED,
                                             "composite": ("layer", "bidirectional"), "scheme": ("random",)}),
    "stateful_cases": FamilySpace(("go_backwards",), {"stateful": drawn.STATEFUL[1:], "scheme": ("random",)}),
    "reduced_precision_cases": FamilySpace(narrowed={"steps": WITH_LONG_STEPS, "scheme": ("random", "saturating"),
                                                     "dtype": ("float16", "bfloat16")},
                                           rows=(REDUCED_PRECISION_DTYPES,)),
    # The search's space (drawn.draws), every dimension at once: where the adopted cases come from.
    "adopted_cases": FamilySpace(tuple(drawn.SPACE), rows=None),
}
FAMILY_ORDER = tuple(family.__name__ for family in FAMILIES)


def check_count(count: object) -> int:
    """``count`` if it is a whole number >= 0; else ValueError with one line saying so."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"the number of unseen cases must be a whole number >= 0, got {count!r}")
    return count


def check_seed(seed: object) -> int:
    """``seed`` if it is a whole number from 0 to MAX_SEED; else ValueError with one line saying so."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"the unseen cases' seed must be a whole number from 0 to 2**64 - 1, got {seed!r}")
    return seed


def fresh_seed() -> int:
    """A new seed for a run that names none (recorded with its results, so that it can be rerun);
    32 bits, so that ids stay short."""
    return secrets.randbelow(2 ** 32)


def is_unseen(case_id: str) -> bool:
    """Whether a case id (or test id) is an unseen case's."""
    return UNSEEN_LABEL.search(case_id) is not None


def unseen_draw(seed: int, index: int) -> tuple[Draw, tuple[str, ...]]:
    """Case ``index`` of ``seed``: its family's draw (normalized) and the dtype rows it runs in."""
    space = FAMILY_SPACES[FAMILY_ORDER[index % len(FAMILY_ORDER)]]
    rng = np.random.default_rng((seed, index))
    draw = Draw(**{name: _pick(rng, values) for name, values in space.choices().items()})
    if space.adjust is not None:
        draw = space.adjust(draw)
    draw = draw.normalized()
    rows = (draw.dtype,) if space.rows is None else _pick(rng, space.rows)
    return draw, rows


def unseen_case(seed: int, index: int) -> Case:
    """Case ``index`` of ``seed`` with its dtype rows, without its answer."""
    draw, rows = unseen_draw(seed, index)
    return dataclasses.replace(base_case(draw, f"unseen{seed}-{index}"), dtypes=rows)


def redrawn(case_id: str) -> Case | None:
    """The unseen case ``case_id`` names, drawn again from the seed and index in its id (without its
    answer); None where the id is no unseen case's, or not the one that seed and index draw."""
    label = UNSEEN_LABEL.search(case_id)
    if label is None:
        return None
    case = unseen_case(int(label["seed"]), int(label["index"]))
    return case if case.id == case_id else None


def unseen_cases(count: int, seed: int) -> list[Case]:
    """``count`` cases drawn from the matrix's space with ``seed``, without their answers (module doc);
    ValueError, one line, for a count or seed that is not a whole number in range."""
    check_count(count)
    check_seed(seed)
    return [unseen_case(seed, index) for index in range(count)]


def _pick(rng: np.random.Generator, values: tuple):
    """One of ``values`` (the Python object itself, never a numpy scalar)."""
    return values[int(rng.integers(len(values)))]
