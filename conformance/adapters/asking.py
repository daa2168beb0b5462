"""Asking an adapter one question: a case without its answer, on one device.

``ask`` is all that runs adapter code for a verdict: ``supports``, ``run`` (twice on an
accelerator, to see whether it repeats itself), ``last_run_info``. It needs no expected
outputs, so it runs where they are not (``conformance.adapters.worker``), and what it
returns is plain data that travels between processes: numpy arrays, str, numbers. The
verdict is reached from it elsewhere (``conformance.verdict.check.judge``).
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

from conformance.matrix.case import Case, is_floating

MAX_ERROR_TEXT = 4000
RAISED_INTERRUPT = ("KeyboardInterrupt: raised inside the adapter's run, no Ctrl-C having reached the "
                    "process (the adapter's own, or its framework's)")


@dataclass(frozen=True)
class Unlisted:
    """Stands for an answer that is no list or tuple: only its type's name is judged (and travels)."""

    kind: str


@dataclass
class Answer:
    """What an adapter did with one question.

    ``status``: ``answered`` (``outputs`` holds what ``run`` returned, each output as a numpy
    array, or an ``Unlisted``), ``unsupported`` (``message``: the adapter's reason) or ``error``
    (``message``: what it raised, ``traceback`` where).
    """

    status: str
    outputs: list[np.ndarray] | Unlisted | None = None
    message: str = ""
    duration_s: float = 0.0
    run_info: dict[str, Any] = field(default_factory=dict)
    traceback: str = ""


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_TEXT]


def raised(exc: BaseException, message: str | None = None, duration_s: float = 0.0) -> Answer:
    return Answer("error", message=message or error_text(exc), duration_s=duration_s,
                  traceback=traceback.format_exc(limit=8)[-MAX_ERROR_TEXT:])


def ask(adapter: Any, question: Case, device: str) -> Answer:
    """``adapter``'s answer to ``question`` on ``device``: a ``LoadedAdapter`` (or an ``Adapter``),
    handed a ``fresh_copy`` of the question on each call, so that what it writes into its
    inputs reaches no other call.

    Whatever ``supports``/``run`` raise is the adapter's error, a ``KeyboardInterrupt`` included
    unless a Ctrl-C reached the process (``sigint_watch``). On an accelerator the case runs
    twice: bit-different answers are recorded (``run_info["repeatable"]``), since GPU kernels
    may be non-deterministic.
    """
    started = time.perf_counter()
    try:
        with sigint_watch() as pressed:
            reason = adapter.supports(question.fresh_copy())
            if reason:
                return Answer("unsupported", message=str(reason))
            started = time.perf_counter()
            outputs = adapter.run(question.fresh_copy(), device)
            duration = time.perf_counter() - started
            run_info = dict(adapter.last_run_info())
            outputs = portable(outputs)
            if device != "cpu":
                run_info["repeatable"] = same_bits(outputs, portable(adapter.run(question.fresh_copy(), device)))
    except Exception as exc:  # noqa: BLE001 - whatever the framework raised is the finding
        return raised(exc, duration_s=time.perf_counter() - started)
    except KeyboardInterrupt as exc:
        if pressed:
            raise
        return raised(exc, RAISED_INTERRUPT, time.perf_counter() - started)
    return Answer("answered", outputs, duration_s=duration, run_info=run_info)


def portable(outputs: object) -> list[np.ndarray] | Unlisted:
    """What ``run`` returned, as the verdict reads it: each output of a list or tuple as a numpy
    array (``np.asarray``, which the verdict would apply; one that cannot become an array raises),
    anything else as its type's name. An array of Python objects keeps its shape and dtype but
    not the objects (the verdict names the dtype and compares no values: they need not travel)."""
    if not isinstance(outputs, (list, tuple)):
        return Unlisted(type(outputs).__name__)
    arrays = []
    for n, output in enumerate(outputs):
        try:
            array = np.asarray(output)
        except Exception as exc:  # noqa: BLE001 - the output itself is the adapter's, and wrong
            raise TypeError(f"output {n} ({type(output).__name__}) cannot be read as an array: "
                            f"{error_text(exc)}") from exc
        arrays.append(np.empty(array.shape, dtype=object) if array.dtype.hasobject else array)
    return arrays


def same_bits(first: list | Unlisted, second: list | Unlisted) -> bool:
    if isinstance(first, Unlisted) or isinstance(second, Unlisted):
        return first == second
    return len(first) == len(second) and all(
        np.array_equal(a, b, equal_nan=is_floating(a.dtype) or a.dtype.kind == "c") for a, b in zip(first, second))


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
