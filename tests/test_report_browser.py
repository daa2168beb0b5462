"""The HTML reports in a real headless browser: filters, the diff panel, no console errors.

Needs Debian's chromium (``apt-get install chromium``; another binary can be named
with ``CONFORMANCE_CHROMIUM=/path``) and the ``playwright`` Python package; its own
browser download (``playwright install``) is not used.
Without either, every test here is skipped with the reason. Screenshots are
saved under ``reports/`` for a person to look at.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conformance.report import render_regression, render_report
from conformance.results.regression import compare_runs
from tests.test_report import solved_cases, synthetic_document

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


@pytest.fixture
def page(browser, report_path):
    """The report opened from disk; the test fails if the page logs an error."""
    page = browser.new_page(viewport=SIZE)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(report_path.as_uri())
    yield page
    page.close()
    assert errors == [], f"console errors: {errors}"


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
