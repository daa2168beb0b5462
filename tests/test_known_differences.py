"""Known differences are data: every entry needs a reason, lists add up, and an entry that matches nothing is named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.commands.cli import build_parser, main
from conformance.commands.supervisor import known_difference_args
from conformance.matrix.properties import properties_of
from conformance.results.records import Record, audit_known
from conformance.verdict.known_differences import (
    BUILTIN_KNOWN_DIFFERENCES,
    known_difference_files,
    load_known_differences,
    parse_known_differences,
)
from tests.commandline import CONSOLE_SCRIPT, one_line_error

TEXT = """
# comment lines are ignored
*-mask_empty_row[keras-jax-*-float32]   # masked leading steps output initial h
gru-seq0-state0-random-b1t1[torch-cpu-float32]  # an exact id
"""
MATRIX = {"lstm-seq0-state1-random-b3t5-mask_empty_row": ("float32",),
          "gru-seq0-state0-random-b1t1": ("float32", "float64")}


def result(test_id: str, status: str, known: str | None = None) -> Record:
    case_id, rest = test_id.split("[")
    adapter, device, dtype = rest.rstrip("]").rsplit("-", 2)
    return Record(test_id, status, case_id=case_id, adapter=adapter, device=device, dtype=dtype, known=known)


def unmatched(known, records, selected: bool = False) -> list[str]:
    return audit_known(known, records, MATRIX, selected).unmatched_patterns


# --- the format ---------------------------------------------------------------------------------


def test_a_pattern_matches_ids_with_their_brackets_literal():
    known = parse_known_differences(TEXT)
    assert known.reason_for("lstm-seq0-state1-random-b3t5-mask_empty_row[keras-jax-cpu-float32]")
    assert known.reason_for("lstm-seq0-state1-random-b3t5-mask_empty_row[keras-jax-cpu-float64]") is None
    assert known.reason_for("lstm-seq0-state1-random-b3t5-mask_empty_rowk[keras-jax-cpu-float32]") is None


def test_an_entry_without_a_reason_is_refused():
    with pytest.raises(ValueError, match="kf.txt:1: an entry needs '# reason'"):
        parse_known_differences("lstm-*[torch-cpu-float32]\n", "kf.txt")


@pytest.mark.parametrize("pattern", ["lstm-* [torch-*]", "lstm[a][torch-*]"])
def test_a_pattern_that_can_match_no_test_id_is_refused(pattern):
    with pytest.raises(ValueError, match="can match no test id"):
        parse_known_differences(f"{pattern}  # why\n", "kf.txt")


def test_the_shipped_list_parses():
    assert load_known_differences([BUILTIN_KNOWN_DIFFERENCES]).entries


# --- entries scoped to versions ----------------------------------------------------------------

SCOPED = "*[keras-jax-*-float64]   keras>=3.12   # keras-jax: float64 computed partly in float32\n"
JAX_F64 = "lstm-seq0-state0-random-b3t5[keras-jax-cpu-float64]"


@pytest.mark.parametrize("versions, applies", [
    ({"keras": "3.12.0", "jax": "0.7.1"}, True),
    ({"keras": "3.15.1"}, True),
    ({"Keras": "3.13.0rc1"}, True),  # names compare canonicalized; pre-releases count
    ({"keras": "3.11.3"}, False),
    ({"jax": "0.7.1"}, False),  # the package is not among the adapter's versions
    ({"keras": "not a version"}, False),
    (None, False),  # versions unknown
])
def test_a_scoped_entry_applies_only_at_the_versions_it_names(versions, applies):
    reason = parse_known_differences(SCOPED).reason_for(JAX_F64, versions)
    assert (reason == "keras-jax: float64 computed partly in float32") is applies


def test_every_requirement_of_an_entry_must_hold():
    known = parse_known_differences("*[keras-jax-*]  keras>=3.12  jax<0.8  # both\n")
    assert known.reason_for(JAX_F64, {"keras": "3.12.0", "jax": "0.7.2"}) == "both"
    assert known.reason_for(JAX_F64, {"keras": "3.12.0", "jax": "0.8.0"}) is None
    assert known.entries[0].requirements == ("keras>=3.12", "jax<0.8")


def test_an_unscoped_entry_applies_whatever_the_versions():
    known = parse_known_differences(TEXT)
    assert known.reason_for("gru-seq0-state0-random-b1t1[torch-cpu-float32]", None) == "an exact id"
    assert known.reason_for("gru-seq0-state0-random-b1t1[torch-cpu-float32]", {}) == "an exact id"


def test_a_scoped_entry_that_does_not_apply_leaves_the_next_entry_to_match():
    known = parse_known_differences(SCOPED + "*[keras-jax-*]  # any version\n")
    assert known.reason_for(JAX_F64, {"keras": "3.11.0"}) == "any version"


@pytest.mark.parametrize("requirement", ["keras>>3", "keras[jax]>=3", "keras@https://x.invalid/k.whl"])
def test_a_requirement_that_names_no_versions_is_a_one_line_error(requirement):
    with pytest.raises(ValueError) as info:
        parse_known_differences(f"*[keras-jax-*]  {requirement}  # why\n", "kf.txt")
    assert str(info.value) == f"kf.txt:1: {requirement!r} is not a version requirement"


def test_a_scoped_entry_is_checked_only_by_a_run_at_its_versions():
    known = parse_known_differences(SCOPED)
    records = [result(JAX_F64, "pass")]
    old = audit_known(known, records, MATRIX, selected=False, versions={"keras-jax": {"keras": "3.11.0"}})
    assert old.checked == [] and old.unmatched == []
    new = audit_known(known, records, MATRIX, selected=False, versions={"keras-jax": {"keras": "3.12.0"}})
    assert new.checked == ["*[keras-jax-*-float64]"] and new.unmatched_patterns == ["*[keras-jax-*-float64]"]
    assert audit_known(known, records, MATRIX, selected=False).checked == []  # versions unknown


# --- several lists ------------------------------------------------------------------------------


def test_extra_lists_come_after_the_builtin_one():
    assert known_difference_files(["a.txt", "b.txt"]) == [BUILTIN_KNOWN_DIFFERENCES, Path("a.txt"), Path("b.txt")]


def test_the_builtin_list_can_be_left_out():
    assert known_difference_files(["a.txt"], builtin=False) == [Path("a.txt")]


def test_several_files_make_one_list_and_the_first_match_gives_the_reason(tmp_path):
    (tmp_path / "a.txt").write_text("lstm-*[torch-*]  # from a\n")
    (tmp_path / "b.txt").write_text("lstm-*[torch-*-float64]  # from b\ngru-*[torch-*]  # gru from b\n")
    known = load_known_differences([tmp_path / "a.txt", tmp_path / "b.txt"])
    assert [e.origin for e in known.entries] == [f"{tmp_path / 'a.txt'}:1", f"{tmp_path / 'b.txt'}:1",
                                                 f"{tmp_path / 'b.txt'}:2"]
    assert known.reason_for("lstm-x[torch-cpu-float64]") == "from a"
    assert known.reason_for("gru-x[torch-cpu-float64]") == "gru from b"


@pytest.mark.parametrize("make, words", [
    (lambda d: d / "missing.txt", "known-differences file not found"),
    (lambda d: d, "known-differences file cannot be read"),
    (lambda d: (d / "bin.txt").write_bytes(b"\xff\xfe") and d / "bin.txt", "not UTF-8 text"),
])
def test_a_bad_file_is_a_one_line_error(tmp_path, make, words):
    with pytest.raises(ValueError, match=words) as info:
        load_known_differences([make(tmp_path)])
    assert "\n" not in str(info.value)


def test_a_bad_file_given_to_the_run_command_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "bad.txt").write_text("lstm-*[torch-*]\n")
    code = main(["run", "--known-differences", str(tmp_path / "bad.txt"), "--report-dir", str(tmp_path / "r")])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"conformance: error: {tmp_path / 'bad.txt'}:1: an entry needs '# reason' after the test id"]


def test_each_adapter_process_gets_the_same_lists():
    options = {"known_differences": ["/x/a.txt", "/x/b.txt"], "builtin_known_differences": False}
    assert known_difference_args(options) == ["--known-differences", "/x/a.txt", "--known-differences", "/x/b.txt",
                                              "--no-builtin-known-differences"]
    assert known_difference_args({"known_differences": []}) == []


# --- entries that matched no result -----------------------------------------------------------


def test_an_entry_that_explained_no_result_is_unmatched():
    known = parse_known_differences(TEXT)
    records = [result("gru-seq0-state0-random-b1t1[torch-cpu-float32]", "fail", "an exact id"),
               result("lstm-seq0-state1-random-b3t5-mask_empty_row[keras-jax-cpu-float32]", "pass")]
    assert unmatched(known, records) == ["*-mask_empty_row[keras-jax-*-float32]"]


def test_an_entry_over_an_unsupported_result_explains_nothing():
    known = parse_known_differences("gru-*[torch-*]  # torch has no such flag\n")
    records = [result("gru-seq0-state0-random-b1t1[torch-cpu-float32]", "unsupported")]
    assert unmatched(known, records) == ["gru-*[torch-*]"]


def test_an_entry_for_an_adapter_that_did_not_run_is_not_checked():
    known = parse_known_differences(TEXT)
    records = [result("gru-seq0-state0-random-b1t1[torch-cpu-float32]", "fail", "an exact id")]
    audit = audit_known(known, records, MATRIX, selected=False)
    assert audit.checked == ["gru-seq0-state0-random-b1t1[torch-cpu-float32]"] and audit.unmatched == []


def test_an_entry_for_a_device_that_was_only_skipped_is_not_checked():
    known = parse_known_differences("*[torch-cuda-*]  # a GPU finding\n")
    records = [result("gru-seq0-state0-random-b1t1[torch-cuda-float32]", "skipped"),
               result("gru-seq0-state0-random-b1t1[torch-cpu-float32]", "pass")]
    assert audit_known(known, records, MATRIX, selected=False).checked == []


def test_an_entry_without_brackets_is_checked_by_any_run():
    known = parse_known_differences("no-such-case*  # stale\n")
    assert unmatched(known, [result("gru-seq0-state0-random-b1t1[flax-cpu-float32]", "pass")]) == ["no-such-case*"]


def test_an_entry_shadowed_by_an_earlier_one_still_counts_as_matched():
    known = parse_known_differences("gru-*[torch-*]  # broad\ngru-seq0-*[torch-cpu-*]  # narrow\n")
    records = [result("gru-seq0-state0-random-b1t1[torch-cpu-float32]", "fail", "broad")]
    assert unmatched(known, records) == []


def test_with_k_only_an_entry_that_can_match_no_test_at_all_is_unmatched():
    known = parse_known_differences("gru-*-b1t1[torch-*-float64]  # not selected\nno-such-case[torch-*]  # typo\n")
    records = [result("gru-seq0-state0-random-b1t1[torch-cpu-float32]", "pass")]
    assert unmatched(known, records, selected=True) == ["no-such-case[torch-*]"]


def test_with_k_an_entry_for_a_dtype_the_case_lacks_can_match_no_test():
    known = parse_known_differences("lstm-*-mask_empty_row[torch-*-float64]  # that case has no float64\n")
    records = [result("lstm-seq0-state1-random-b3t5-mask_empty_row[torch-cpu-float64]", "pass"),
               result("gru-seq0-state0-random-b1t1[torch-cpu-float64]", "pass")]
    assert unmatched(known, records, selected=True) == ["lstm-*-mask_empty_row[torch-*-float64]"]


# --- the installed command, end to end (onnx-native runs the tutorial cases in about two seconds) ----

EXTRA = """\
no-such-case-*[onnx-native-*]            # a stale entry: no such case
lstm-*-tutorial[onnx-native-cpu-float64]  # onnxruntime LSTM has no float64 kernel (extra list)
*[torch-*]                                 # an entry for an adapter this run does not use
"""


def conformance_run(report_dir: Path, *args: str) -> subprocess.CompletedProcess:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the onnx extra)")
    script = Path(sys.executable).with_name("conformance")  # the installed console script
    extra = report_dir.parent / "extra.txt"
    extra.write_text(EXTRA)
    return subprocess.run([str(script), "run", "--adapter", "onnx-native", "--device", "cpu", "-k", "tutorial",
                           "--known-differences", str(extra), "--report-dir", str(report_dir), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def run_with_extra(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    report_dir = tmp_path_factory.mktemp("extra") / "reports"
    return conformance_run(report_dir), report_dir


def test_an_extra_entry_that_matches_nothing_is_named_in_stdout_html_and_results(run_with_extra):
    process, report_dir = run_with_extra
    assert process.returncode == 0, process.stderr
    assert "known-differences entries that matched no result (1):" in process.stdout
    assert "no-such-case-*[onnx-native-*]   # a stale entry: no such case" in process.stdout
    assert "<code>no-such-case-*[onnx-native-*]</code>" in (report_dir / "index.html").read_text()
    assert json.loads((report_dir / "results.json").read_text())["known_unmatched"] == [
        "no-such-case-*[onnx-native-*]"]


def test_entries_for_adapters_that_did_not_run_are_not_reported(run_with_extra):
    process, report_dir = run_with_extra
    document = json.loads((report_dir / "results.json").read_text())
    assert "*[torch-*]" not in document["known_checked"] and "[torch-*]" not in process.stdout
    assert "*[keras-jax-*-float64]" not in document["known_checked"]


def test_an_extra_entry_adds_to_the_builtin_list(run_with_extra):
    _, report_dir = run_with_extra
    document = json.loads((report_dir / "results.json").read_text())
    assert "lstm-*-tutorial[onnx-native-cpu-float64]" in document["known_checked"]
    assert "lstm-*-tutorial[onnx-native-cpu-float64]" not in document["known_unmatched"]
    assert document["counts"]["known"] == 12  # every float64 tutorial result: the built-in list's entry


def test_without_the_builtin_list_only_the_extra_entries_explain(tmp_path):
    process = conformance_run(tmp_path / "reports", "--no-builtin-known-differences")
    document = json.loads((tmp_path / "reports" / "results.json").read_text())
    known = [r for r in document["results"] if r["known"]]
    assert process.returncode == 1  # the gru and simple_rnn float64 errors are now unexpected
    assert {r["cell"] for r in known} == {"lstm"} and len(known) == document["counts"]["known"] == 4
    assert {r["known"] for r in known} == {
        "onnxruntime LSTM has no float64 kernel (extra list)"}
    assert document["counts"]["error"] == 8
    assert "8 unexpected (fail, error), 4 known differences" in process.stdout


# --- applied at collection: strict xfail marks ----------------------------------------------


def pytest_run(tmp_path: Path, entry: str) -> tuple[subprocess.CompletedProcess, dict]:
    """The conformance test straight under pytest, over one torch case, with ``entry`` as an extra list."""
    pytest.importorskip("torch", reason="torch is not installed (the torch extra)")
    extra = tmp_path / "extra.txt"
    extra.write_text(entry)
    process = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "conformance/test_conformance.py",
         "--adapter", "torch", "--device", "cpu", "--dtype", "float32", "-k", "gru-seq0-state0-random-b1t1",
         "--no-builtin-known-differences", "--known-differences", str(extra), "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent)
    return process, json.loads((tmp_path / "results.json").read_text())


def test_a_known_entry_over_a_passing_test_is_a_strict_xpass_and_the_record_stays_pass(tmp_path):
    process, document = pytest_run(tmp_path, "gru-seq0-state0-random-b1t1[torch-*]  # claims a failure\n")
    assert "[XPASS(strict)] known difference: claims a failure" in process.stdout
    assert [(r["status"], r["known"]) for r in document["results"]] == [("pass", None)]


def test_the_report_header_names_the_conformance_variables_and_the_adapters_devices(tmp_path):
    process, _ = pytest_run(tmp_path, "no-such-case  # unused\n")
    assert "conformance environment: " in process.stdout
    assert "conformance adapter torch: cpu" in process.stdout


# --- a user's list is the user's word: counted apart, named, called out when it explains much --


REPO = Path(__file__).resolve().parent.parent


def run_with_user_lists(tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path, Path, Path]:
    """An adapter wrong on every GRU and LSTM tutorial result (8), under two user lists: one entry
    for one result, then ``*``, which swallows the other 7."""
    narrow, broad = tmp_path / "narrow.txt", tmp_path / "everything.txt"
    narrow.write_text("gru-seq0-state0-constant-b1t3-tutorial[*]  # one result, explained\n")
    broad.write_text("# a list that declares everything away\n*  # all fine, trust me\n")
    report_dir = tmp_path / "reports"
    process = subprocess.run([str(Path(sys.executable).with_name("conformance")), "run", "--adapter",
                              "tests.hostile_adapters:NanAdapter", "--device", "cpu", "--dtype", "float32",
                              "-k", "tutorial and (gru or lstm)", "--known-differences", str(narrow),
                              "--known-differences", str(broad), "--report-dir", str(report_dir)],
                             capture_output=True, text=True, timeout=3600, cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    return process, report_dir, narrow, broad


def test_a_users_list_is_counted_apart_named_and_called_out_where_results_are_counted(tmp_path):
    process, report_dir, narrow, broad = run_with_user_lists(tmp_path)
    assert process.returncode == 0, process.stdout + process.stderr  # the lists explain every fail
    assert f"known differences from your list {narrow} (not the built-in, evidenced one): 1 result;" in process.stdout
    assert f"known differences from your list {broad} (not the built-in, evidenced one): 7 results; " \
           "per entry: '*' (line 2) 7" in process.stdout
    assert f"CALLED OUT: {broad} explains 7 of the 8 results adapter hostile-nan computed" in process.stdout
    assert f"CALLED OUT: {narrow}" not in process.stdout  # 1 of 8 is no more than 20%
    assert "8 known differences (fails and errors the known-differences lists explain; 8 of them by your " \
           "lists, not the built-in one)" in process.stdout

    lists = json.loads((report_dir / "results.json").read_text())["user_known_lists"]
    assert [(x["file"], x["results"], x["called_out"]) for x in lists] == [
        (str(narrow), 1, []), (str(broad), 7, ["hostile-nan"])]
    assert lists[1]["entries"] == [{"pattern": "*", "line": 2, "reason": "all fine, trust me", "results": 7}]
    assert lists[1]["adapters"] == {"hostile-nan": {"known": 7, "computed": 8}}

    html = (report_dir / "index.html").read_text()
    assert f"Known differences from your list {broad}, not the built-in one" in html
    assert "CALLED OUT: it explains 7 of the 8 results hostile-nan computed, more than 20%" in html
    junit = (report_dir / "junit.xml").read_text()
    assert junit.count(f"known difference from your list {broad}, not the built-in one") == 7
    assert f"{broad}: explained 7 results; CALLED OUT for hostile-nan: 7 of 8 results" in junit

    rendered = subprocess.run([str(Path(sys.executable).with_name("conformance")), "report",
                               str(report_dir / "results.json"), "-o", str(tmp_path / "again")],
                              capture_output=True, text=True, timeout=3600)
    assert rendered.returncode == 0, rendered.stderr  # the file passes the suite's own schema
    assert "CALLED OUT" in (tmp_path / "again" / "index.html").read_text()


# --- the first spellings: --known-failures and --no-builtin-known-failures still work, and say so ---


ORACLE = "tests.oracle_adapters:OracleAdapter"
STALE = "no-such-case[oracle-*]  # stale: matches nothing\n"
SAID = ["--known-failures is deprecated; use --known-differences",
        "--no-builtin-known-failures is deprecated; use --no-builtin-known-differences"]


@pytest.mark.parametrize("command", [["run"], ["compare", "a.json", "b.json"],
                                     ["sweep", "--adapter", "torch", "--versions", "torch==2.13.0"]])
def test_the_first_spellings_read_as_the_new_ones(command):
    only_lists = ["--known-failures"] if command[0] == "sweep" else ["--known-failures", "--no-builtin-known-failures"]
    old = [arg for option in only_lists for arg in ([option, "a.txt"] if "no-builtin" not in option else [option])]
    new = [arg.replace("failures", "differences") for arg in old]
    assert build_parser().parse_args(command + old) == build_parser().parse_args(command + new)


def test_a_run_under_the_first_spellings_uses_the_lists_and_says_so_once_each(tmp_path):
    """The supervisor passes the new spellings on: the adapter processes add no line of their own."""
    stale = tmp_path / "stale.txt"
    stale.write_text(STALE)
    process = subprocess.run(
        [str(Path(sys.executable).with_name("conformance")), "run", "--adapter", ORACLE, "--device", "cpu",
         "-k", "tutorial and lstm", "--known-failures", str(stale), "--known-failures", str(stale),
         "--no-builtin-known-failures", "--report-dir", str(tmp_path / "reports")],
        capture_output=True, text=True, timeout=3600, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert process.returncode == 0, process.stdout + process.stderr
    assert [line for line in process.stderr.splitlines() if "deprecated" in line] == [
        f"conformance: {said}" for said in SAID]
    document = json.loads((tmp_path / "reports" / "results.json").read_text())
    assert set(document["known_checked"]) == {"no-such-case[oracle-*]"}  # the built-in list was left out


def test_the_plugin_takes_the_first_spellings_with_a_deprecation_warning_each(tmp_path):
    """``--tf32`` too, the reduced-precision mode's first name: pytest's own warning, once each."""
    stale = tmp_path / "stale.txt"
    stale.write_text(STALE)
    process = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "default", "conformance/test_conformance.py",
         "--adapter", ORACLE, "--device", "cpu", "--dtype", "float32", "-k", "tutorial and lstm",
         "--no-builtin-known-failures", "--known-failures", str(stale), "--known-failures", str(stale), "--tf32",
         "--report-dir", str(tmp_path / "reports")],
        capture_output=True, text=True, timeout=3600, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert process.returncode == 0, process.stdout + process.stderr
    for said in [*SAID, "--tf32 is deprecated; use --reduced-precision-defaults"]:
        assert process.stdout.count(f"PytestDeprecationWarning: {said}") == 1, process.stdout
    document = json.loads((tmp_path / "reports" / "results.json").read_text())
    assert set(document["known_checked"]) == {"no-such-case[oracle-*]"}
    assert {r["run_info"]["reduced_precision_defaults"] for r in document["results"]} == {True}


# --- conditions on the case's properties --------------------------------------------------------

# Real cases, so that their properties come from the cases themselves: a fixed LSTM of batch 3 and
# 5 steps without an initial state, the same with an empty row and an initial state, and an unseen
# one of seed 1 (batch 3, 5 steps, no initial state) that no fixed id names.
FIXED_PLAIN = "lstm-seq0-state1-random-b3t5"
FIXED_EMPTY_ROW = "lstm-seq0-state1-random-b3t5-mask_empty_row"
UNSEEN_PLAIN = "lstm-seq0-state1-random-b3t5-unseen1-97-plain"
CAUSE = "lstm-*[tract-cpu-float32]  batch>=2 timesteps>=2 !initial_state  # clashing resolution\n"


def tract(case_id: str) -> str:
    return f"{case_id}[tract-cpu-float32]"


def test_an_entry_with_conditions_matches_the_cases_that_have_the_cause_whatever_their_id():
    known = parse_known_differences(CAUSE)
    assert known.reason_for(tract(FIXED_PLAIN)) == "clashing resolution"
    assert known.reason_for(tract(UNSEEN_PLAIN)) == "clashing resolution"  # redrawn from its seed and index


def test_an_entry_with_conditions_leaves_out_a_case_without_the_cause():
    known = parse_known_differences(CAUSE)
    assert known.reason_for(tract(FIXED_EMPTY_ROW)) is None  # it passes an initial state
    assert known.reason_for(tract("lstm-seq0-state1-random-b1t1")) is None  # batch 1


def test_the_properties_a_caller_holds_decide_over_the_id():
    known = parse_known_differences(CAUSE)
    properties = properties_of(FIXED_PLAIN) | {"initial_state": True}
    assert known.reason_for(tract(FIXED_PLAIN), None, properties) is None


def test_a_case_whose_properties_are_unknown_meets_no_condition():
    known = parse_known_differences(CAUSE)
    assert properties_of("lstm-not-a-case") is None
    assert known.reason_for(tract("lstm-not-a-case")) is None


@pytest.mark.parametrize("condition, matches", [
    ("cell=lstm,gru", True), ("cell!=lstm", False), ("units<=3", True), ("batch=1,2", False),
    ("masked_row", False), ("!mask", True), ("composite=layer", True), ("option=plain", True),
])
def test_each_kind_of_condition(condition, matches):
    known = parse_known_differences(f"*[tract-*]  {condition}  # why\n")
    assert (known.reason_for(tract(UNSEEN_PLAIN)) == "why") is matches


def test_conditions_and_requirements_mix_in_any_order():
    entry = parse_known_differences("*[tract-*]  !initial_state tract>=0.23 batch>=2  # why\n").entries[0]
    assert entry.requirements == ("tract>=0.23",)
    assert [c.text for c in entry.conditions] == ["!initial_state", "batch>=2"]
    assert entry.text == "*[tract-*] !initial_state batch>=2"


@pytest.mark.parametrize("word, message", [
    ("batchh", "'batchh' is neither a version requirement nor a condition on a case property"),
    ("!mask_empty", "'!mask_empty' is neither a version requirement nor a condition on a case property"),
    ("cell=lsm", "'cell=lsm': cell is one of simple_rnn, lstm, gru"),
    ("batch>=two", "'batch>=two': batch is compared with a whole number"),
    ("initial_state=1", "'initial_state=1': initial_state is true or false, written initial_state or !initial_state"),
    ("cell>lstm", "'cell>lstm': cell is a name, written cell=simple_rnn, cell!=simple_rnn"),
    ("!batch>=2", "'!batch>=2': '!' goes before a true-or-false property alone (!batch)"),
])
def test_a_bad_condition_is_a_one_line_error_naming_file_and_line(word, message):
    with pytest.raises(ValueError) as info:
        parse_known_differences(f"# a comment\n*[tract-*]  {word}  # why\n", "kf.txt")
    assert str(info.value).startswith(f"kf.txt:2: {message}")
    assert "\n" not in str(info.value)


def test_a_bad_condition_given_to_the_console_script_is_one_line_exit_2_and_nothing_written(tmp_path):
    (tmp_path / "bad.txt").write_text("*[tract-*]  cell=lsm  # why\n")
    report_dir = tmp_path / "reports"
    line = one_line_error(subprocess.run(
        [str(CONSOLE_SCRIPT), "run", "--adapter", "torch", "--known-differences", str(tmp_path / "bad.txt"),
         "--report-dir", str(report_dir)], capture_output=True, text=True, timeout=300))
    assert line == f"conformance: error: {tmp_path / 'bad.txt'}:1: 'cell=lsm': cell is one of simple_rnn, lstm, gru"
    assert not report_dir.exists()


# --- the audit of entries written for unseen cases ----------------------------------------------

# Batch >= 5: a cause the fixed matrix (batch 1 to 4) never reaches, only drawn cases could.
DRAWN_ONLY = "lstm-*[tract-cpu-float32]  batch>=5  # a cause only drawn cases reach\n"
RUN_MATRIX = {FIXED_PLAIN: ("float32",), UNSEEN_PLAIN: ("float32",)}


def audit_of(known, records, selected: bool = False):
    return audit_known(known, records, RUN_MATRIX, selected)


def test_an_entry_no_fixed_case_meets_is_neither_checked_nor_unmatched_by_a_fixed_run():
    audit = audit_of(parse_known_differences(DRAWN_ONLY), [result(tract(FIXED_PLAIN), "pass")])
    assert audit.checked == [] and audit.unmatched == []


def test_an_entry_no_fixed_case_meets_is_checked_by_a_run_whose_unseen_cases_it_matches():
    known = parse_known_differences("lstm-*[tract-cpu-float32]  batch=3 !initial_state unseen  # drawn only\n")
    passed = audit_of(known, [result(tract(FIXED_PLAIN), "pass"), result(tract(UNSEEN_PLAIN), "pass")])
    assert passed.unmatched_patterns == ["lstm-*[tract-cpu-float32] batch=3 !initial_state unseen"]
    failed = audit_of(known, [result(tract(FIXED_PLAIN), "pass"),
                              result(tract(UNSEEN_PLAIN), "fail", "drawn only")])
    assert failed.checked == ["lstm-*[tract-cpu-float32] batch=3 !initial_state unseen"] and failed.unmatched == []
    narrowed = audit_of(known, [result(tract(UNSEEN_PLAIN), "pass")], selected=True)
    assert narrowed.unmatched == []  # -k may have left out what it explains


def test_an_entry_a_fixed_case_meets_is_audited_as_before():
    known = parse_known_differences(CAUSE)
    assert audit_of(known, [result(tract(FIXED_PLAIN), "pass")]).unmatched_patterns == [
        "lstm-*[tract-cpu-float32] batch>=2 timesteps>=2 !initial_state"]
    assert audit_of(known, [result(tract(FIXED_PLAIN), "fail", "clashing resolution")]).unmatched == []


def test_an_entry_whose_pattern_matches_no_test_is_unmatched_whatever_its_conditions():
    known = parse_known_differences("lstn-*[tract-cpu-float32]  batch>=5  # a typo\n")
    assert audit_of(known, [result(tract(FIXED_PLAIN), "pass")], selected=True).unmatched_patterns == [
        "lstn-*[tract-cpu-float32] batch>=5"]
