"""Results files hold whatever a run produced and refuse whatever is malformed (issue 11: items 2, 6, 8).

- A NaN or infinity in an output is a ``fail`` that names the tensor, how many
  values are not finite and the first one; every writer stores non-finite
  numbers as the strings 'nan' / 'inf' / '-inf', and every report renders them.
- Every results file and stream read is checked against the published JSON
  Schema (``RESULTS_SCHEMA_PATH``): a malformed one is one line naming the file,
  the record and the JSON path of the problem, and ``report`` / ``compare`` say
  it with exit 2 and no traceback.
- Lone surrogates, NUL, ESC and the other control characters in any text of a
  record or of the run's info never stop results.json, the stream, junit.xml
  or index.html from being written, well-formed.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from conformance.jsonsafe import json_safe, safe_text
from conformance.report import render_regression, render_report
from conformance.results.junit import junit_xml, write_junit
from conformance.results.reading import load_any, load_stream
from conformance.results.records import (
    RESULTS_SCHEMA_PATH,
    JsonlWriter,
    Record,
    ResultsFileError,
    load_results,
    make_record,
    read_jsonl,
    records_of,
    results_document,
    validate_results,
    validate_stream_line,
    write_json_atomic,
)
from conformance.results.regression import compare_runs
from conformance.results.schema import fast_check, part_schema
from conformance.verdict.compare import compare_outputs
from tests.commandline import CONSOLE_SCRIPT, one_line_error
from tests.test_report import mixed_run_document, solved_cases, synthetic_document, synthetic_record

HOSTILE = "lone \udc80 surrogate, NUL \x00, ESC \x1b[31mred\x1b[0m, BEL \x07, DEL \x7f, \ufffe and <b>&"
# Characters no results file, junit.xml or index.html may hold (tab, newline, CR are fine).
FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def strict_json(text: str):
    """JSON as the strictest reader takes it: no NaN / Infinity literals."""
    def refuse(name):
        raise AssertionError(f"the file holds the literal {name}, which JSON does not have")
    return json.loads(text, parse_constant=refuse)


def sequence_case():
    """A float32 case whose first output is (batch >= 2, time >= 5, units >= 2), for planting non-finite values."""
    return next(c.for_dtype("float32") for c in solved_cases()
                if c.expected[0].ndim == 3 and min(c.expected[0].shape[::2]) >= 2 and c.expected[0].shape[1] >= 5
                and "float32" in c.dtypes)


def planted(case, *values_at: tuple[tuple[int, ...], float]) -> list[np.ndarray]:
    """The oracle's answer with ``value`` planted at each ``index`` of the first output."""
    outputs = [np.asarray(e, dtype=case.dtype) for e in case.expected]
    for index, value in values_at:
        outputs[0][index] = value
    return outputs


def nan_record(case=None) -> Record:
    case = case or sequence_case()
    verdict = compare_outputs(case, planted(case, ((0, 1, 0), np.nan), ((0, 0, 1), np.inf)))
    return make_record(case=case, adapter="torch", device="cpu", dtype=case.dtype, status="fail",
                       message=verdict.message, verdict=verdict.to_dict())


# --- 1. non-finite numbers are results, not crashes ----------------------------------------


def test_an_output_holding_nan_is_a_fail_naming_the_tensor_how_many_and_the_first_index():
    case = sequence_case()
    name = case.output_names[0]
    total = case.expected[0].size
    verdict = compare_outputs(case, planted(case, ((0, 2, 1), np.nan), ((0, 3, 0), np.nan), ((1, 4, 0), np.nan)))
    assert not verdict.passed
    assert f"{name}: 3/{total} values are not finite (first nan at (0, 2, 1))" in verdict.message


@pytest.mark.parametrize("value, word", [(np.inf, "inf"), (-np.inf, "-inf")])
def test_an_infinite_output_is_a_fail_that_says_which_infinity_came_first(value, word):
    case = sequence_case()
    verdict = compare_outputs(case, planted(case, ((0, 1, 0), value)))
    assert not verdict.passed and f"1/{case.expected[0].size} values are not finite (first {word} at (0, 1, 0))" \
        in verdict.message


def test_the_first_non_finite_value_is_the_earliest_timestep():
    case = sequence_case()
    verdict = compare_outputs(case, planted(case, ((1, 0, 0), np.inf), ((0, 3, 0), np.nan)))
    assert "first inf at (1, 0, 0)" in verdict.message


def test_a_non_finite_verdict_is_plain_json_with_the_non_finite_numbers_as_strings():
    case = sequence_case()
    data = json.loads(json.dumps(compare_outputs(case, planted(case, ((0, 1, 0), np.nan))).to_dict(),
                                 allow_nan=False))
    tensor = data["tensors"][0]
    assert data["max_abs"] == tensor["max_abs"] == "inf"  # a NaN is infinitely wrong
    assert "inf" in sum(tensor["error_map"], [])
    assert tensor["first_divergence"]["actual"] == "nan"


def test_json_safe_writes_non_finite_numbers_anywhere_as_strings():
    nested = {"a": [1.0, float("nan"), (float("inf"), -float("inf"))], "b": {"c": np.float32("nan")}}
    assert json_safe(nested) == {"a": [1.0, "nan", ["inf", "-inf"]], "b": {"c": "nan"}}


def test_json_safe_keeps_what_an_adapter_put_in_run_info_as_plain_json():
    info = {"threads": np.int64(4), "flags": ("a", "b"), "shape": np.array([2, 3]), "device": Path("/dev/x"),
            7: "int key"}
    assert json_safe(info) == {"threads": 4, "flags": ["a", "b"], "shape": [2, 3], "device": "/dev/x",
                               "7": "int key"}


def test_an_integer_too_long_for_python_to_write_is_written_as_infinite(tmp_path):
    JsonlWriter(tmp_path / "s.jsonl").append({"record": "started", "test_id": "x", "huge": 10**5000, "neg": -10**5000})
    assert read_jsonl(tmp_path / "s.jsonl") == [{"record": "started", "test_id": "x", "huge": "inf", "neg": "-inf"}]


def test_a_nan_result_survives_the_stream_and_the_results_file(tmp_path):
    record = nan_record()
    JsonlWriter(tmp_path / "s.jsonl").append(record.to_dict())
    document = results_document([record], complete=True, created="now", fixtures_sha256="h", machine={},
                                adapters={})
    write_json_atomic(tmp_path / "results.json", document)
    strict_json((tmp_path / "results.json").read_text())
    for loaded in (load_stream(tmp_path / "s.jsonl"), load_results(tmp_path / "results.json")):
        (back,) = records_of(loaded)
        assert back.status == "fail" and "values are not finite" in back.message
        assert back.max_abs == "inf"


def test_a_nan_result_renders_in_html_junit_and_the_regression_report(tmp_path):
    case = sequence_case()
    passing = make_record(case=case, adapter="torch", device="cpu", dtype=case.dtype, status="pass", message="ok",
                          verdict=compare_outputs(case, planted(case)).to_dict())
    baseline = results_document([passing], complete=True, created="1", fixtures_sha256="h", machine={},
                                adapters={})
    current = results_document([nan_record(case)], complete=True, created="2", fixtures_sha256="h", machine={},
                               adapters={})
    html = render_report(current, tmp_path).read_text()
    assert "values are not finite" in html and ">inf<" in html
    failure = ET.fromstring(junit_xml(records_of(current)).encode()).find("testcase/failure")
    assert "values are not finite" in failure.get("message")
    regression = compare_runs(baseline, current)
    assert [c.test_id for c in regression.newly_failing] == [passing.test_id]
    assert "values are not finite" in render_regression(regression, baseline, current,
                                                        tmp_path / "regression.html").read_text()


def test_numbers_too_large_for_a_float_render_as_infinite(tmp_path):
    document = json.loads(json.dumps(mixed_run_document()))
    failing = next(r for r in document["results"] if r["status"] == "fail")
    failing["max_abs"] = failing["tensors"][0]["max_abs"] = 10**400
    html = render_report(validate_results(document, "big"), tmp_path).read_text()
    assert ">inf<" in html
    assert compare_runs(document, document).regressed is False


def test_nan_literals_of_an_older_writer_read_as_the_strings_results_use(tmp_path):
    document = json.loads(json.dumps(mixed_run_document()))
    document["results"][0]["max_abs"] = float("nan")
    path = tmp_path / "old.json"
    path.write_text(json.dumps(document))  # Python's default writes the literal NaN
    assert load_results(path)["results"][0]["max_abs"] == "nan"


# --- 2. the published schema -----------------------------------------------------------------


def test_the_schema_is_published_in_the_package_and_is_a_draft_2020_12_schema():
    schema = json.loads(RESULTS_SCHEMA_PATH.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_schema_names_every_field_of_a_record_and_of_the_document():
    schema = json.loads(RESULTS_SCHEMA_PATH.read_text())
    record_fields = {f.name for f in dataclasses.fields(Record)} | {"record"}
    assert set(schema["$defs"]["result"]["properties"]) == record_fields
    document = results_document([], complete=True, created="", fixtures_sha256="", machine={}, adapters={})
    assert set(schema["properties"]) == set(document)


def test_a_vendor_can_check_a_whole_results_file_with_jsonschema_alone(tmp_path):
    document = mixed_run_document()
    validator = jsonschema.Draft202012Validator(json.loads(RESULTS_SCHEMA_PATH.read_text()))
    assert list(validator.iter_errors(json.loads(json.dumps(document)))) == []
    assert validate_results(document, "mine") is document


def test_every_line_the_writers_produce_is_a_valid_stream_line(tmp_path):
    stream = tmp_path / "s.jsonl"
    writer = JsonlWriter(stream)
    writer.append({"record": "collected", "count": 3})
    writer.append({"record": "started", "test_id": "x[a-cpu-float32]"})
    writer.append(nan_record().to_dict())
    writer.append({"record": "planned", "anything": ["else"]})  # other kinds may carry fields of their own
    assert len(load_stream(stream)["results"]) == 1


def base_document() -> dict:
    """The mixed run with a NaN result added, as read from a file."""
    mixed = mixed_run_document()
    document = results_document([*records_of(mixed), nan_record()], complete=True, created=mixed["created"],
                                fixtures_sha256="h", machine=mixed["machine"], adapters=mixed["adapters"])
    return json.loads(json.dumps(document))


def results_with(change) -> dict:
    document = base_document()
    change(document)
    return document


def failing(document: dict) -> dict:
    """The result with the largest error map (several rows of several units)."""
    def size(record):
        error_map = record["tensors"][0].get("error_map") if record["tensors"] else None
        return len(error_map) * len(error_map[0]) if error_map else 0
    return max(document["results"], key=size)


def _set(target: dict, key: str, value) -> None:
    target[key] = value


MALFORMED = {
    "machine a string": (lambda d: _set(d, "machine", "x86"), "$.machine"),
    "run_info a list": (lambda d: _set(d["results"][3], "run_info", ["cudnn"]), "$.results[3].run_info"),
    "a short error_map row": (lambda d: failing(d)["tensors"][0]["error_map"][-1].pop(),
                              ".tensors[0].error_map[4]: a row of 3 values, the first row has 4"),
    "mismatched a string": (lambda d: _set(failing(d)["tensors"][0], "mismatched", "many"),
                            ".tensors[0].mismatched"),
    "tensors a dict": (lambda d: _set(d["results"][0], "tensors", {"h": 1}), "$.results[0].tensors"),
    "a number in error_map a word": (lambda d: _set(failing(d)["tensors"][0]["error_map"][0], 0, "big"),
                                     ".tensors[0].error_map[0][0]"),
    "a status nobody knows": (lambda d: _set(d["results"][2], "status", "flaky"), "$.results[2].status"),
    "a field nobody knows": (lambda d: _set(d["results"][2], "stauts", "pass"), "$.results[2]"),
    "results not a list": (lambda d: _set(d, "results", {"a": 1}), "$.results"),
    "a record that is not a dict": (lambda d: _set(d["results"], 1, "pass"), "$.results[1]"),
    "a record without a test id": (lambda d: d["results"][0].pop("test_id"), "$.results[0]"),
    "adapters' versions a list": (lambda d: _set(d, "adapters", {"torch": {"versions": ["2.5"]}}),
                                  "$.adapters.torch.versions"),
    "planned a string": (lambda d: _set(d, "planned", "all"), "$.planned"),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_a_malformed_results_file_is_one_line_naming_the_file_the_record_and_the_json_path(tmp_path, kind):
    change, path_words = MALFORMED[kind]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results_with(change)))
    with pytest.raises(ResultsFileError) as info:
        load_results(path)
    line = str(info.value)
    assert "\n" not in line and line.startswith(f"{path}: ") and path_words in line, line
    if path_words.startswith(".") or re.match(r"\$\.results\[\d", path_words):
        assert re.search(r"result #\d+", line), line


def test_a_malformed_record_is_named_by_its_test_id(tmp_path):
    document = results_with(lambda d: _set(d["results"][3], "run_info", ["cudnn"]))
    with pytest.raises(ResultsFileError, match=re.escape(f"result #3 ({document['results'][3]['test_id']})")):
        validate_results(document, "results.json")


def big_number_text(digits: int = 5000) -> str:
    return "1" + "0" * (digits - 1)


def test_a_number_with_more_digits_than_python_reads_is_one_line(tmp_path):
    path = tmp_path / "results.json"
    text = json.dumps(mixed_run_document()).replace('"duration_s": 0.0', f'"duration_s": {big_number_text()}', 1)
    path.write_text(text)
    with pytest.raises(ResultsFileError, match="not valid JSON .*Exceeds the limit") as info:
        load_results(path)
    assert "\n" not in str(info.value)


STREAM_LINES = {
    "a result line with nothing but its kind": ('{"record": "result"}', "line 2 is malformed: $: 'test_id'"),
    "a line that is no object": ('["result"]', "line 2 is malformed: $: "),
    "a line without a kind": ('{"test_id": "x", "status": "pass"}', "line 2 (x) is malformed: $: 'record'"),
    "a started line without a test id": ('{"record": "started"}', "line 2 is malformed: $: 'test_id'"),
    "a collected count that is a word": ('{"record": "collected", "count": "3"}', "line 2 is malformed: $.count"),
    "a huge number": ('{"record": "collected", "count": ' + big_number_text() + "}",
                      "line 2 is not JSON (Exceeds the limit"),
}


def write_stream(path: Path, bad_line: str) -> Path:
    good = json.dumps(nan_record().to_dict())
    path.write_text(f"{good}\n{bad_line}\n{good}\n")
    return path


@pytest.mark.parametrize("kind", sorted(STREAM_LINES))
def test_a_malformed_stream_line_is_one_line_naming_the_file_and_the_line(tmp_path, kind):
    bad_line, words = STREAM_LINES[kind]
    stream = write_stream(tmp_path / "results.jsonl", bad_line)
    with pytest.raises(ResultsFileError) as info:
        load_stream(stream)
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{stream}: ")
    assert words in str(info.value)


def test_a_torn_last_line_is_dropped_but_a_broken_finished_line_is_an_error(tmp_path):
    stream = tmp_path / "s.jsonl"
    stream.write_text('{"record": "started", "test_id": "a"}\n{"record": "res')
    assert read_jsonl(stream) == [{"record": "started", "test_id": "a"}]
    stream.write_text('{"record": "started", "test_id": "a"}\n{"record": "res\n')
    with pytest.raises(ResultsFileError, match="line 2 is not JSON"):
        read_jsonl(stream)


def mutations(record: dict):
    """The record with each field set, in turn, to a value of every JSON type (and some of its parts)."""
    values = [None, True, 0, -1, 2.5, "nan", "text", "", [], [1], ["a"], [[1.0], [2.0]], {}, {"a": 1}]
    for key in list(record) + ["unknown"]:
        for value in values:
            yield dict(record, **{key: value})
    for n, tensor in enumerate(record["tensors"]):
        for key in list(tensor) + ["unknown"]:
            for value in values:
                yield dict(record, tensors=[*record["tensors"][:n], dict(tensor, **{key: value})])


def test_the_compiled_check_agrees_with_jsonschema_on_every_mutation_of_a_record():
    record = failing(json.loads(json.dumps(mixed_run_document())))
    validator = jsonschema.Draft202012Validator(part_schema("result"))
    checked = 0
    for mutated in mutations(record):
        assert fast_check("result")(mutated) == validator.is_valid(mutated), mutated
        checked += 1
    assert checked > 500


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_the_compiled_check_agrees_with_jsonschema_on_every_malformed_document(kind):
    document = results_with(MALFORMED[kind][0])
    skeleton = jsonschema.Draft202012Validator(part_schema("document"))
    result = jsonschema.Draft202012Validator(part_schema("result"))
    assert fast_check("document")(document) == skeleton.is_valid(document)
    for record in document["results"] if isinstance(document["results"], list) else ():
        assert fast_check("result")(record) == result.is_valid(record)


@pytest.mark.slow
def test_ten_thousand_results_validate_whole():
    """Behaviour only: how fast is the benchmark's business, not a test's (a busy machine is slow)."""
    document = json.loads(json.dumps(synthetic_document(solved_cases())))
    assert len(document["results"]) >= 10_000
    validate_results(document, "results.json")


# --- 3. text is safe everywhere ---------------------------------------------------------------


def test_safe_text_shows_control_characters_and_replaces_lone_surrogates():
    assert safe_text("a\x00b\x1b[0m\x7f\udc80\tc\nd\r") == "a\\x00b\\x1b[0m\\x7f\ufffd\tc\nd\r"
    assert safe_text("ordinary text, ünïcödé, 漢字, 😀") == "ordinary text, ünïcödé, 漢字, 😀"


def hostile_record() -> Record:
    case = sequence_case()
    record = synthetic_record(case, "torch", "cpu", "gate")
    return dataclasses.replace(record, message=HOSTILE, stderr=HOSTILE * 3, adapter=f"torch{HOSTILE}",
                               describe=HOSTILE, device_name=HOSTILE, run_info={HOSTILE: HOSTILE, "n": 1},
                               known=None, test_id=f"{record.test_id}{HOSTILE}")


def hostile_document() -> dict:
    return results_document([hostile_record(), synthetic_record(sequence_case(), "flax", "cpu", "error")],
                            complete=True, created=HOSTILE, fixtures_sha256="h", machine={"cpu": HOSTILE},
                            adapters={f"torch{HOSTILE}": {"versions": {HOSTILE: HOSTILE}}})


def test_hostile_text_in_every_field_still_writes_all_four_files_well_formed(tmp_path):
    document = hostile_document()
    write_json_atomic(tmp_path / "results.json", document)
    JsonlWriter(tmp_path / "results.jsonl").append(hostile_record().to_dict())
    write_junit(tmp_path / "junit.xml", records_of(document))
    render_report(document, tmp_path)
    for name in ("results.json", "results.jsonl", "junit.xml", "index.html"):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert not FORBIDDEN.search(text), name
    strict_json((tmp_path / "results.json").read_text())
    ET.parse(tmp_path / "junit.xml")
    assert "\\x1b[31mred" in (tmp_path / "index.html").read_text()  # shown, not obeyed
    assert load_results(tmp_path / "results.json") == document
    assert len(load_stream(tmp_path / "results.jsonl")["results"]) == 1


def test_junit_is_well_formed_for_records_that_never_went_through_the_writers():
    raw = Record(f"x[a-cpu-float32]{HOSTILE}", "error", message=HOSTILE, adapter=HOSTILE, stderr=HOSTILE,
                 duration_s="nan")
    odd = Record("y[a-cpu-float32]", "fail", message=None, duration_s=None)
    suite = ET.fromstring(junit_xml([raw, odd]).encode("utf-8"))
    assert [c.find("error") is not None for c in suite.findall("testcase")] == [True, False]


def test_a_vendors_file_with_control_characters_reads_as_safe_text(tmp_path):
    document = json.loads(json.dumps(mixed_run_document()))
    document["results"][0]["message"] = "bell \x07 and NUL \x00"
    path = tmp_path / "vendor.json"
    path.write_text(json.dumps(document))
    assert load_results(path)["results"][0]["message"] == "bell \\x07 and NUL \\x00"


# --- the commands, as a user runs them --------------------------------------------------------


def conformance(*args) -> subprocess.CompletedProcess:
    if not CONSOLE_SCRIPT.exists():
        pytest.fail(f"no console script at {CONSOLE_SCRIPT}: install the package (pip install -e .)")
    return subprocess.run([str(CONSOLE_SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=120)


def malformed_files(directory: Path) -> list[Path]:
    """One file for each malformed document and stream line above, and the huge number."""
    files = []
    for n, kind in enumerate(sorted(MALFORMED)):
        files.append(directory / f"document-{n}.json")
        files[-1].write_text(json.dumps(results_with(MALFORMED[kind][0])))
    for n, kind in enumerate(sorted(STREAM_LINES)):
        files.append(write_stream(directory / f"stream-{n}.jsonl", STREAM_LINES[kind][0]))
    files.append(directory / "huge.json")
    files[-1].write_text(json.dumps(mixed_run_document()).replace('"duration_s": 0.0',
                                                                   f'"duration_s": {big_number_text()}', 1))
    return files


@pytest.fixture(scope="module")
def malformed(tmp_path_factory) -> list[Path]:
    return malformed_files(tmp_path_factory.mktemp("malformed"))


@pytest.fixture(scope="module")
def good_results(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "results.json"
    write_json_atomic(path, mixed_run_document())
    return path


def test_report_of_each_malformed_file_is_one_line_and_exit_2(malformed, tmp_path):
    out = tmp_path / "out"
    for path in malformed:
        line = one_line_error(conformance("report", path, "-o", out))
        assert str(path) in line
    assert not (out / "index.html").exists()


def test_compare_with_each_malformed_file_is_one_line_and_exit_2(malformed, good_results, tmp_path):
    for n, path in enumerate(malformed):
        baseline, current = (path, good_results) if n % 2 else (good_results, path)
        line = one_line_error(conformance("compare", baseline, current, "-o", tmp_path / "regression.html"))
        assert str(path) in line
    assert not (tmp_path / "regression.html").exists()


def test_report_of_a_stream_with_nan_and_hostile_text_writes_the_report(tmp_path):
    stream = tmp_path / "results.jsonl"
    JsonlWriter(stream).append(nan_record().to_dict())
    JsonlWriter(stream).append(hostile_record().to_dict())
    result = conformance("report", stream, "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "out" / "index.html").read_text()
    assert "values are not finite" in html and not FORBIDDEN.search(html)


def test_a_merge_of_hostile_and_nan_results_writes_all_three_files(tmp_path):
    for name, record in (("a", nan_record()), ("b", hostile_record())):
        write_json_atomic(tmp_path / "envs" / name / "results.json",
                          results_document([record], complete=True, created="", fixtures_sha256="h", machine={},
                                           adapters={}))
    result = conformance("report", tmp_path / "envs", "-o", tmp_path / "merged")
    assert result.returncode == 0, result.stderr
    strict_json((tmp_path / "merged" / "results.json").read_text())
    ET.parse(tmp_path / "merged" / "junit.xml")
    assert len(load_any([tmp_path / "merged" / "results.json"])["results"]) == 2


def test_a_copy_of_a_document_validates_the_same(good_results):
    document = load_results(good_results)
    assert validate_results(copy.deepcopy(document), "copy") == document
    assert validate_stream_line(document["results"][0], "copy", 1) == document["results"][0]
