"""The diagnosis on a failure: the suite's own faulty adapters, each one porting bug, run on the
covering plan's cases (which catch every one of them); every failure of a bug the catalogue holds is
diagnosed as that bug (beside others only where the case cannot tell them apart, and alone on at least
one case), and no failure of any other bug is diagnosed at all."""

from __future__ import annotations

import pytest

from conformance.verdict.compare import compare_outputs
from conformance.verdict.diagnosis import CATALOGUE, diagnose
from tests import faulty_adapters as faults
from tests.fixture_cases import fixture_cases, fixtures_covering_plan

LSTM_ONNX_ORDER = "the LSTM gates read in the order i, o, f, c (Keras's is i, f, c, o)"
# Each fault the catalogue holds -> the mistake's words; the other faults of FAULTS expect no diagnosis.
DIAGNOSED = {
    faults.LstmGatesInOnnxOrder: LSTM_ONNX_ORDER,
    faults.GruZAndRSwapped: "the GRU gates z and r swapped",
    faults.GruResetBeforeWithResetAfterWeights: "GRU reset_after flipped (the other reset formula, biases summed)",
    faults.ForgetBiasIgnored: "the forget-gate bias one too low (unit_forget_bias not applied)",
    faults.ForgetBiasTwice: "the forget-gate bias one too high (unit_forget_bias applied twice)",
    faults.GruRecurrentBiasDropped: "the GRU recurrent bias left out",
    faults.LstmStatesAsCThenH: "h and c swapped in the returned states",
    faults.GoBackwardsFlippedBack: "the go_backwards sequence flipped back to input order",
    faults.FinalStateFromPaddedStep: "the final state taken at the last padded step (the mask not applied to the "
                                     "states)",
    faults.OtherHardSigmoid: "the other hard_sigmoid (Keras 2's 0.2x + 0.5 for Keras 3's x/6 + 0.5, or back)",
    faults.InputLayoutGuessedFromShape: "batch and time swapped (the batch-major input read as time-major)",
    faults.UnrolledPathDropsTheMask: "the mask ignored",
    faults.MaskZeroLoweredAsMasking: "the mask ignored",  # Masking(0.0) on embedding vectors masks nothing
    faults.StatefulStateNotCarried: "the state of the earlier call not carried (stateful ignored)",
    faults.ResetStatesIgnored: "reset_states() ignored (the earlier call's state carried on)",
}


def failures(fault) -> list[tuple]:
    """(case, outputs) of every failing float32/float64 result of ``fault`` on the covering plan."""
    by_id, adapter, failing = {c.id: c for c in fixture_cases()}, fault(), []
    for case_id, dtype in sorted(fixtures_covering_plan().pairs):
        if dtype not in ("float32", "float64"):
            continue
        case = by_id[case_id].for_dtype(dtype)
        if adapter.supports(case):
            continue
        outputs = adapter.run(case, "cpu")
        if not compare_outputs(case, outputs).passed:
            failing.append((case, outputs))
    return failing


@pytest.mark.parametrize("fault", faults.FAULTS, ids=lambda f: f.name)
def test_a_bug_the_catalogue_holds_is_named_and_any_other_is_not(fault):
    failing = failures(fault)
    expected = DIAGNOSED.get(fault)
    if expected is not None:
        assert failing, f"no failure of {fault.fault!r} on the covering plan's float32/float64 rows"
    named = {case.id: (found.mistakes if (found := diagnose(case, outputs)) else ()) for case, outputs in failing}
    if expected is None:
        assert named == dict.fromkeys(named, ())
        return
    assert all(expected in mistakes for mistakes in named.values()), named
    alone = [case_id for case_id, mistakes in named.items() if mistakes == (expected,)]
    assert alone, f"every failure of {fault.fault!r} is also matched by another mistake: {named}"


def test_every_mistake_the_test_expects_is_in_the_catalogue():
    assert set(DIAGNOSED.values()) <= {mistake.words for mistake in CATALOGUE}


def test_the_diagnosis_reads_as_the_porter_needs_it():
    found = [diagnose(case, outputs) for case, outputs in failures(faults.LstmGatesInOnnxOrder)]
    alone = next(d for d in found if len(d.mistakes) == 1)
    assert alone.text().startswith(f"matches Keras with {LSTM_ONNX_ORDER} (max error ")
    several = next(d for d in found if len(d.mistakes) > 1)  # the constant scheme: every gate alike
    assert f"or with {LSTM_ONNX_ORDER}" in several.text() or several.text().startswith(
        f"matches Keras with {LSTM_ONNX_ORDER}, or with")
    assert "(this case cannot tell them apart; max error " in several.text()
