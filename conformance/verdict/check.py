"""Reach a status for one case: ask the adapter (``conformance.adapters.asking``), judge its answer.

The conformance tests, the benchmark and the developer loop all reach their
statuses through ``judge`` so that "what counts as pass" is decided in one place.
The adapter is only ever handed the case's question (``Case.question``): the
answer stays with the judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conformance.adapters.asking import Answer, ask
from conformance.adapters.contract import Adapter, LoadedAdapter
from conformance.matrix.case import Case
from conformance.verdict.compare import Verdict, compare_outputs
from conformance.verdict.diagnosis import diagnose

# numpy's own defaults: the verdict is judged under them, whatever state an adapter left numpy in
# (np.seterr(all="raise") in an adapter made a float16 ULP figure's cast raise, issue 29)
VERDICT_ERRSTATE = {"divide": "warn", "over": "warn", "under": "ignore", "invalid": "warn"}


@dataclass
class Outcome:
    status: str  # pass | fail | unsupported | error | skipped
    message: str
    verdict: Verdict | None = None
    duration_s: float = 0.0
    run_info: dict[str, Any] = field(default_factory=dict)
    traceback: str = ""


def check_case(adapter: LoadedAdapter | Adapter, case: Case, device: str, diagnose_failure: bool = True) -> Outcome:
    """pass/fail/unsupported/error for ``case`` (already bound to its dtype) on ``device``, the
    adapter asked in this process (``ask``) with the question alone.

    ``adapter``: one from ``load_adapter``, or an ``Adapter`` subclass (both have every member).
    The conformance run asks in a process of the adapter's own instead
    (``conformance.adapters.worker``) and judges with ``judge`` as this does.
    """
    return judge(case, ask(adapter, case.question(), device), diagnose_failure)


def judge(case: Case, answer: Answer, diagnose_failure: bool = True) -> Outcome:
    """The outcome of ``answer`` to ``case``'s question, judged against ``case.expected``.

    A fail is diagnosed (``conformance.verdict.diagnosis``: the porting mistake it matches, in the
    verdict) unless ``diagnose_failure`` is False: a documented difference needs none, and the
    catalogue costs a few dozen oracle runs a failure. The verdict runs under numpy's default
    error state (``VERDICT_ERRSTATE``), whatever an adapter in this process did to it (issue 29).
    """
    if answer.status != "answered":
        return Outcome(answer.status, answer.message, duration_s=answer.duration_s, traceback=answer.traceback)
    with np.errstate(**VERDICT_ERRSTATE):
        verdict = compare_outputs(case, answer.outputs)
        if not verdict.passed and diagnose_failure:
            verdict.diagnosis = diagnosis_text(case, answer.outputs)
    status = "pass" if verdict.passed else "fail"
    return Outcome(status, verdict.message, verdict, answer.duration_s, answer.run_info)


def diagnosis_text(case: Case, actual: object) -> str:
    """The diagnosis in words, or "": it never turns a fail into an error of the harness."""
    try:
        found = diagnose(case, actual)
    except Exception:  # noqa: BLE001 - a diagnosis is a help, not a verdict
        return ""
    return found.text() if found else ""
