"""The default plan: a covering design over the matrix, for adapters that pay per model structure.

An adapter that converts, exports or compiles a model for every structure it
meets (tf2onnx, torch.export, XLA, OpenVINO's compiler) spends seconds per
case where an eager framework spends milliseconds. For those adapters
``conformance run`` runs, by default, a subset of the matrix chosen here, not
by hand: every *factor* a case × dtype has (``factors``: its cell and flags,
each layer argument, the composite and its merge mode, the mask's pattern and
source, initial and carried state, weight scheme, shape, dtype) is a column;
the plan holds

- every value of every factor, and every option (the case family) once, and
- every *pair* of values of two factors that occurs together anywhere in the
  matrix (pairwise interactions: LSTM with a right-padded mask, GRU with
  ``reset_after=False`` and ``go_backwards``, bfloat16 with the saturating
  scheme, ...),

chosen greedily (the pair with the most still-uncovered factor values first,
ties broken by matrix order), so the plan is the same on every machine and
changes only when the fixtures do. Which porting bugs it still catches is
judged by the suite's faulty adapters (``tests/test_covering_plan.py``); what
it leaves out is recorded in every run that uses it, and ``conformance run
--full`` runs everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from itertools import combinations

import numpy as np

from conformance.matrix.case import Case

# The factors whose values are covered one by one only: a family, or a cell with both flags, is a
# bundle of other factors' values (cell, return_sequences, return_state are paired one by one), so
# pairing the bundle would take most of the matrix again.
SINGLES_ONLY = ("option", "cell_flags")
WHY_LEFT_OUT = ("left to the full plan (conformance run --full): every factor value and every pair of "
                "factor values it holds is in the covering plan")


def mask_pattern(mask: np.ndarray | None) -> str:
    """What a mask asks of a framework: ``none``, ``right_padded`` (every row a prefix),
    ``holes`` (a masked step before a real one) or ``empty_row`` (a row with no real step)."""
    if mask is None:
        return "none"
    mask = np.asarray(mask, dtype=bool)
    if not mask.any(axis=1).all():
        return "empty_row"
    prefix = np.cumprod(mask, axis=1).astype(bool)
    return "right_padded" if np.array_equal(prefix, mask) else "holes"


def factors(case: Case, dtype: str) -> dict[str, object]:
    """The factors of one case in one dtype, by name: what the covering design must vary."""
    layer = case.layer
    layer_arguments = {f"layer.{name}": value for name, value in layer.to_dict().items()
                       if name != "kind"}
    stateful = None if case.earlier_x is None else ("reset" if case.reset_states else "carried")
    return {
        "cell_flags": case.group,
        **layer_arguments,
        "composite": case.spec.kind,
        "merge_mode": getattr(case.spec, "merge_mode", "n/a"),
        "mask": mask_pattern(case.mask),
        "mask_source": case.mask_source if case.mask is not None else "n/a",
        "initial_state": case.initial_state is not None,
        "stateful": stateful,
        "scheme": case.scheme,
        "shape": f"b{case.batch}t{case.timesteps}",
        "dtype": dtype,
        "option": case.option,
    }


def covered_by(case: Case, dtype: str) -> frozenset:
    """Every factor value and every pair of factor values (but the singles-only ones) this pair holds."""
    values = factors(case, dtype)
    singles = list(values.items())
    paired = [single for single in singles if single[0] not in SINGLES_ONLY]
    return frozenset([*singles, *combinations(sorted(paired, key=repr), 2)])


@dataclass(frozen=True)
class CoveringPlan:
    """The (case id, dtype) pairs of the covering plan, in matrix order, and those left out."""

    pairs: tuple[tuple[str, str], ...]
    left_out: tuple[tuple[str, str], ...]

    def holds(self, case_id: str, dtype: str) -> bool:
        return (case_id, dtype) in self._chosen

    @cached_property
    def _chosen(self) -> frozenset:
        return frozenset(self.pairs)

    def summary(self) -> dict[str, object]:
        """What a results document records of the plan (``selection.covering``)."""
        return {"design": "pairwise", "pairs": len(self.pairs), "of": len(self.pairs) + len(self.left_out),
                "left_to_full": [f"{case_id}:{dtype}" for case_id, dtype in self.left_out],
                "why": WHY_LEFT_OUT}


def covering_plan(cases: Iterable[Case]) -> CoveringPlan:
    """The greedy covering design over every case × dtype of ``cases`` (module doc)."""
    candidates = [((case.id, dtype), covered_by(case, dtype)) for case in cases for dtype in case.dtypes]
    uncovered = set().union(*(features for _, features in candidates)) if candidates else set()
    chosen: list[int] = []
    gains = [len(features) for _, features in candidates]
    while uncovered:
        best = max(range(len(candidates)), key=lambda n: (gains[n], -n))
        newly = candidates[best][1] & uncovered
        uncovered -= newly
        chosen.append(best)
        gains = [len(features & uncovered) if gains[n] else 0 for n, (_, features) in enumerate(candidates)]
    kept = set(chosen)
    return CoveringPlan(pairs=tuple(candidates[n][0] for n in sorted(kept)),
                        left_out=tuple(pair for n, (pair, _) in enumerate(candidates) if n not in kept))
