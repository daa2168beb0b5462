"""Run one case through one adapter and reach a status, without pytest.

The conformance tests, the benchmark and the developer loop all go through
``check_case`` so that "what counts as pass" is decided in one place.
"""

from __future__ import annotations

import signal
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conformance.adapters.contract import Adapter, LoadedAdapter
from conformance.matrix.case import Case
from conformance.verdict.compare import Verdict, compare_outputs
from conformance.verdict.diagnosis import diagnose

MAX_ERROR_TEXT = 4000
# numpy's own defaults: the verdict is judged under them, whatever state an adapter left numpy in
# (np.seterr(all="raise") in an adapter made a float16 ULP figure's cast raise, issue 29)
VERDICT_ERRSTATE = {"divide": "warn", "over": "warn", "under": "ignore", "invalid": "warn"}
RAISED_INTERRUPT = ("KeyboardInterrupt: raised inside the adapter's run, no Ctrl-C having reached the "
                    "process (the adapter's own, or its framework's)")


@dataclass
class Outcome:
    status: str  # pass | fail | unsupported | error | skipped
    message: str
    verdict: Verdict | None = None
    duration_s: float = 0.0
    run_info: dict[str, Any] = field(default_factory=dict)
    traceback: str = ""


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text[:MAX_ERROR_TEXT]


def _same_bits(first: list, second: list) -> bool:
    return len(first) == len(second) and all(
        np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True) for a, b in zip(first, second))


def check_case(adapter: LoadedAdapter | Adapter, case: Case, device: str, diagnose_failure: bool = True) -> Outcome:
    """pass/fail/unsupported/error for ``case`` (already bound to its dtype) on ``device``.

    ``adapter``: one from ``load_adapter``, or an ``Adapter`` subclass (both have every member).
    A fail is diagnosed (``conformance.verdict.diagnosis``: the porting mistake it matches, in the
    verdict) unless ``diagnose_failure`` is False: a documented difference needs none, and the
    catalogue costs a few dozen oracle runs a failure.

    On an accelerator the case runs twice: bit-different answers are recorded
    (``run_info["repeatable"]``), since GPU kernels may be non-deterministic.

    What one adapter does must not bend a verdict (issue 29): each call hands it a
    ``fresh_copy`` of the case (what it writes into its inputs reaches neither ``case``
    nor another result), the verdict runs under numpy's default error state
    (``VERDICT_ERRSTATE``), and a ``KeyboardInterrupt`` the adapter raises without a
    Ctrl-C is its error.
    """
    reason = adapter.supports(case.fresh_copy())
    if reason:
        return Outcome("unsupported", reason)
    started = time.perf_counter()
    try:
        with sigint_watch() as pressed:
            actual = adapter.run(case.fresh_copy(), device)
            duration = time.perf_counter() - started
            run_info = dict(adapter.last_run_info())
            if device != "cpu":
                run_info["repeatable"] = _same_bits(actual, adapter.run(case.fresh_copy(), device))
    except Exception as exc:  # noqa: BLE001 - whatever the framework raised is the finding
        return Outcome("error", _error_text(exc), duration_s=time.perf_counter() - started,
                       traceback=traceback.format_exc(limit=8)[-MAX_ERROR_TEXT:])
    except KeyboardInterrupt:
        if pressed:
            raise
        return Outcome("error", RAISED_INTERRUPT, duration_s=time.perf_counter() - started,
                       traceback=traceback.format_exc(limit=8)[-MAX_ERROR_TEXT:])
    with np.errstate(**VERDICT_ERRSTATE):
        verdict = compare_outputs(case, actual)
        if not verdict.passed and diagnose_failure:
            verdict.diagnosis = diagnosis_text(case, actual)
    status = "pass" if verdict.passed else "fail"
    return Outcome(status, verdict.message, verdict, duration, run_info)


@contextmanager
def sigint_watch() -> Iterator[list[int]]:
    """A list that holds SIGINT once one reaches the process while the block runs, so that a user's
    Ctrl-C still stops the session while a ``KeyboardInterrupt`` an adapter raises itself is its
    error. Where it cannot watch (not the main thread, or another SIGINT handler installed), the
    list holds a 0 from the start: every ``KeyboardInterrupt`` then counts as the user's."""
    pressed: list[int] = []
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield [0]
        return

    def handler(signum: int, frame: object) -> None:
        pressed.append(signum)
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, handler)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def diagnosis_text(case: Case, actual: object) -> str:
    """The diagnosis in words, or "": it never turns a fail into an error of the harness."""
    try:
        found = diagnose(case, actual)
    except Exception:  # noqa: BLE001 - a diagnosis is a help, not a verdict
        return ""
    return found.text() if found else ""
