"""How close an answer must be: one stated rule per dtype, recorded per case in the fixtures.

SEMANTICS.md §6: for float32, |got - want| <= atol + rtol*|want| with atol = rtol = 1e-5
(Keras's own RNN tests) on short sequences. Rounding error builds up along the
recurrence, so the bound grows linearly with the number of steps past ten. A
wrong gate order or GRU variant gives errors of 1e-2 to 1e-1, three orders of
magnitude above the loosest bound this rule produces for the case matrix.

Reduced precision (float16, bfloat16) is judged in units of the dtype's own
epsilon (its ULP at 1: 2**-10 and 2**-7): atol = rtol = 6 eps, grown with the
*square root* of the steps past ten. Measured on every framework that runs these
dtypes, honest computation stays within 2 eps (float16) and 3.2 eps (bfloat16) of
the float64 truth on the reduced-precision cases, from 5 to 48 steps, with no
growth along the sequence: rounding in these dtypes is not biased the way it
would need to be to add up linearly. 6 eps leaves twice that headroom; a linear
growth would have let a GRU gate swap pass in bfloat16 at 48 steps, the square
root does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BASE_TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
STEPS_BEFORE_SCALING = 10
EPSILON = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}
REDUCED_ULPS = 6


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float

    def to_dict(self) -> dict[str, float]:
        return {"atol": self.atol, "rtol": self.rtol}


def tolerance_for(dtype: str, timesteps: int) -> Tolerance:
    """The bound for a case of ``timesteps`` steps computed in ``dtype``."""
    steps = max(1.0, timesteps / STEPS_BEFORE_SCALING)
    if dtype in EPSILON:
        base = REDUCED_ULPS * EPSILON[dtype] * math.sqrt(steps)
    elif dtype in BASE_TOLERANCE:
        base = BASE_TOLERANCE[dtype] * steps
    else:
        raise ValueError(f"dtype={dtype!r} is not allowed; expected one of "
                         f"{tuple(BASE_TOLERANCE) + tuple(EPSILON)}")
    return Tolerance(atol=base, rtol=base)


TOLERANCE_RULE = (
    "atol = rtol = base * max(1, timesteps / 10); base = 1e-5 for float32, 1e-10 for float64; "
    "float16 and bfloat16: atol = rtol = 6 eps * sqrt(max(1, timesteps / 10)), "
    "eps = 2**-10 (float16), 2**-7 (bfloat16)"
)
