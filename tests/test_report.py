"""The HTML report: escaping of untrusted text, the INCOMPLETE banner, totals, size.

Documents are built from real cases, the oracle's answer and deliberately
perturbed 'actual' outputs (``synthetic_document``), so no framework is needed.
``tests/test_report_browser.py`` reuses that builder; ``mixed_run_document``
(one small run with every outcome, known differences among them) is shared
with the results and JUnit tests.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conformance.matrix.cases import build_cases, replace_expected
from conformance.reference import expected_outputs
from conformance.report import html as report_html
from conformance.report import render_report
from conformance.report.html import heat_level, sci
from conformance.results.records import make_record, outcome_counts, results_document
from conformance.verdict.compare import compare_outputs

XSS = "<script>alert(1)</script>"
MACHINE = {"os": "Linux-6.1-x86_64", "python": "3.11.7", "cpu": "AMD EPYC 7B13", "gpu": "none"}
ADAPTERS = ("keras-tensorflow", "keras-jax", "keras-torch", "tf-keras", "torch", "flax",
            "onnx-keras", "onnx-torch", "onnx-native")
DEVICES = ("cpu", "cuda")
# What a synthetic result is, by share of a realistic run.
MIX = (("pass", 85), ("unsupported", 7), ("drift", 2), ("gate", 1), ("short", 1), ("error", 3), ("skipped", 1))


@functools.lru_cache(maxsize=1)
def solved_cases() -> tuple:
    """Every case of the matrix with the oracle's answer attached."""
    return tuple(replace_expected(case, tuple(expected_outputs(case))) for case in build_cases())


def perturbed_outputs(case, kind: str) -> list[np.ndarray]:
    """The oracle's answer in ``case.dtype``, spoilt the way ``kind`` says."""
    outputs = [np.asarray(e, dtype=case.dtype) for e in case.expected]
    if kind == "drift":  # an error that grows along the sequence, the classic float drift
        first = outputs[0].astype(np.float64)
        steps = first.shape[1] if first.ndim == 3 else 1
        growth = 1e-6 * 2.0 ** (12 * np.arange(steps) / steps)[None, :, None] if first.ndim == 3 else 1e-3
        outputs[0] = (first + growth).astype(case.dtype)
    elif kind == "gate":  # wrong everywhere, as a swapped gate order would be
        outputs = [(o + 0.05 * np.sin(np.arange(o.size).reshape(o.shape))).astype(case.dtype) for o in outputs]
    elif kind == "short":  # the wrong list: one tensor missing (or one too many)
        outputs = outputs[:-1] if len(outputs) > 1 else outputs * 2
    return outputs


def synthetic_record(case, adapter: str, device: str, kind: str, message: str = "") -> dict:
    """One record as the pytest plugin would write it, for an outcome of ``kind``."""
    common = {"case": case, "adapter": adapter, "device": device, "dtype": case.dtype,
              "device_name": "NVIDIA H100 80GB HBM3" if device == "cuda" else ""}
    if kind == "unsupported":
        return make_record(**common, status="unsupported",
                           message=message or f"{adapter} has no go_backwards flag (masks: right-padding only)")
    if kind == "skipped":
        return make_record(**common, status="skipped", message=message or f"{adapter} is not installed")
    if kind == "not_run":
        return make_record(**common, status="not_run", produced=False,
                           message=message or "not run: the run was interrupted (Ctrl-C or SIGTERM) before this test")
    if kind == "error":
        return make_record(**common, status="error", message=message or "RuntimeError: shape mismatch in cell",
                           stderr="Traceback (most recent call last):\n  File \"adapter.py\", line 12, in run\n"
                                  "RuntimeError: shape mismatch in cell\n")
    verdict = compare_outputs(case, perturbed_outputs(case, kind))
    return make_record(**common, status="pass" if verdict.passed else "fail",
                       message=message or verdict.message, verdict=verdict.to_dict(),
                       run_info={"kernel": "cudnn"} if device == "cuda" else {})


def pick_kind(test_key: str, mix=MIX) -> str:
    """A deterministic outcome for a result, with the shares of ``mix``."""
    roll = int.from_bytes(hashlib.sha256(test_key.encode()).digest()[:4], "little") % 100
    for kind, share in mix:
        if roll < share:
            return kind
        roll -= share
    return mix[0][0]


def synthetic_document(cases, adapters=ADAPTERS, devices=DEVICES, *, complete: bool = True,
                       mix=MIX, planted: dict | None = None) -> dict:
    """Every case x adapter x device x dtype; ``planted`` maps a test id to the kind it must have."""
    records = []
    for base in cases:
        for dtype in base.dtypes:
            case = base.for_dtype(dtype)
            for adapter in adapters:
                for device in devices:
                    test_id = f"{case.id}[{adapter}-{device}-{dtype}]"
                    kind = (planted or {}).get(test_id) or pick_kind(test_id, mix)
                    records.append(synthetic_record(case, adapter, device, kind))
    versions = {name: {"versions": {"numpy": "2.3.4", name.split("-")[0]: "1.0"}} for name in adapters}
    return results_document(records, complete=complete, created="2025-11-22T17:50:00+00:00",
                            fixtures_sha256="ab" * 32, machine=MACHINE, adapters=versions)


# kind -> how many results of it the mixed run has (distinct numbers, so a swapped count shows).
MIXED_RUN = {"pass": 5, "fail": 1, "error": 2, "known fail": 2, "known error": 1, "unsupported": 4, "skipped": 6,
             "not_run": 2}
MIXED_COUNTS = {"pass": 5, "fail": 1, "error": 2, "known": 3, "unsupported": 4, "skipped": 6, "not_run": 2}
KNOWN_REASON = "a documented finding (known_differences.txt)"


def mixed_run_document(known_unmatched=None) -> dict:
    """A small run of one adapter: passes, unexpected and known fails and errors, unsupported, skipped."""
    cases = [c.for_dtype(d) for c in solved_cases() if c.id.startswith(("lstm-seq1-state1", "gru-seq0-state1"))
             for d in c.dtypes]
    records = []
    for kind, count in MIXED_RUN.items():
        for _ in range(count):
            base = kind.removeprefix("known ")
            record = synthetic_record(cases[len(records)], "torch", "cpu", "gate" if base == "fail" else base)
            if kind.startswith("known"):
                record = dataclasses.replace(record, known=KNOWN_REASON)
            records.append(record)
    return results_document(records, complete=True, created="2025-11-22T17:50:00+00:00",
                            fixtures_sha256="ab" * 32, machine=MACHINE, adapters={"torch": {}},
                            known_checked=list(known_unmatched or []), known_unmatched=known_unmatched)


def small_document(**options) -> dict:
    cases = [c for c in solved_cases() if c.id.startswith(("lstm-seq1-state1-random", "gru-seq0-state1"))]
    return synthetic_document(cases[:12], adapters=("torch", "flax"), devices=("cpu",), **options)


# --- escaping -------------------------------------------------------------------------------


def test_untrusted_text_appears_only_escaped(tmp_path: Path) -> None:
    case = next(c for c in solved_cases() if c.id.startswith("gru-seq0-state1")).for_dtype("float32")
    records = [synthetic_record(case, XSS, "cpu", "error", message=f"ValueError: {XSS}"),
               synthetic_record(case, "torch", "cpu", "unsupported", message=XSS)]
    records[0] = dataclasses.replace(records[0], stderr=f"Traceback: {XSS}")
    document = results_document(records, complete=True, created=XSS, fixtures_sha256=XSS,
                                machine={"os": XSS}, adapters={XSS: {"versions": {XSS: XSS}}})
    html = render_report(document, tmp_path).read_text(encoding="utf-8")
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # the page's own single inline script is the only <script> element
    assert html.count("<script>") == 1


def test_regression_report_escapes_untrusted_text(tmp_path: Path) -> None:
    from conformance.report import render_regression
    from conformance.results.regression import compare_runs

    case = next(c for c in solved_cases() if c.id.startswith("gru-seq0-state1")).for_dtype("float32")
    baseline = results_document([synthetic_record(case, XSS, "cpu", "pass")], complete=True, created="a",
                                fixtures_sha256="x", machine={}, adapters={})
    current = results_document([synthetic_record(case, XSS, "cpu", "error", message=XSS)], complete=True,
                               created="b", fixtures_sha256="x", machine={}, adapters={})
    html = render_regression(compare_runs(baseline, current), baseline, current,
                             tmp_path / "regression.html").read_text(encoding="utf-8")
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --- header -----------------------------------------------------------------------------------


def test_incomplete_run_shows_the_banner(tmp_path: Path) -> None:
    html = render_report(small_document(complete=False), tmp_path).read_text(encoding="utf-8")
    assert "INCOMPLETE run" in html


def test_complete_run_has_no_banner(tmp_path: Path) -> None:
    html = render_report(small_document(complete=True), tmp_path).read_text(encoding="utf-8")
    assert 'class="banner incomplete"' not in html


def chip_counts(html: str) -> dict[str, int]:
    """The Totals card's chips, outcome -> count."""
    card = html.split("<h3>Totals</h3>", 1)[1].split("</div>", 1)[0]
    return {name: int(n) for name, n in re.findall(r'<span class="chip \w">(\w+)<span class="n">(\d+)</span>', card)}


def test_header_shows_totals_by_outcome(tmp_path: Path) -> None:
    document = small_document()
    html = render_report(document, tmp_path).read_text(encoding="utf-8")
    assert chip_counts(html) == outcome_counts(document["results"])
    assert f'total<span class="n">{len(document["results"])}</span>' in html


def test_header_says_how_many_are_unexpected_beside_how_many_are_known(tmp_path: Path) -> None:
    html = render_report(mixed_run_document(), tmp_path).read_text(encoding="utf-8")
    header = html.split('<header class="top">', 1)[1].split("</header>", 1)[0]
    assert '<span class="verdict bad">3 unexpected</span><span class="verdict known">3 known</span>' in header


def test_a_run_whose_every_fail_is_known_reads_zero_unexpected(tmp_path: Path) -> None:
    document = mixed_run_document()
    for record in document["results"]:
        if record["status"] in ("fail", "error"):
            record["known"] = KNOWN_REASON
    html = render_report(document, tmp_path).read_text(encoding="utf-8")
    assert '<span class="verdict ok">0 unexpected</span><span class="verdict known">6 known</span>' in html
    assert chip_counts(html)["fail"] == chip_counts(html)["error"] == 0


def test_totals_and_adapter_table_count_known_apart_from_unexpected(tmp_path: Path) -> None:
    html = render_report(mixed_run_document(), tmp_path).read_text(encoding="utf-8")
    assert chip_counts(html) == MIXED_COUNTS
    row = html.split("<td><b>torch</b></td>", 1)[1].split("</tr>", 1)[0]
    assert [int(n) for n in re.findall(r'<td class="num[^"]*">(\d+)</td>', row)] == list(MIXED_COUNTS.values())


def cpu_run_with_skipped_cuda_rows(adapter_info: dict) -> dict:
    """One adapter on a machine without a GPU: cpu rows ran, cuda rows were skipped."""
    cases = [c.for_dtype("float32") for c in solved_cases()[:3]]
    records = [synthetic_record(case, "torch", "cpu", "pass") for case in cases]
    for case in cases:
        record = synthetic_record(case, "torch", "cuda", "skipped", "torch: no cuda device visible")
        records.append(dataclasses.replace(record, device_name=""))
    return results_document(records, complete=True, created="2025-11-22T17:50:00+00:00",
                            fixtures_sha256="ab" * 32, machine=MACHINE, adapters={"torch": adapter_info})


def adapter_table_row(html: str, adapter: str) -> str:
    return html.split(f"<td><b>{adapter}</b></td>", 1)[1].split("</tr>", 1)[0]


def test_the_adapter_table_lists_only_devices_the_framework_saw(tmp_path: Path) -> None:
    info = {"devices": ["cpu"], "device_names": {"cpu": "x86_64"}, "versions": {"torch": "2.13.0"}}
    row = adapter_table_row(render_report(cpu_run_with_skipped_cuda_rows(info), tmp_path).read_text("utf-8"),
                            "torch")
    assert "cpu (x86_64)" in row and "cuda" not in row


def test_without_the_adapters_own_list_skipped_rows_claim_no_device(tmp_path: Path) -> None:
    row = adapter_table_row(render_report(cpu_run_with_skipped_cuda_rows({}), tmp_path).read_text("utf-8"),
                            "torch")
    assert "cpu" in row and "cuda" not in row


def test_a_known_difference_is_its_own_kind_of_matrix_cell(tmp_path: Path) -> None:
    html = render_report(mixed_run_document(), tmp_path).read_text(encoding="utf-8")
    body = html.split('<table id="matrix">', 1)[1].split("</table>", 1)[0].split("<tbody>", 1)[1]
    assert Counter(re.findall(r'<td class="([pfeuks])"', body)) == {"p": 5, "f": 1, "e": 2, "k": 3, "u": 4, "s": 6}


def test_a_known_panel_names_its_reason_and_keeps_its_diff(tmp_path: Path) -> None:
    html = render_report(mixed_run_document(), tmp_path).read_text(encoding="utf-8")
    known_panels = re.findall(r'<details class="panel k".*?</details>', html, flags=re.S)
    assert len(known_panels) == 3
    assert all("known difference (" in p and KNOWN_REASON in p for p in known_panels)
    assert sum('<table class="t out">' in p for p in known_panels) == 2  # the two known fails


def test_known_differences_entries_that_matched_no_result_are_listed(tmp_path: Path) -> None:
    document = mixed_run_document(known_unmatched=["no-such-case[torch-*]"])
    html = render_report(document, tmp_path).read_text(encoding="utf-8")
    assert '<a class="verdict stale" href="#known-unmatched">1 known-differences entry matched no result' in html
    card = html.split('id="known-unmatched"', 1)[1].split("</div>", 1)[0]
    assert "<code>no-such-case[torch-*]</code>" in card


def test_no_list_of_unmatched_entries_when_every_entry_matched(tmp_path: Path) -> None:
    html = render_report(mixed_run_document(known_unmatched=[]), tmp_path).read_text(encoding="utf-8")
    assert 'id="known-unmatched"' not in html and "verdict stale" not in html


def test_relative_error_reads_not_defined_where_every_expected_value_is_zero(tmp_path: Path) -> None:
    case = next(c for c in solved_cases() if c.id.startswith("gru-seq0-state1")).for_dtype("float32")
    zero = replace_expected(case, tuple(np.zeros_like(e) for e in case.expected))
    verdict = compare_outputs(zero, [np.full_like(e, 1e-3, dtype=np.float32) for e in case.expected])
    assert [t.max_rel for t in verdict.tensors] == [None, None]
    record = make_record(case=zero, adapter="torch", device="cpu", dtype="float32", status="fail",
                         message=verdict.message, verdict=verdict.to_dict())
    html = render_report(results_document([record], complete=True, created="", fixtures_sha256="", machine={},
                                          adapters={}), tmp_path).read_text(encoding="utf-8")
    table = html.split('<table class="t out">', 1)[1].split("</table>", 1)[0]
    assert table.count('title="not defined: every expected value of this tensor is 0">n/a') == 2
    assert "e30" not in table


def test_header_shows_machine_versions_and_fixture_hash(tmp_path: Path) -> None:
    html = render_report(small_document(), tmp_path).read_text(encoding="utf-8")
    for text in ("AMD EPYC 7B13", "3.11.7", "ab" * 32, "numpy 2.3.4", "2025-11-22T17:50:00+00:00"):
        assert text in html


# --- matrix and panels --------------------------------------------------------------------


def test_every_result_is_one_matrix_cell(tmp_path: Path) -> None:
    document = small_document()
    html = render_report(document, tmp_path).read_text(encoding="utf-8")
    body = html.split('<table id="matrix">', 1)[1].split("</table>", 1)[0].split("<tbody>", 1)[1]
    assert len(re.findall(r'<td class="[pfeuksn]"', body)) == len(document["results"])


def test_only_results_that_did_not_pass_get_a_panel(tmp_path: Path) -> None:
    document = small_document()
    html = render_report(document, tmp_path).read_text(encoding="utf-8")
    not_passing = [r for r in document["results"] if r["status"] != "pass"]
    assert html.count('<details class="panel') == len(not_passing)
    for record in not_passing:
        assert f'<span class="tid">{record["test_id"]}</span>' in html


def test_a_failing_report_opens_on_its_unexpected_results_and_folds_the_unsupported_ones(tmp_path: Path) -> None:
    html = render_report(mixed_run_document(), tmp_path).read_text(encoding="utf-8")
    unexpected = html.split('<div class="card" id="unexpected">', 1)[1].split("</div>", 1)[0]
    listed = re.findall(r'<a href="#r\d+">([^<]+)</a>', unexpected)
    assert len(listed) == MIXED_COUNTS["fail"] + MIXED_COUNTS["error"]
    assert html.index('id="unexpected"') < html.index('<div class="cards">')  # before everything else
    details = html.split('<div id="details">', 1)[1]
    order = re.findall(r'<details class="panel (\w)"', details)
    assert order[:3] == ["f", "e", "e"] and order[3:6] == ["k", "k", "k"]
    shown, folded = details.split('<details class="folded" id="folded-panels">', 1)
    assert re.findall(r'<details class="panel (\w)"', folded) == ["u"] * 4 + ["s"] * 6 + ["n"] * 2
    assert not re.findall(r'<details class="panel [usn]"', shown)


def test_the_adapters_table_wraps_the_versions_to_fit_a_laptop_screen(tmp_path: Path) -> None:
    html = render_report(mixed_run_document(), tmp_path).read_text(encoding="utf-8")
    assert re.search(r"td\.versions \{ max-width: \d+px; \}", html)


def test_failing_panel_shows_divergence_and_heat_map(tmp_path: Path) -> None:
    case = next(c for c in solved_cases() if c.id == "lstm-seq1-state1-random-b4t48").for_dtype("float32")
    record = synthetic_record(case, "torch", "cpu", "drift")
    assert record.status == "fail"
    document = results_document([record], complete=True, created="", fixtures_sha256="", machine={},
                                adapters={})
    html = render_report(document, tmp_path).read_text(encoding="utf-8")
    assert "first divergence at" in html
    assert html.count('<table class="hm">') == 3  # output, h, c
    # drift grows along time: the first step is within tolerance, the last is far above it
    output_map = html.split('<table class="hm">', 1)[1].split("</table>", 1)[0]
    first_row = output_map.split("<th>u0", 1)[1].split("<tr", 1)[0]
    levels = [int(n) for n in re.findall(r'class="h(\d+)"', first_row)]
    assert len(levels) == 48 and levels[0] <= 5 < levels[-1]


def test_records_with_only_an_id_and_a_status_still_render(tmp_path: Path) -> None:
    document = {"schema": "rnn-conformance/results/1", "results": [
        {"test_id": "x[torch-cpu-float32]", "status": "skipped"},
        {"test_id": "y[torch-cpu-float32]", "status": "fail", "message": "boom"}]}
    html = render_report(document, tmp_path).read_text(encoding="utf-8")
    assert "INCOMPLETE run" in html and "boom" in html


def test_empty_run_renders(tmp_path: Path) -> None:
    document = results_document([], complete=True, created="", fixtures_sha256="", machine={}, adapters={})
    assert "This run has no results." in render_report(document, tmp_path).read_text(encoding="utf-8")


def test_heat_level_is_anchored_at_atol() -> None:
    assert heat_level(0.0, 1e-5) == 0
    assert heat_level(1e-5, 1e-5) == 5
    assert heat_level(2e-5, 1e-5) == 6
    assert heat_level(1e-12, 1e-5) == 1
    assert heat_level(float("inf"), 1e-5) == 10


def test_numbers_are_short() -> None:
    assert sci(3.2145e-07) == "3.2e-7"
    assert sci(None) == "–"
    assert sci("inf") == "inf"


# --- size ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_ten_thousand_results_make_a_few_megabytes(tmp_path: Path) -> None:
    document = synthetic_document(solved_cases())
    assert len(document["results"]) >= 10_000
    size = render_report(document, tmp_path).stat().st_size
    assert size < 4_000_000, f"report is {size / 1e6:.1f} MB for {len(document['results'])} results"


# --- a large report: panels in details files beside index.html ------------------------------


def details_markup(directory: Path) -> dict[str, str]:
    """Each details file beside ``index.html`` -> the panel markup it hands to the page."""
    files = {}
    for path in sorted(directory.glob(f"{report_html.DETAILS_PREFIX}*.js")):
        match = re.fullmatch(r"conformanceDetails\((\d+), (\".*\")\);\n", path.read_text("utf-8"), flags=re.S)
        assert match, f"{path.name} is not one call of conformanceDetails"
        files[path.name] = json.loads(match.group(2))
    return files


@pytest.fixture
def small_inline_limit(monkeypatch):
    """A report of more than 3 panels counts as large, and a details file holds about 3 panels."""
    monkeypatch.setattr(report_html, "INLINE_PANELS", 3)
    monkeypatch.setattr(report_html, "DETAILS_FILE_CHARS", 3000)


def test_a_large_report_keeps_its_panels_in_details_files_beside_it(tmp_path: Path, small_inline_limit) -> None:
    document = mixed_run_document()
    html = render_report(document, tmp_path).read_text(encoding="utf-8")
    assert '<details class="panel' not in html
    files = details_markup(tmp_path)
    assert len(files) > 2
    for name in files:
        assert f'data-src="{name}"' in html
    markup = "".join(files.values())
    not_passing = [r["test_id"] for r in document["results"] if r["status"] != "pass"]
    assert sorted(re.findall(r'<span class="tid">([^<]+)</span>', markup)) == sorted(not_passing)
    assert re.findall(r'<details class="panel \w" id="r(\d+)"', markup) == [str(n) for n in range(len(not_passing))]
    assert "script-src 'unsafe-inline' 'self'" in html  # the page may load the files beside it


def test_a_details_file_holds_only_shown_or_only_folded_panels(tmp_path: Path, small_inline_limit) -> None:
    html = render_report(mixed_run_document(), tmp_path).read_text(encoding="utf-8")
    shown, folded = html.split('<details class="folded" id="folded-panels">', 1)
    for name, markup in details_markup(tmp_path).items():
        kinds = set(re.findall(r'<details class="panel (\w)"', markup))
        assert kinds <= {"f", "e", "k"} and name in shown or kinds <= {"u", "s", "n"} and name in folded


def test_a_small_report_stays_one_file(tmp_path: Path) -> None:
    render_report(mixed_run_document(), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["index.html"]


def test_untrusted_text_in_a_details_file_appears_only_escaped(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(report_html, "INLINE_PANELS", 0)
    case = next(c for c in solved_cases() if c.id.startswith("gru-seq0-state1")).for_dtype("float32")
    record = dataclasses.replace(synthetic_record(case, XSS, "cpu", "error", message=f"ValueError: {XSS}\"); x("),
                                 stderr=f"Traceback: {XSS}")
    document = results_document([record], complete=True, created="", fixtures_sha256="", machine={}, adapters={})
    render_report(document, tmp_path)
    (markup,) = details_markup(tmp_path).values()  # one call of a JSON string: nothing else runs
    assert XSS not in markup and "&lt;script&gt;alert(1)&lt;/script&gt;" in markup


def test_the_details_files_of_an_earlier_report_are_removed_and_a_planted_link_not_followed(
        tmp_path: Path, small_inline_limit, monkeypatch) -> None:
    render_report(mixed_run_document(), tmp_path)
    assert details_markup(tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-precious.txt"
    outside.write_text("someone else's file")
    (tmp_path / f"{report_html.DETAILS_PREFIX}planted-0.js").symlink_to(outside)
    monkeypatch.setattr(report_html, "INLINE_PANELS", 500)
    render_report(mixed_run_document(), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["index.html"]
    assert outside.read_text() == "someone else's file"


def test_a_large_matrix_draws_its_first_rows_and_keeps_the_others_as_inert_text(tmp_path: Path, monkeypatch) -> None:
    """Every result is still one cell: the first rows in the table, the others in the inert
    ``#matrix-rest`` text (no script: its type is not JavaScript) that the page turns into rows."""
    monkeypatch.setattr(report_html, "WHOLE_MATRIX_ROWS", 2)
    monkeypatch.setattr(report_html, "FIRST_ROWS", 2)
    document = small_document()
    html = render_report(document, tmp_path).read_text(encoding="utf-8")
    table = html.split('<table id="matrix">', 1)[1].split("</table>", 1)[0].split("<tbody>", 1)[1]
    rest = html.split('<script type="text/html" id="matrix-rest">', 1)[1].split("</script>", 1)[0]
    assert len(re.findall(r'<tr data-c="', table)) == 2
    cells = re.findall(r'<td class="[pfeuksn]"', table + rest)
    assert len(cells) == len(document["results"])
    assert html.count("<script>") == 1  # the page's own script is still the only one that runs
