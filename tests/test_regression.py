"""Comparing two runs: planted regressions are flagged, equal runs are clean, documented differences and
results only one run selected are no false alarm."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from conformance.report import render_regression
from conformance.results.records import merged_selection, results_document, run_selection
from conformance.results.regression import CATEGORIES, compare_runs, summary_text
from conformance.verdict.known_differences import parse_known_differences

ATOL = 1e-5


def record(test_id: str, status: str = "pass", errors: dict[str, float] | None = None,
           message: str = "") -> dict:
    """A result with just what a comparison reads: status, tolerance and per-tensor max abs."""
    errors = {"output": 1e-8, "h": 1e-8} if errors is None and status in ("pass", "fail") else errors or {}
    case_id, _, column = test_id.partition("[")
    adapter, device, dtype = column.rstrip("]").rsplit("-", 2)
    return {"record": "result", "test_id": test_id, "case_id": case_id, "adapter": adapter, "device": device,
            "dtype": dtype, "cell": "gru", "group": "gru seq0-state1", "describe": "GRU(4, return_state=True)",
            "status": status, "message": message or status, "tolerance": {"atol": ATOL, "rtol": ATOL},
            "max_abs": max(errors.values()) if errors else None,
            "tensors": [{"name": n, "expected_shape": [3, 4], "max_abs": v} for n, v in errors.items()],
            "expected": [{"name": "output", "shape": [3, 4]}, {"name": "h", "shape": [3, 4]}]}


def document(*records: dict, complete: bool = True) -> dict:
    return results_document(records, complete=complete, created="2025-11-22T00:00:00", fixtures_sha256="f" * 64,
                            machine={"os": "Linux"}, adapters={"torch": {"versions": {"torch": "2.13.0"}}})


A = "gru-seq0-state1-random-b3t5[torch-cpu-float32]"
B = "gru-seq0-state1-random-b3t5-mask_holes[torch-cpu-float32]"
C = "gru-seq0-state1-random-b3t5-no_bias[torch-cpu-float32]"
BASELINE = document(record(A), record(B), record(C, "unsupported"))


def test_equal_runs_are_no_regression() -> None:
    regression = compare_runs(BASELINE, copy.deepcopy(BASELINE))
    assert not regression.regressed
    assert all(not getattr(regression, name) for name in CATEGORIES)
    assert summary_text(regression).startswith("OK: no regressions (3 results in the baseline, 3 in the current run)")


def test_results_an_interrupted_run_never_ran_are_no_regression_and_not_compared() -> None:
    """Ctrl-C after one result: the two never run are ``not_run`` records, neither errors nor removed."""
    stopped = dict(record(B, "not_run", message="not run: the run was interrupted"), produced=False)
    current = document(record(A), stopped, dict(record(C, "not_run"), produced=False), complete=False)
    regression = compare_runs(BASELINE, current)
    assert not regression.regressed and regression.newly_erroring == [] and regression.removed == []
    assert regression.matched == 1
    assert summary_text(regression).startswith("OK: no regressions in the 1 results both runs hold")


def test_pass_to_fail_is_a_regression() -> None:
    current = document(record(A, "fail", {"output": 0.05, "h": 1e-8}), record(B), record(C, "unsupported"))
    regression = compare_runs(BASELINE, current)
    assert regression.regressed
    assert [c.test_id for c in regression.newly_failing] == [A]
    assert (regression.newly_failing[0].before, regression.newly_failing[0].after) == ("pass", "fail")
    assert "1 newly failing" in summary_text(regression)


def test_error_growth_beyond_the_factor_is_a_regression() -> None:
    current = document(record(A), record(B, errors={"output": 5e-6, "h": 1e-8}), record(C, "unsupported"))
    regression = compare_runs(BASELINE, current)
    assert regression.regressed
    [grew] = regression.error_grew
    assert (grew.test_id, grew.tensor, grew.before, grew.after) == (B, "output", 1e-8, 5e-6)
    assert grew.factor == pytest.approx(500)


def test_error_growth_below_the_noise_floor_is_not_flagged() -> None:
    # 1e-9 -> 5e-8 is 50x, but under 1e-2 * atol = 1e-7: rounding noise
    baseline = document(record(A, errors={"output": 1e-9}))
    current = document(record(A, errors={"output": 5e-8}))
    assert not compare_runs(baseline, current).regressed


def test_error_growth_within_the_factor_is_not_flagged() -> None:
    baseline = document(record(A, errors={"output": 1e-6}))
    current = document(record(A, errors={"output": 9e-6}))
    assert not compare_runs(baseline, current, growth_factor=10).regressed


def test_error_shrinking_is_reported_not_a_regression() -> None:
    regression = compare_runs(document(record(A, errors={"output": 5e-6})), document(record(A)))
    assert [c.tensor for c in regression.error_shrank] == ["output"]
    assert not regression.regressed


def test_infinite_error_counts_as_growth() -> None:
    current = document(record(A))
    current["results"][0]["tensors"][0]["max_abs"] = "inf"  # how results store a non-finite number
    assert compare_runs(BASELINE, current).error_grew[0].after == float("inf")


def test_added_and_removed_results() -> None:
    D = "gru-seq0-state1-random-b3t5-relu[torch-cpu-float32]"
    current = document(record(A), record(C, "unsupported"), record(D))
    regression = compare_runs(BASELINE, current)
    assert [c.test_id for c in regression.added] == [D]
    assert [c.test_id for c in regression.removed] == [B]
    assert regression.removed[0].before == "pass"
    assert regression.regressed  # a pass that disappeared could be hiding a failure


def test_removing_a_result_that_was_not_passing_is_no_regression() -> None:
    current = document(record(A), record(B))
    regression = compare_runs(BASELINE, current)
    assert [c.test_id for c in regression.removed] == [C]
    assert not regression.regressed


def test_pass_to_unsupported_is_a_regression_but_unsupported_to_pass_is_not() -> None:
    worse = compare_runs(BASELINE, document(record(A, "unsupported"), record(B), record(C, "unsupported")))
    assert [c.test_id for c in worse.newly_unsupported] == [A] and worse.regressed
    better = compare_runs(BASELINE, document(record(A), record(B), record(C)))
    assert [c.test_id for c in better.newly_passing] == [C] and not better.regressed


def test_newly_erroring_is_a_regression() -> None:
    current = document(record(A, "error", message="RuntimeError: boom"), record(B), record(C, "unsupported"))
    regression = compare_runs(BASELINE, current)
    assert [c.test_id for c in regression.newly_erroring] == [A] and regression.regressed


def test_different_fixtures_and_incomplete_runs_are_noted() -> None:
    current = copy.deepcopy(BASELINE)
    current["fixtures_sha256"] = "0" * 64
    current["complete"] = False
    notes = compare_runs(BASELINE, current).notes
    assert any("fixtures" in note for note in notes)
    assert any("INCOMPLETE" in note for note in notes)


def test_to_dict_is_json() -> None:
    current = document(record(A, "fail", {"output": float("inf")}), record(C, "unsupported"))
    data = compare_runs(BASELINE, current).to_dict()
    json.dumps(data, allow_nan=False)
    assert data["regressed"] is True
    assert data["newly_failing"][0]["after_max_abs"] == "inf"


def test_growth_factor_must_exceed_one() -> None:
    with pytest.raises(ValueError, match="growth_factor"):
        compare_runs(BASELINE, BASELINE, growth_factor=1)


@pytest.mark.parametrize("factor", [float("inf"), float("nan")])
def test_a_growth_factor_that_flags_nothing_is_refused(factor: float) -> None:
    with pytest.raises(ValueError, match="finite number > 1"):
        compare_runs(BASELINE, BASELINE, growth_factor=factor)


def test_regression_report_renders_both_runs(tmp_path: Path) -> None:
    current = document(record(A, "fail", {"output": 0.05, "h": 1e-8}), record(B, errors={"output": 5e-6}),
                       record(C, "unsupported"))
    regression = compare_runs(BASELINE, current)
    html = render_regression(regression, BASELINE, current, tmp_path / "regression.html").read_text("utf-8")
    assert "REGRESSED" in html
    assert "Newly failing" in html and "Error grew" in html
    assert html.count('<div class="side-title">baseline</div>') == 2  # one per changed result


def test_summary_names_what_regressed_before_the_other_changes() -> None:
    D = "gru-seq0-state1-random-b3t5-relu[torch-cpu-float32]"
    current = document(record(A, "fail", {"output": 0.05, "h": 1e-8}), record(B), record(C), record(D))
    lines = summary_text(compare_runs(BASELINE, current)).splitlines()
    assert lines[0] == "REGRESSED: 1 newly failing"
    assert lines.index("newly failing (1):") < lines.index("other changes (not regressions):")
    assert lines[lines.index("newly failing (1):") + 1].startswith(f"  {A}  pass -> fail")
    assert lines.index("other changes (not regressions):") < lines.index("newly passing (1):")
    assert "added (1):" in lines


def test_a_lost_pass_is_listed_once_among_the_regressions() -> None:
    lines = summary_text(compare_runs(BASELINE, document(record(A), record(C, "unsupported")))).splitlines()
    assert lines[0] == "REGRESSED: 1 passed before, now unsupported/skipped/removed"
    assert sum(B in line for line in lines) == 1
    assert "removed (1):" not in lines


def test_summary_caps_each_section_and_says_how_many_more() -> None:
    ids = [f"gru-seq0-state1-random-b3t5-n{n}[torch-cpu-float32]" for n in range(5)]
    regression = compare_runs(document(*(record(i) for i in ids)), document(*(record(i, "fail") for i in ids)))
    lines = summary_text(regression, limit=2).splitlines()
    assert lines[1:] == ["newly failing (5):", f"  {regression.newly_failing[0].line()}",
                         f"  {regression.newly_failing[1].line()}", "  ... and 3 more"]


def test_runs_of_different_adapters_are_noted() -> None:
    onnx = A.replace("[torch-", "[onnx-native-")
    notes = compare_runs(BASELINE, document(record(A), record(onnx))).notes
    assert notes == ["the runs cover different adapters (only in the current run: onnx-native): "
                     "their results show as removed/added"]


def test_a_stream_without_a_fixtures_hash_is_not_said_to_use_other_fixtures() -> None:
    stream = copy.deepcopy(BASELINE)
    stream["fixtures_sha256"] = ""  # what a .jsonl stream of an interrupted run records
    assert compare_runs(BASELINE, stream).notes == []


def test_an_error_that_was_infinite_and_is_now_finite_is_not_called_exact() -> None:
    baseline = document(record(A, errors={"output": 1e-3}))
    baseline["results"][0]["tensors"][0]["max_abs"] = "inf"
    [shrank] = compare_runs(baseline, document(record(A, errors={"output": 1e-3}))).error_shrank
    assert shrank.ratio_text() == "/inf"
    assert "exact" not in shrank.line()


def test_an_error_that_became_zero_is_called_exact() -> None:
    [shrank] = compare_runs(document(record(A, errors={"output": 5e-6})),
                            document(record(A, errors={"output": 0.0}))).error_shrank
    assert shrank.ratio_text() == "now exact"


@pytest.mark.parametrize("status", ["error", "unsupported", "skipped"])
def test_results_without_tensors_compare_with_themselves_cleanly(status: str) -> None:
    run = document(record(A, status), record(B, status))
    for item in run["results"]:
        del item["tensors"], item["max_abs"]  # records written by other producers may lack them
    regression = compare_runs(run, copy.deepcopy(run))
    assert not regression.regressed and not any(getattr(regression, name) for name in CATEGORIES)


def test_minimal_records_render_in_the_regression_report(tmp_path: Path) -> None:
    baseline = document({"test_id": A, "status": "pass"})
    current = document({"test_id": A, "status": "fail"}, {"test_id": "not-a-test-id", "status": "error"})
    regression = compare_runs(baseline, current)
    assert [c.test_id for c in regression.newly_failing] == [A]
    html = render_regression(regression, baseline, current, tmp_path / "regression.html").read_text("utf-8")
    assert A in html and "not-a-test-id" in html


# --- documented differences (the records' own known, or the lists handed to compare) -------------

KNOWN_A = parse_known_differences(f"{A}  # torch: a documented difference\n")


def test_a_pass_that_becomes_a_documented_fail_is_newly_documented_not_a_regression() -> None:
    current = document(record(A, "fail", {"output": 0.05, "h": 1e-8}), record(B), record(C, "unsupported"))
    regression = compare_runs(BASELINE, current, known=KNOWN_A)
    assert not regression.regressed and regression.newly_failing == []
    [change] = regression.newly_documented
    assert (change.test_id, change.after_known) == (A, "torch: a documented difference")


def test_a_records_own_known_documents_it_without_a_list() -> None:
    current = document(dict(record(A, "error"), known="documented when it ran"), record(B), record(C, "unsupported"))
    assert [c.test_id for c in compare_runs(BASELINE, current).newly_documented] == [A]


def test_a_documented_fail_that_becomes_a_documented_error_is_still_documented() -> None:
    baseline = document(record(A, "fail", {"output": 0.05}))
    regression = compare_runs(baseline, document(record(A, "error")), known=KNOWN_A)
    assert not regression.regressed
    assert [(c.before, c.after) for c in regression.still_documented] == [("fail", "error")]
    assert "documented difference, status changed (1):" in summary_text(regression)


def test_an_error_growing_in_a_documented_fail_is_reported_not_a_regression() -> None:
    regression = compare_runs(document(record(A, "fail", {"output": 1e-4})),
                              document(record(A, "fail", {"output": 0.5})), known=KNOWN_A)
    assert not regression.regressed and regression.error_grew == []
    assert [c.tensor for c in regression.documented_error_grew] == ["output"]


def test_a_fail_no_longer_documented_is_newly_failing() -> None:
    """The entry held for the baseline's version and not for the current one's."""
    scoped = parse_known_differences(f"{A}  torch<2.14  # fixed in 2.14, or so we thought\n")
    baseline, current = document(record(A, "fail")), document(record(A, "fail"))
    current["adapters"]["torch"]["versions"]["torch"] = "2.14.0"
    regression = compare_runs(baseline, current, known=scoped)
    assert regression.regressed
    assert [(c.before, c.before_known, c.after_known) for c in regression.newly_failing] == [
        ("fail", "fixed in 2.14, or so we thought", None)]


def test_a_scoped_entry_is_judged_by_each_runs_own_versions() -> None:
    scoped = parse_known_differences(f"{A}  torch>=2.13  # from 2.13 on\n")  # the documents' torch is 2.13.0
    current = document(record(A, "fail"), record(B), record(C, "unsupported"))
    assert compare_runs(BASELINE, current, known=scoped).newly_documented
    current["adapters"]["torch"]["versions"]["torch"] = "2.12.1"
    assert compare_runs(BASELINE, current, known=scoped).newly_failing


# --- what both runs selected -------------------------------------------------------------------


def selected(*records: dict, keyword: str | None = None, adapters: tuple[str, ...] = ("torch",),
             complete: bool = True) -> dict:
    run = document(*records, complete=complete)
    run["selection"] = run_selection(keyword=keyword, device="cpu", dtype="all", adapters=adapters)
    return run


def test_equal_whole_run_selections_count_removed_results() -> None:
    regression = compare_runs(selected(record(A), record(B)), selected(record(A)))
    assert [c.test_id for c in regression.removed] == [B] and regression.regressed
    assert regression.notes == []


def test_a_narrowed_run_removes_nothing_and_the_note_says_why() -> None:
    regression = compare_runs(selected(record(A), record(B)), selected(record(A), keyword="b3t5 and not mask"))
    assert regression.removed == [] and not regression.regressed
    assert regression.notes == [
        "the runs selected different cases (all vs -k 'b3t5 and not mask'): compared the 1 results both ran; "
        "1 only in the baseline and 0 only in the current run are not counted as removed/added"]


def test_an_incomplete_run_compares_only_the_common_results() -> None:
    regression = compare_runs(selected(record(A), record(B)), selected(record(A), complete=False))
    assert regression.removed == [] and not regression.regressed
    assert regression.notes[0].startswith("the current run is INCOMPLETE: compared the 1 results both ran")


def test_other_fixtures_compare_only_the_common_results() -> None:
    current = selected(record(A))
    current["fixtures_sha256"] = "0" * 64
    regression = compare_runs(selected(record(A), record(B)), current)
    assert regression.removed == [] and regression.common_only
    assert regression.notes[0].startswith(f"the runs used different fixtures (fixtures_sha256 {'f' * 12}… vs "
                                          f"{'0' * 12}…")


def test_different_suite_versions_are_noted() -> None:
    current = copy.deepcopy(BASELINE)
    current["suite_version"] = "0.2.0"
    assert compare_runs(BASELINE, current).notes == [
        "the runs were made by different suite versions (unknown vs 0.2.0): the cases, tolerances or rules may differ"]


def test_old_merges_keep_their_selection_only_when_the_parts_agree() -> None:
    onnx_id = A.replace("[torch-", "[onnx-native-")
    torch, onnx = selected(record(A)), selected(record(onnx_id), adapters=("onnx-native",))
    assert merged_selection([torch, onnx]) == dict(torch["selection"], adapters=["onnx-native", "torch"])
    assert merged_selection([torch, selected(record(B), keyword="gru")]) is None


# --- by case ------------------------------------------------------------------------------------


def test_by_case_matches_across_adapters_and_ignores_their_names() -> None:
    keras = A.replace("[torch-", "[keras-torch-")
    regression = compare_runs(BASELINE, document(record(keras), record(B), record(C, "unsupported")), by_case=True)
    assert not regression.regressed and regression.matched == 3
    assert regression.notes[-1].endswith("baseline torch, current keras-torch, torch; 3 results matched")


def test_by_case_refuses_a_run_whose_adapters_share_a_case() -> None:
    both = document(record(A), record(A.replace("[torch-", "[onnx-torch-")))
    message = "--by-case needs one adapter per run; the current run holds onnx-torch, torch"
    with pytest.raises(ValueError, match=message):
        compare_runs(BASELINE, both, by_case=True)


def test_the_report_draws_a_documented_result_as_known(tmp_path: Path) -> None:
    current = document(record(A, "fail", {"output": 0.05}), record(B), record(C, "unsupported"))
    regression = compare_runs(BASELINE, current, known=KNOWN_A)
    html = render_regression(regression, BASELINE, current, tmp_path / "regression.html").read_text("utf-8")
    assert "Newly documented difference" in html and "No regression" in html
    assert 'class="chip k"' in html
