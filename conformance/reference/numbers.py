"""The two number systems the oracle computes in, so that each equation is written once.

- **float64**: numpy float64 arrays. ``forward`` uses them: fast, and what a user
  calls. Its sums and elementary functions round the way this CPU's BLAS and
  SIMD kernels do, so its last bits differ between machines.
- **exact enclosures**: numpy object arrays of ``mpmath.iv`` intervals. Every
  operation rounds outward, so each interval is guaranteed to contain the exact
  real-number result of the equations for the given inputs. ``round_to_float64``
  turns an interval into the float64 nearest to the exact result, and refuses
  when the interval still straddles a rounding boundary (the caller then
  recomputes with more bits). The golden fixtures store these correctly rounded
  numbers: mpmath computes with Python integers, so they are the same bytes on
  every CPU, BLAS, thread count and numpy version.

The cell equations, the time loop and the merges use only ``+ - * /``, ``@``,
``np.split``/``np.where``/``np.concatenate`` (which work on both kinds of array)
and the functions below, which dispatch on the array's dtype.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from mpmath import iv, libmp


def is_exact(array: np.ndarray) -> bool:
    return array.dtype == object


def _interval_tanh(value):
    # mpmath.iv has no tanh; this form uses x once, so the enclosure stays tight.
    return 1 - 2 / (iv.exp(2 * value) + 1)


def _interval_sigmoid(value):
    return 1 / (1 + iv.exp(-value))


def _interval_clip(value, low, high):
    """Clip is monotone: clipping both ends clips the interval."""
    return iv.mpf([min(max(value.a, low), high), min(max(value.b, low), high)])


_EXACT_EXP = np.frompyfunc(iv.exp, 1, 1)
_EXACT_TANH = np.frompyfunc(_interval_tanh, 1, 1)
_EXACT_SIGMOID = np.frompyfunc(_interval_sigmoid, 1, 1)


def exp(x: np.ndarray) -> np.ndarray:
    return _EXACT_EXP(x) if is_exact(x) else np.exp(x)


def tanh(x: np.ndarray) -> np.ndarray:
    return _EXACT_TANH(x) if is_exact(x) else np.tanh(x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    if is_exact(x):
        return _EXACT_SIGMOID(x)
    # Split by sign so exp never overflows for large |x|.
    out = np.empty_like(x)
    positive = x >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-x[positive]))
    exp_x = np.exp(x[~positive])
    out[~positive] = exp_x / (1.0 + exp_x)
    return out


def clip(x: np.ndarray, low: float, high: float) -> np.ndarray:
    if is_exact(x):
        return np.frompyfunc(lambda v: _interval_clip(v, low, high), 1, 1)(x)
    return np.clip(x, low, high)


def zeros(shape: tuple[int, ...], like: np.ndarray) -> np.ndarray:
    """Zeros in the number system of ``like``."""
    if is_exact(like):
        return np.full(shape, iv.mpf(0), dtype=object)
    return np.zeros(shape)


def to_exact(array: np.ndarray) -> np.ndarray:
    """float64 values as exact point intervals (every float64 is exactly representable)."""
    return np.frompyfunc(iv.mpf, 1, 1)(np.asarray(array, dtype=np.float64)).astype(object)


@contextmanager
def working_precision(bits: int) -> Iterator[None]:
    """mpmath's interval precision is global; set it for one computation only."""
    saved = iv.prec
    iv.prec = bits
    try:
        yield
    finally:
        iv.prec = saved


class StraddlesRounding(ArithmeticError):
    """An enclosure still contains two float64 candidates: recompute with more bits."""


def _nearest_float64(value) -> float:
    low, high = value._mpi_
    # rnd="n": round to nearest, ties to even (mpmath's float() rounds down).
    nearest_low, nearest_high = libmp.to_float(low, rnd="n"), libmp.to_float(high, rnd="n")
    if nearest_low != nearest_high:
        raise StraddlesRounding(f"[{nearest_low!r}, {nearest_high!r}]")
    return nearest_low


def round_to_float64(array: np.ndarray) -> np.ndarray:
    """The correctly rounded float64 of each exact result enclosed in ``array``."""
    flat = [_nearest_float64(value) for value in array.ravel()]
    return np.array(flat, dtype=np.float64).reshape(array.shape)
