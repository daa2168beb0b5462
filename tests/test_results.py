"""Results files: streamed lines survive a crash; foreign files get one clear line."""

import json

import pytest

from conformance.reports_io import load_any
from conformance.results import (
    JsonlWriter,
    ResultsFileError,
    load_results,
    merge_documents,
    read_jsonl,
    results_document,
    write_json_atomic,
)


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
