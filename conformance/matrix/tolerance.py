"""How close an answer must be: one stated rule, recorded per case in the fixtures.

SEMANTICS.md §6: for float32, |got - want| <= atol + rtol*|want| with atol = rtol = 1e-5
(Keras's own RNN tests) on short sequences. Rounding error builds up along the
recurrence, so the bound grows linearly with the number of steps past ten. A
wrong gate order or GRU variant gives errors of 1e-2 to 1e-1, three orders of
magnitude above the loosest bound this rule produces for the case matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

BASE_TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
STEPS_BEFORE_SCALING = 10


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float

    def to_dict(self) -> dict[str, float]:
        return {"atol": self.atol, "rtol": self.rtol}


def tolerance_for(dtype: str, timesteps: int) -> Tolerance:
    """The bound for a case of ``timesteps`` steps computed in ``dtype``."""
    if dtype not in BASE_TOLERANCE:
        raise ValueError(f"dtype={dtype!r} is not allowed; expected one of {tuple(BASE_TOLERANCE)}")
    scale = max(1.0, timesteps / STEPS_BEFORE_SCALING)
    base = BASE_TOLERANCE[dtype] * scale
    return Tolerance(atol=base, rtol=base)


TOLERANCE_RULE = (
    "atol = rtol = base * max(1, timesteps / 10); base = 1e-5 for float32, 1e-10 for float64"
)
