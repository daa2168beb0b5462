"""The HTML reports in a real headless browser: filters, the diff panel, no console errors.

Needs Debian's chromium (``apt-get install chromium``; another binary can be named
with ``CONFORMANCE_CHROMIUM=/path``) and the ``playwright`` Python package; its own
browser download (``playwright install``) is not used.
Without either, every test here is skipped with the reason. Screenshots are
saved under ``reports/`` for a person to look at, and the first paint of a
full-matrix-sized report in ``reports/first-paint.json`` (recorded, never asserted).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conformance.report import html as report_html
from conformance.report import render_regression, render_report
from conformance.results.reading import load_any
from conformance.results.records import records_of
from conformance.results.regression import compare_runs
from tests.commandline import CONSOLE_SCRIPT
from tests.test_report import details_markup, solved_cases, synthetic_document

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("CONFORMANCE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REPORTS = Path(__file__).resolve().parents[1] / "reports"
ADAPTERS = ("keras-tensorflow", "torch", "flax", "onnx-native")
DRIFT = "lstm-seq1-state1-random-b4t48[torch-cpu-float32]"
PLANTED = {DRIFT: "drift", "lstm-seq1-state1-random-b4t48[flax-cpu-float32]": "pass",
           "gru-seq0-state1-random-b3t5[onnx-native-cpu-float32]": "short",
           "gru-seq0-state1-random-b3t5[flax-cpu-float32]": "error"}
SIZE = {"width": 1440, "height": 900}
WAIT_MS = 300_000


def report_cases() -> list:
    return [c for c in solved_cases() if c.id.startswith(("lstm-seq1-state1", "gru-seq0-state1"))
            and "bidi" not in c.id]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"chromium is not installed ({CHROMIUM} missing): apt-get install chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def document() -> dict:
    return synthetic_document(report_cases(), adapters=ADAPTERS, devices=("cpu",), planted=PLANTED)


@pytest.fixture(scope="module")
def report_path(document, tmp_path_factory) -> Path:
    return render_report(document, tmp_path_factory.mktemp("report"))


@contextmanager
def opened(browser, path: Path):
    """``path`` opened from disk in a new page; the test fails if the page logs an error. Waits give a
    slow, shared machine minutes (a safety net, not a measure: each waits on its event)."""
    page = browser.new_page(viewport=SIZE)
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri())
    yield page
    page.close()
    assert errors == [], f"console errors: {errors}"


@pytest.fixture
def page(browser, report_path):
    """The report opened from disk; the test fails if the page logs an error."""
    with opened(browser, report_path) as page:
        yield page


def visible_rows(page) -> int:
    return page.locator("#matrix tbody tr:not(.grp):visible").count()


def test_report_opens_from_disk_and_counts_every_case(page, document) -> None:
    cases = {r["case_id"] for r in document["results"]}
    assert visible_rows(page) == len(cases)
    assert page.locator("#shown").inner_text().startswith(f"{len(cases)} of {len(cases)} cases")
    REPORTS.mkdir(exist_ok=True)
    page.screenshot(path=str(REPORTS / "report-screenshot.png"))


def test_status_filter_hides_rows_and_cells(page, document) -> None:
    failing_cases = {r["case_id"] for r in document["results"] if r["status"] == "fail"}
    for status in ("pass", "unsupported", "error", "skipped"):
        page.locator(f"#filters input[name=status][value={status[0]}]").uncheck()
    assert visible_rows(page) == len(failing_cases) > 0
    assert page.locator("#matrix td.p").first.is_hidden()
    assert page.locator("#matrix td.f").first.is_visible()
    assert page.locator("#details details.panel.u").first.is_hidden()


def test_adapter_filter_hides_other_columns(page) -> None:
    page.select_option("#adapter-filter", "flax")
    headers = page.locator("#matrix thead tr.cols th:visible")
    assert headers.count() == 4  # flax on cpu: float32, float64, float16, bfloat16
    first_row = page.locator("#matrix tbody tr:not(.grp)").first
    assert first_row.locator("td:visible").count() == 4


def test_cell_filter_and_search_narrow_the_rows(page, document) -> None:
    page.select_option("#cell-filter", "gru")
    gru_cases = {r["case_id"] for r in document["results"] if r["cell"] == "gru"}
    assert visible_rows(page) == len(gru_cases)
    page.fill("#search", "mask_holes")
    assert visible_rows(page) == len({c for c in gru_cases if "mask_holes" in c})
    page.fill("#search", "no such case")
    assert visible_rows(page) == 0


def test_clicking_a_failing_cell_opens_its_diff_panel(page) -> None:
    drawer = page.locator("#drawer")
    assert drawer.is_hidden()
    row = page.locator("#matrix tbody tr", has=page.locator("th", has_text="random-b4t48")).first
    columns = [th.get_attribute("title") for th in page.locator("#matrix thead tr.cols th").all()]
    row.locator("td").nth(columns.index("torch-cpu-float32")).locator("a").click()
    assert drawer.is_visible()
    assert page.locator("#drawer-title").inner_text() == DRIFT
    body = page.locator("#drawer-body")
    assert body.locator("table.out").is_visible()
    for tensor in ("output", "h", "c"):
        assert body.locator("table.out td b", has_text=tensor).first.is_visible()
    assert body.get_by_text("output: first divergence at").is_visible()
    assert body.locator("table.hm").count() == 3
    body.locator("table.hm td").last.hover()
    page.screenshot(path=str(REPORTS / "report-panel-screenshot.png"))
    page.keyboard.press("Escape")
    assert drawer.is_hidden()
    assert page.locator("#details").locator(f"details.panel:has(.tid:text-is('{DRIFT}'))").count() == 1


def test_panel_list_expands(page) -> None:
    page.locator("button[data-expand='1']").click()
    panel = page.locator("#details details.panel.e").first
    assert panel.locator("pre.stderr").is_visible()


def test_regression_report_opens_without_errors(browser, document, tmp_path) -> None:
    regressed = "gru-seq0-state1-random-b3t5-initial_state[torch-cpu-float32]"
    current = synthetic_document(report_cases(), adapters=ADAPTERS, devices=("cpu",),
                                 planted={**PLANTED, regressed: "gate"})
    regression = compare_runs(document, current)
    assert regressed in [c.test_id for c in regression.newly_failing]
    path = render_regression(regression, document, current, tmp_path / "regression.html")
    page = browser.new_page(viewport=SIZE)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri())
    assert page.locator(".banner.regressed").is_visible()
    change = page.locator("details.change", has=page.locator(f".tid:text-is('{regressed}')"))
    change.locator("summary").click()
    assert change.locator(".side-by-side").is_visible()
    assert change.locator("table.hm").count() == 4  # output and h, baseline and current
    change.scroll_into_view_if_needed()
    page.screenshot(path=str(REPORTS / "regression-screenshot.png"))
    page.close()
    assert errors == [], f"console errors: {errors}"


FOURTEEN = ("keras-tensorflow", "keras-jax", "keras-torch", "tf-keras", "torch", "flax", "onnx-keras", "onnx-torch",
            "onnx-native", "onnx-native-layout1", "openvino", "openvino-inputs", "tract", "tract-inputs")
LONG_VERSIONS = {"keras": "3.15.1", "keras backend": "tensorflow", "tensorflow": "2.21.0", "tf2onnx": "1.17.0",
                 "onnx": "1.23.2", "onnxruntime": "1.32.0",
                 "onnxruntime providers": "TensorrtExecutionProvider, CUDAExecutionProvider, CPUExecutionProvider",
                 "openvino": "2026.4.1-22982-e213a147257-releases/2026/4"}


def test_the_adapters_table_of_fourteen_adapters_fits_a_laptop_screen(browser, tmp_path) -> None:
    """The counts column stays on a 1400 px screen however long an adapter's versions are."""
    document = synthetic_document(report_cases()[:2], adapters=FOURTEEN, devices=("cpu",))
    for entry in document["adapters"].values():
        entry["versions"] = dict(LONG_VERSIONS)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(render_report(document, tmp_path).as_uri())
    right = page.evaluate("Math.max(...[...document.querySelector('table.grid').querySelectorAll('th')]"
                          ".map(th => th.getBoundingClientRect().right))")
    assert right <= 1400, f"the adapters table reaches {right:.0f} px"
    page.close()


# --- a large report: panels in details files beside it, the matrix drawn as the reader scrolls -----


@pytest.fixture(scope="module")
def large_report_path(document, tmp_path_factory) -> Path:
    """The same run drawn as a large report is: every panel in a details file, 5 matrix rows at first."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report_html, "INLINE_PANELS", 0)
        patch.setattr(report_html, "DETAILS_FILE_CHARS", 20_000)
        patch.setattr(report_html, "WHOLE_MATRIX_ROWS", 5)
        patch.setattr(report_html, "FIRST_ROWS", 5)
        path = render_report(document, tmp_path_factory.mktemp("large"))
    assert len(list(path.parent.glob(f"{report_html.DETAILS_PREFIX}*.js"))) > 2
    return path


@pytest.fixture
def large_page(browser, large_report_path):
    """The large report opened from disk (``large_page.goto(hash)`` again for a link); no console error."""
    with opened(browser, large_report_path) as page:
        yield page


def test_a_large_report_opens_a_failing_cells_panel_from_its_details_file(large_page) -> None:
    page = large_page
    assert page.locator("details.panel").count() == 0  # nothing loaded until it is needed
    page.fill("#search", DRIFT.split("[")[0])
    row = page.locator("#matrix tbody tr:not(.grp):visible").first
    columns = [th.get_attribute("title") for th in page.locator("#matrix thead tr.cols th").all()]
    row.locator("td").nth(columns.index("torch-cpu-float32")).locator("a").click()
    body = page.locator("#drawer-body")
    assert page.locator("#drawer-title").inner_text() == DRIFT
    assert body.get_by_text("output: first divergence at").is_visible()
    assert body.locator("table.hm").count() == 3


def test_a_large_reports_matrix_draws_more_rows_when_scrolled_or_asked(large_page, document) -> None:
    page, cases = large_page, len({r["case_id"] for r in document["results"]})
    assert visible_rows(page) == 5
    assert page.locator("#shown").inner_text().startswith(f"{cases} of {cases} cases")
    assert page.locator("p.more-rows").inner_text().startswith(f"5 of the {cases} cases drawn")
    page.set_viewport_size({"width": SIZE["width"], "height": 120})  # a screen the 5 rows overflow
    page.locator(".matrix-wrap").evaluate("wrap => { wrap.scrollTop = wrap.scrollHeight; }")
    page.locator("#matrix tbody tr:not(.grp):visible").nth(5).wait_for()
    while page.locator("#more-rows").is_visible():
        page.locator("#more-rows").click()
    assert visible_rows(page) == cases


def test_a_link_to_a_panel_of_a_large_report_opens_it(browser, large_report_path, document) -> None:
    ids = report_html.panel_ids_for(records_of(document))
    test_id = next(t for t, panel in ids.items() if panel == "r3")
    page = browser.new_page(viewport=SIZE)
    page.goto(large_report_path.as_uri() + "#r3")
    page.locator("#drawer").wait_for(state="visible")
    assert page.locator("#drawer-title").inner_text() == test_id
    page.close()


def test_a_large_reports_folded_results_load_when_opened(large_page) -> None:
    folded = large_page.locator("#folded-panels")
    folded.evaluate("folded => { folded.scrollIntoView(); folded.open = true; }")  # a click, wherever it has moved
    folded.locator("details.panel").first.wait_for(state="attached")
    assert folded.locator("details.panel").count() > 0
    assert "could not load" not in folded.inner_text()


def test_a_large_report_copied_without_its_details_files_says_so(browser, large_report_path, tmp_path) -> None:
    alone = tmp_path / "index.html"
    alone.write_bytes(large_report_path.read_bytes())
    page = browser.new_page(viewport=SIZE)
    page.goto(alone.as_uri())
    page.fill("#search", DRIFT.split("[")[0])
    page.locator("#matrix tbody tr:visible td a").first.click()
    page.locator("#drawer").wait_for(state="visible")
    assert "it belongs beside this index.html" in page.locator("#drawer-title").inner_text()
    page.close()


# --- how fast a full-matrix-sized report opens (recorded, never asserted: it is the machine's speed) --

REAL_MIX = (("skipped", 42), ("pass", 35), ("unsupported", 13), ("error", 6), ("drift", 2), ("gate", 2))
# Waits for the first-contentful-paint entry (buffered: one that came before the call counts).
PAINT = """() => new Promise(resolve => new PerformanceObserver((list, observer) => {
  const paint = list.getEntries().find(e => e.name === "first-contentful-paint");
  if (!paint) return;
  observer.disconnect();
  resolve({ first_contentful_paint_ms: paint.startTime,
            load_ms: performance.getEntriesByType("navigation")[0].loadEventEnd });
}).observe({ type: "paint", buffered: true }))"""


def opening_times(browser, path: Path, times: int = 3) -> dict:
    """The medians of ``times`` openings from disk: first contentful paint, and the load event (the whole
    page drawn and its script run), in milliseconds since navigation start."""
    samples = []
    for _ in range(times):
        page = browser.new_page(viewport=SIZE)
        page.goto(path.as_uri(), wait_until="load", timeout=300_000)
        samples.append(page.evaluate(PAINT))
        page.close()
    return {key: round(statistics.median(s[key] for s in samples)) for key in samples[0]} | {
        "index_html_bytes": path.stat().st_size}


def first_paint_document() -> tuple[str, dict]:
    """The run to draw: $CONFORMANCE_FIRST_PAINT_RESULTS (a results file or report dir, e.g. a merged
    full matrix) when set, else a synthetic run of the whole matrix with a real run's mix of outcomes."""
    given = os.environ.get("CONFORMANCE_FIRST_PAINT_RESULTS")
    if given:
        return given, load_any([Path(given)])
    return "synthetic", synthetic_document(solved_cases(), mix=REAL_MIX)


@pytest.mark.slow
def test_the_first_paint_of_a_full_matrix_sized_report_is_recorded(browser, tmp_path) -> None:
    """Written to reports/first-paint.json: the report as written, beside the same run as one file with
    every panel and row inline (the report before details files). BENCHMARKS.md cites the figures."""
    source, document = first_paint_document()
    written = render_report(document, tmp_path / "written")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report_html, "INLINE_PANELS", len(document["results"]))
        patch.setattr(report_html, "WHOLE_MATRIX_ROWS", len(document["results"]))
        one_file = render_report(document, tmp_path / "one-file")
    assert list(written.parent.glob(f"{report_html.DETAILS_PREFIX}*.js"))
    figures = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "source": source,
               "results": len(document["results"]),
               "chromium": browser.version, "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
               "written": opening_times(browser, written), "one_file": opening_times(browser, one_file)}
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "first-paint.json").write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    print(f"\nfirst paint: {json.dumps(figures)}")


def test_the_report_command_writes_a_large_reports_details_files_beside_it(tmp_path: Path) -> None:
    """A run with more panels than INLINE_PANELS, through the console script as a user runs it."""
    document = synthetic_document(solved_cases()[:120], adapters=("torch", "flax", "onnx-native"), devices=("cpu",),
                                  mix=(("unsupported", 100),))
    panels = len(document["results"])
    assert panels > report_html.INLINE_PANELS
    (tmp_path / "run.json").write_text(json.dumps(document), encoding="utf-8")
    done = subprocess.run([str(CONSOLE_SCRIPT), "report", str(tmp_path / "run.json"), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    markup = "".join(details_markup(tmp_path / "out").values())
    assert markup.count('<details class="panel u"') == panels
    assert {"index.html", "results.json", "junit.xml"} <= {p.name for p in (tmp_path / "out").iterdir()}
