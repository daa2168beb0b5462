"""The conformance test: each adapter must return the Keras output list, case by case.

Parametrized by the plugin (``conformance.plugin``) over case x adapter x
device x dtype; ids read ``lstm-seq1-state1-per_gate-b2t5[torch-cpu-float32]``.
Statuses map onto pytest outcomes: pass -> passed; fail and error -> failed
(xfailed when the plugin marked the test a known difference at collection);
unsupported and skipped -> skipped, with the reason.
"""

from __future__ import annotations

import pytest

from conformance.plugin import ConformanceParam, ConformanceSession, record_for, skip_reason
from conformance.verdict.check import judge


def test_adapter_returns_the_keras_output_list(conformance_param: ConformanceParam,
                                               conformance_session: ConformanceSession,
                                               conformance_known: str | None) -> None:
    param, session = conformance_param, conformance_session
    adapter = session.adapter(param.adapter)
    breach = session.contract_breach(param)
    if breach is not None:
        session.record(record_for(param, adapter, "error", breach, known=conformance_known))
        pytest.fail(breach, pytrace=False)
    reason = skip_reason(adapter, param.device)
    if reason is not None:
        session.record(record_for(param, adapter, "skipped", reason))
        pytest.skip(reason)

    session.announce(param)
    case = param.case.for_dtype(param.dtype)
    answer = adapter.ask(case.question(), param.device)  # in the adapter's own process, without the answer
    outcome = judge(case, answer, diagnose_failure=conformance_known is None and session.may_diagnose())
    session.record(record_for(
        param, adapter, outcome.status, outcome.message, duration_s=outcome.duration_s,
        verdict=outcome.verdict.to_dict() if outcome.verdict else None, run_info=outcome.run_info,
        stderr=outcome.traceback, known=conformance_known))

    if outcome.status == "unsupported":
        pytest.skip(f"unsupported: {outcome.message}")
    if outcome.status == "error":
        pytest.fail(f"adapter raised: {outcome.message}", pytrace=False)
    assert outcome.status == "pass", outcome.message
