"""FINDINGS.md's figures are counted from a results file, and only its marked sections are rewritten."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from conformance.commands.cli import main
from conformance.commands.exits import UsageError
from conformance.commands.findings import COUNTED, marker, render_sections, replace_sections
from conformance.matrix.cases import build_cases
from conformance.results.records import make_record, results_document, write_json_atomic

FINDINGS = Path(__file__).resolve().parent.parent / "FINDINGS.md"
KNOWN_REASON = "torch: a documented difference"
# (adapter, device) -> how many results of each outcome the run has (distinct numbers, so a swap shows).
PLAN = {("torch", "cpu"): {"pass": 5, "known": 3, "fail": 1, "error": 2, "unsupported": 4},
        ("flax", "cpu"): {"pass": 6, "known": 0, "fail": 0, "error": 0, "unsupported": 7}}
IDLE = (("torch", "cuda"), ("flax", "cuda"))  # nothing but skips
SKIP_REASON = "no cuda device visible to the framework on this machine"


def record(case, adapter: str, device: str, planned: str, number: int) -> dict:
    """One result with the planned outcome; unsupported reasons alternate between two."""
    status = {"known": "fail" if number % 2 else "error"}.get(planned, planned)
    message = {"unsupported": f"{adapter} cannot express reason {number % 2}",
               "skipped": f"{adapter}: {SKIP_REASON}"}.get(planned, f"{planned} message")
    return make_record(case=case, adapter=adapter, device=device, dtype=case.dtype, status=status,
                       message=message, known=KNOWN_REASON if planned == "known" else None)


def planned_document() -> dict:
    cases = itertools.cycle(case.for_dtype("float32") for case in build_cases())
    records = [record(next(cases), adapter, device, planned, number)
               for (adapter, device), plan in PLAN.items()
               for planned, count in plan.items() for number in range(count)]
    records += [record(next(cases), adapter, device, "skipped", 0) for adapter, device in IDLE]
    versions = {"torch": {"versions": {"torch": "2.13.0"}}, "flax": {"versions": {"flax": "0.12.8"}}}
    return results_document(records, complete=True, created="2026-12-01T00:00:00+00:00", fixtures_sha256="",
                            machine={"cpu": "a test CPU", "python": "3.11"}, adapters=versions)


def table_rows(markdown: str) -> list[list[str]]:
    """The body rows of the markdown table in ``markdown``, split into cells."""
    rows = [line.strip("|").split("|") for line in markdown.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:]]


def test_the_counts_table_has_each_adapter_and_devices_outcome_counts():
    rows = table_rows(render_sections(planned_document())["counts"])
    counted = {(row[0], row[1]): dict(zip(COUNTED, map(int, row[4:]))) for row in rows}
    assert counted == PLAN
    assert {(row[0], row[2], int(row[3])) for row in rows} == {
        ("torch", "torch 2.13.0", sum(PLAN["torch", "cpu"].values())),
        ("flax", "flax 0.12.8", sum(PLAN["flax", "cpu"].values()))}


def test_a_device_where_every_result_was_skipped_is_one_line_with_the_reason_not_a_row():
    counts = render_sections(planned_document())["counts"]
    assert ("cuda" not in {row[1] for row in table_rows(counts)})
    assert f"Every `cuda` result of torch, flax was skipped: {SKIP_REASON}." in counts.splitlines()


def test_unsupported_reasons_are_counted_per_adapter():
    rows = table_rows(render_sections(planned_document())["unsupported"])
    for adapter in ("torch", "flax"):
        total = PLAN[adapter, "cpu"]["unsupported"]
        assert {row[2]: int(row[1]) for row in rows if row[0] == adapter} == {
            f"{adapter} cannot express reason 0": (total + 1) // 2,
            f"{adapter} cannot express reason 1": total // 2}


def test_known_differences_are_counted_by_the_entrys_reason_not_the_message():
    rows = table_rows(render_sections(planned_document())["known"])
    assert rows == [["torch", str(PLAN["torch", "cpu"]["known"]), KNOWN_REASON]]


def test_only_the_marked_sections_are_rewritten_and_a_rewrite_is_idempotent():
    text = f"# Findings\nwritten by hand\n{marker('counts')}\nold\n{marker('counts', end=True)}\nafter\n"
    once = replace_sections(text, {"counts": "new"}, "FINDINGS.md")
    assert once == f"# Findings\nwritten by hand\n{marker('counts')}\nnew\n{marker('counts', end=True)}\nafter\n"
    assert replace_sections(once, {"counts": "new"}, "FINDINGS.md") == once


def test_a_file_without_a_sections_markers_is_a_usage_error_naming_them():
    with pytest.raises(UsageError, match="findings:known:start"):
        replace_sections("no markers here", {"known": "new"}, "FINDINGS.md")


def test_findings_md_has_the_markers_of_every_generated_section():
    text = FINDINGS.read_text(encoding="utf-8")
    for section in render_sections(planned_document()):
        assert text.count(marker(section)) == text.count(marker(section, end=True)) == 1


def test_the_command_rewrites_a_findings_file_from_a_results_file(tmp_path: Path, capsys):
    results, findings = tmp_path / "results.json", tmp_path / "FINDINGS.md"
    write_json_atomic(results, planned_document())
    findings.write_text("".join(f"{marker(s)}\n{marker(s, end=True)}\n" for s in ("counts", "unsupported", "known")))
    assert main(["findings", str(results), "--write", str(findings)]) == 0
    assert replace_sections(findings.read_text(), render_sections(planned_document()), "") == findings.read_text()
    assert main(["findings", str(results)]) == 0
    assert render_sections(planned_document())["known"] in capsys.readouterr().out


def test_the_float16_and_bfloat16_rows_are_counted_in_a_table_of_their_own():
    case = next(c for c in build_cases() if "bfloat16" in c.dtypes)
    records = [make_record(case=case.for_dtype(dtype), adapter="torch", device="cpu", dtype=dtype, status=status,
                           message="") for dtype, status in (("float32", "pass"), ("float16", "pass"),
                                                             ("bfloat16", "fail"))]
    document = results_document(records, complete=True, created="2026-12-01T00:00:00+00:00", fixtures_sha256="",
                                machine={}, adapters={})
    full, reduced = render_sections(document)["counts"].split("counted apart")
    counts = dict(zip(("results", *COUNTED), table_rows(full)[0][3:]))
    assert counts == {"results": "1", "pass": "1", "known": "0", "fail": "0", "error": "0", "unsupported": "0"}
    counts = dict(zip(("results", *COUNTED), table_rows(reduced)[0][3:]))
    assert counts == {"results": "2", "pass": "1", "known": "0", "fail": "1", "error": "0", "unsupported": "0"}
