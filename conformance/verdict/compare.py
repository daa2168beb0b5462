"""The verdict: does a framework's output list equal the golden one?

Checked in order, stopping at the first broken level: the list (length and
order, named), then per tensor the shape, the dtype, and the values within
the case's tolerance. Error figures (max abs, max rel, max ULP, where the
worst error sits, a |error| map over time x unit) are recorded for every
tensor whose shape matches, pass or fail, so that reports can show how close
a passing result was and where a failing one went wrong.

A NaN or infinity in an output is a fail of its own kind, named with how many
values are not finite and the first of them; its error figures are infinite,
and ``to_dict`` stores them as results do (``conformance.jsonsafe.json_safe``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conformance.adapters.asking import Unlisted
from conformance.jsonsafe import json_safe
from conformance.matrix.case import DTYPES, Case, is_floating, numpy_dtype

MAX_MAP_STEPS = 64
MAX_MAP_UNITS = 32
WINDOW = 2  # steps shown either side of the first divergence


@dataclass
class TensorComparison:
    name: str
    expected_shape: list[int]
    actual_shape: list[int] | None = None
    actual_dtype: str | None = None
    problem: str | None = None  # shape / dtype / values, in words
    max_abs: float | None = None
    max_rel: float | None = None  # over nonzero expected values only: see relative_error
    max_ulp: float | None = None
    mismatched: int = 0
    total: int = 0
    worst_index: list[int] | None = None
    first_divergence: dict[str, Any] | None = None
    error_map: list[list[float]] | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        return json_safe(dict(self.__dict__))


@dataclass
class Verdict:
    passed: bool
    message: str
    tensors: list[TensorComparison] = field(default_factory=list)
    diagnosis: str = ""  # a failure's matching porting mistake, in words (conformance.verdict.diagnosis)

    @property
    def max_abs(self) -> float | None:
        values = [t.max_abs for t in self.tensors if t.max_abs is not None]
        return max(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"passed": self.passed, "message": self.message, "max_abs": self.max_abs,
                          "tensors": [t.to_dict() for t in self.tensors], "diagnosis": self.diagnosis})


def _names(names: list[str]) -> str:
    return "[" + ", ".join(names) + "]"


def list_message(case: Case, actual_length: int | None, actual_kind: str) -> str:
    """e.g. 'GRU(return_state=True) returns 2 tensors [output, h]; got 3'."""
    names = case.output_names
    got = f"a {actual_kind}" if actual_length is None else str(actual_length)
    return f"{case.describe()} returns {len(names)} tensors {_names(names)}; got {got}"


INT_OF_WIDTH = {2: np.int16, 4: np.int32, 8: np.int64}


def ordered_int(values: np.ndarray) -> np.ndarray:
    """Map floats to integers whose difference counts representable values between them."""
    int_type = INT_OF_WIDTH[values.dtype.itemsize]
    bits = values.view(int_type).astype(np.int64)
    sign_mask = np.int64(np.iinfo(int_type).min)
    return np.where(bits < 0, sign_mask - bits, bits)


def ulp_distance(actual: np.ndarray, expected: np.ndarray, dtype: str) -> np.ndarray:
    """Units in the last place of ``dtype`` between actual and expected rounded to dtype."""
    work = numpy_dtype(dtype)
    got = np.ascontiguousarray(np.asarray(actual).astype(work))
    want = np.ascontiguousarray(np.asarray(expected).astype(work))
    return np.abs(ordered_int(got) - ordered_int(want)).astype(np.float64)


def error_map(abs_error: np.ndarray) -> list[list[float]]:
    """|error| as (timestep x unit), max over the batch; a 2-D tensor is one row."""
    grid = abs_error.max(axis=0) if abs_error.ndim == 3 else abs_error.max(axis=0, keepdims=True)
    grid = grid[:MAX_MAP_STEPS, :MAX_MAP_UNITS]
    return [[float(v) for v in row] for row in grid]


def _window(array: np.ndarray, index: tuple[int, ...]) -> list[float]:
    """Values along time around ``index`` (or the unit axis of a 2-D tensor)."""
    if array.ndim == 3:
        b, t, u = index
        lo, hi = max(0, t - WINDOW), t + WINDOW + 1
        return [float(v) for v in array[b, lo:hi, u]]
    b, u = index[0], index[-1]
    lo, hi = max(0, u - WINDOW), u + WINDOW + 1
    return [float(v) for v in array[b, lo:hi]]


def first_index(mask: np.ndarray) -> tuple[int, ...]:
    """The earliest time step (then batch row, unit) where ``mask`` is set: the order drift is read in."""
    indices = np.argwhere(mask)
    if mask.ndim == 3:
        indices = indices[np.lexsort((indices[:, 2], indices[:, 0], indices[:, 1]))]
    return tuple(int(i) for i in indices[0])


def _first_divergence(bad: np.ndarray, got: np.ndarray, want: np.ndarray) -> dict[str, Any]:
    """Earliest time step (then batch row, unit) where the tolerance is exceeded."""
    index = first_index(bad)
    return {"index": list(index), "expected": float(want[index]), "actual": float(got[index]),
            "expected_window": _window(want, index), "actual_window": _window(got, index),
            "window_axis": "time" if bad.ndim == 3 else "unit"}


def relative_error(abs_error: np.ndarray, expected: np.ndarray) -> float | None:
    """max |got - want| / |want| over the values whose expected value is not 0; None when all are 0.

    Relative error is not defined where the answer is 0 (dividing by the
    smallest float there gave figures like 2.8e307 that said nothing); those
    values are judged by ``atol`` and show in ``max_abs``.
    """
    nonzero = expected != 0
    if not nonzero.any():
        return None
    return float((abs_error[nonzero] / np.abs(expected[nonzero])).max())


def compare_tensor(name: str, actual: Any, expected: np.ndarray, dtype: str,
                   atol: float, rtol: float) -> TensorComparison:
    result = TensorComparison(name=name, expected_shape=list(expected.shape))
    got = np.asarray(actual)
    result.actual_shape, result.actual_dtype = list(got.shape), str(got.dtype)
    if got.shape != expected.shape:
        result.problem = f"{name}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        return result
    if got.dtype != numpy_dtype(dtype):
        result.problem = f"{name}: dtype {got.dtype}, expected {dtype}"
    if not holds_real_numbers(got.dtype):
        result.problem += " (no real numbers: the values are not compared)"
        return result
    values = got.astype(np.float64)
    abs_error = np.abs(values - expected)
    abs_error = np.where(np.isnan(abs_error), np.inf, abs_error)
    bad = abs_error > atol + rtol * np.abs(expected)
    result.total, result.mismatched = int(abs_error.size), int(bad.sum())
    if abs_error.size:
        worst = np.unravel_index(int(np.argmax(abs_error)), abs_error.shape)
        result.worst_index = [int(i) for i in worst]
        result.max_abs = float(abs_error.max())
        result.max_rel = relative_error(abs_error, expected)
        if str(got.dtype) in DTYPES:  # in the dtype the framework gave
            result.max_ulp = float(ulp_distance(got, expected, str(got.dtype)).max())
        result.error_map = error_map(abs_error) if abs_error.ndim >= 2 else None
    not_finite = non_finite_problem(name, values)
    if not_finite:
        result.problem = f"{result.problem}; {not_finite}" if result.problem else not_finite
    if result.mismatched and result.problem in (None, not_finite):
        result.first_divergence = _first_divergence(bad, values, expected)
        result.problem = not_finite or (f"{name}: {result.mismatched}/{result.total} values outside "
                                        f"atol={atol:g} rtol={rtol:g}; max abs error {result.max_abs:.3g} "
                                        f"at {tuple(result.worst_index)}")
    return result


def holds_real_numbers(dtype: np.dtype) -> bool:
    """Whether values of ``dtype`` compare as real numbers: floats (ml_dtypes' bfloat16 and float8
    included), ints and bools. Text, Python objects, complex numbers and the like are a dtype
    fail (issue 29), not a harness error from converting them."""
    return dtype.kind in "fiub" or is_floating(dtype) or dtype.type.__module__.split(".")[0] == "ml_dtypes"


def non_finite_problem(name: str, values: np.ndarray) -> str | None:
    """e.g. 'h: 3/20 values are not finite (first nan at (0, 2, 1))'; None when every value is finite.

    A framework that returns NaN or infinity is wrong whatever the tolerance;
    saying so beats an 'error of inf'.
    """
    finite = np.isfinite(values)
    if finite.all():
        return None
    index = first_index(~finite)
    value = float(values[index])
    kind = "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{name}: {int((~finite).sum())}/{values.size} values are not finite (first {kind} at {index})"


def compare_outputs(case: Case, actual: Any) -> Verdict:
    """The verdict for ``actual`` (what an adapter returned, or its ``portable`` form: an ``Unlisted``
    stands for what was no list) against ``case.expected``."""
    if case.expected is None:
        raise ValueError(f"case {case.id} has no expected outputs (load it from the fixtures)")
    if not isinstance(actual, (list, tuple)):
        kind = actual.kind if isinstance(actual, Unlisted) else type(actual).__name__
        return Verdict(False, list_message(case, None, kind))
    if len(actual) != len(case.expected):
        return Verdict(False, list_message(case, len(actual), "list"))
    tolerance = case.tolerance()
    tensors = [compare_tensor(name, got, want, case.dtype, tolerance.atol, tolerance.rtol)
               for name, got, want in zip(case.output_names, actual, case.expected)]
    problems = [t.problem for t in tensors if t.problem]
    if problems:
        return Verdict(False, "; ".join(problems), tensors)
    worst = max((t.max_abs or 0.0) for t in tensors)
    return Verdict(True, f"all {len(tensors)} tensors within tolerance; max abs error {worst:.3g}", tensors)
