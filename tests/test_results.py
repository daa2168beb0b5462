"""Results files: streamed lines survive a crash; foreign files get one clear line; one meaning of 'known'."""

import json
import xml.etree.ElementTree as ET

import pytest

from conformance.results.reading import load_any
from conformance.results.records import (
    OUTCOMES,
    JsonlWriter,
    Record,
    ResultsFileError,
    load_results,
    merge_documents,
    outcome,
    read_jsonl,
    records_of,
    results_document,
    write_json_atomic,
)
from tests.test_report import MIXED_COUNTS, chip_counts, mixed_run_document


def test_a_torn_last_line_is_dropped_not_fatal(tmp_path):
    stream = tmp_path / "s.jsonl"
    JsonlWriter(stream).append({"record": "result", "test_id": "a", "status": "pass"})
    with open(stream, "a") as f:
        f.write('{"record": "res')
    assert [r["test_id"] for r in read_jsonl(stream)] == ["a"]


def test_a_stream_reads_as_an_incomplete_document(tmp_path):
    stream = tmp_path / "s.jsonl"
    JsonlWriter(stream).append({"record": "result", "test_id": "a", "status": "fail"})
    document = load_any([stream])
    assert document["complete"] is False and document["results"][0]["test_id"] == "a"


@pytest.mark.parametrize("content, words", [
    ("not json", "not valid JSON"),
    (json.dumps({"schema": "pytest-json/1", "results": []}), "not a conformance results file"),
    (json.dumps([1, 2]), "not a conformance results file"),
    (json.dumps({"schema": "rnn-conformance/results/1", "results": [{"x": 1}]}), "result #0 is malformed"),
])
def test_foreign_or_malformed_results_files_are_one_line_errors(tmp_path, content, words):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(ResultsFileError, match=words) as info:
        load_results(path)
    assert "\n" not in str(info.value)


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_json_atomic(tmp_path / "r.json", {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_merge_keeps_every_adapter_and_marks_incomplete_if_any_part_is():
    a = results_document([{"test_id": "x[a-cpu-float32]", "status": "pass"}], complete=True, created="1",
                         fixtures_sha256="h", machine={}, adapters={"a": {}})
    b = results_document([{"test_id": "x[b-cpu-float32]", "status": "fail"}], complete=False, created="2",
                         fixtures_sha256="h", machine={}, adapters={"b": {}})
    merged = merge_documents([a, b])
    assert set(merged["adapters"]) == {"a", "b"} and merged["complete"] is False
    assert len(merged["results"]) == 2


# --- one meaning of "known" -----------------------------------------------------------------


def record(status: str, known: str | None = None, test_id: str = "x[a-cpu-float32]") -> Record:
    return Record(test_id, status, known=known)


@pytest.mark.parametrize("status", ["fail", "error"])
def test_a_fail_or_error_with_a_known_reason_has_the_outcome_known(status):
    assert record(status, known="documented").outcome == "known"
    assert not record(status, known="documented").unexpected
    assert record(status).outcome == status and record(status).unexpected


@pytest.mark.parametrize("status", ["pass", "unsupported", "skipped"])
def test_only_fails_and_errors_become_known(status):
    assert record(status, known="documented").outcome == status


def test_a_record_reads_back_from_its_json_form():
    written = Record("x[a-cpu-float32]", "fail", "worse", adapter="a", device="cpu", dtype="float32",
                     run_info={"kernel": "cudnn"}, known="documented")
    assert Record.from_dict(json.loads(json.dumps(written.to_dict()))) == written


def test_an_older_files_known_failure_in_run_info_reads_as_known():
    old = {"test_id": "x[a-cpu-float32]", "status": "error", "run_info": {"known_failure": "documented", "k": 1}}
    assert Record.from_dict(old).known == "documented" and Record.from_dict(old).run_info == {"k": 1}
    assert outcome(old) == "known"


def test_results_json_counts_every_outcome():
    document = mixed_run_document()
    assert document["counts"] == MIXED_COUNTS


def test_a_merged_document_counts_the_merged_results():
    a = results_document([record("fail", "why", "x[a-cpu-float32]")], complete=True, created="1",
                         fixtures_sha256="h", machine={}, adapters={})
    b = results_document([record("fail", None, "x[b-cpu-float32]")], complete=True, created="1",
                         fixtures_sha256="h", machine={}, adapters={})
    counts = merge_documents([a, b])["counts"]
    assert (counts["known"], counts["fail"]) == (1, 1)


def test_every_output_gives_the_same_counts(tmp_path):
    from conformance.commands.run import summary_table
    from conformance.report import render_report
    from conformance.results.junit import write_junit

    document = mixed_run_document()
    write_json_atomic(tmp_path / "results.json", document)
    write_junit(tmp_path / "junit.xml", records_of(document))
    html = render_report(document, tmp_path).read_text(encoding="utf-8")

    all_row = next(line for line in summary_table(document).splitlines() if line.startswith("all "))
    table = dict(zip(OUTCOMES, map(int, all_row.split()[1:])))
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    skipped = [s.get("message") for s in suite.iter("skipped")]
    junit = {"pass": sum(1 for case in suite if len(case) == 0), "fail": int(suite.get("failures")),
             "error": int(suite.get("errors")),
             "known": sum(m.startswith("known difference:") for m in skipped),
             "unsupported": sum(m.startswith("unsupported:") for m in skipped),
             "skipped": sum(m.startswith("skipped:") for m in skipped),
             "not_run": sum(s.get("type") == "not run" for s in suite.iter("skipped"))}
    stored = load_results(tmp_path / "results.json")["counts"]
    assert table == stored == chip_counts(html) == junit == MIXED_COUNTS
    assert "3 unexpected (fail, error), 3 known differences" in summary_table(document)


# --- known-differences entries across merged parts ---------------------------------------------


def audited(checked: list[str] | None, unmatched: list[str] | None) -> dict:
    return results_document([], complete=True, created="", fixtures_sha256="", machine={}, adapters={},
                            known_checked=checked, known_unmatched=unmatched)


def test_an_entry_unmatched_in_one_part_but_matched_in_another_is_not_reported():
    merged = merge_documents([audited(["a", "b"], ["a", "b"]), audited(["a"], [])])
    assert merged["known_unmatched"] == ["b"]
    assert merged["known_checked"] == ["a", "b"]


def test_an_entry_only_one_part_checked_stays_unmatched():
    merged = merge_documents([audited(["torch-entry"], ["torch-entry"]), audited(["flax-entry"], [])])
    assert merged["known_unmatched"] == ["torch-entry"]


def test_parts_that_checked_nothing_leave_the_merged_list_undecided():
    merged = merge_documents([audited(None, None), audited(None, None)])
    assert merged["known_checked"] is None and merged["known_unmatched"] is None
