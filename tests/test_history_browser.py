"""The history report in a real headless browser: the changed cell stands out, the filters work.

Same set-up and skip rules as tests/test_report_browser.py (Debian's chromium and the
``playwright`` package; without either every test here is skipped with the reason). The
history is of two real runs of the GRU seq1 b3t5 float32 cases: the oracle, then the
oracle with the GRU recurrent bias dropped (tests/test_history.py's "release 2").
"""

from __future__ import annotations

import pytest

from conformance.report import render_history
from conformance.results.history import HistoryRun, build_history
from conformance.results.reading import load_any
from tests.test_history import CASES, OracleWithRecurrentBiasDropped, conformance
from tests.test_report_browser import REPORTS, browser, opened  # noqa: F401 - the module fixture

pytestmark = pytest.mark.browser
ROWS = "#history tbody tr.row"


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """Release 1, a release that did not install, release 3 with the bug: real runs via the console script."""
    base = tmp_path_factory.mktemp("releases")
    adapters = {"v1": "tests.oracle_adapters:OracleAdapter",
                "v3": f"{OracleWithRecurrentBiasDropped.__module__}:{OracleWithRecurrentBiasDropped.__name__}"}
    for label, adapter in adapters.items():
        done = conformance("run", "--adapter", adapter, "-k", CASES, "--report-dir", base / label, cwd=base)
        assert done.returncode in (0, 1), done.stderr
    return build_history([HistoryRun("oracle 1", load_any([base / "v1"])),
                          HistoryRun("oracle 2", None, note="install failed: no such version"),
                          HistoryRun("oracle 3", load_any([base / "v3"]))])


@pytest.fixture
def page(browser, history, tmp_path):  # noqa: F811 - the imported fixture
    """The history opened from disk; the test fails if the page logs an error."""
    with opened(browser, render_history(history, tmp_path)) as page:
        yield page


def row(page, key: str):
    return page.locator(f"{ROWS}[data-key='{key}']")


def test_the_cell_where_a_row_changed_is_highlighted(page, history) -> None:
    changed = next(r for r in history.rows if r.changes)
    cells = row(page, changed.key).locator("td")
    column = changed.changes[0].column
    assert "ch-status" in cells.nth(column).get_attribute("class")
    assert "ch-" not in cells.nth(0).get_attribute("class")
    assert cells.nth(1).get_attribute("class") == "gap"  # the run without results
    unchanged = next(r for r in history.rows if not r.changes)
    assert row(page, unchanged.key).locator("td[class*='ch-']").count() == 0
    REPORTS.mkdir(exist_ok=True)
    page.screenshot(path=str(REPORTS / "history-screenshot.png"))


def test_changed_rows_only_hides_the_unchanged_ones(page, history) -> None:
    assert page.locator(f"{ROWS}:visible").count() == len(history.rows)
    page.select_option("#change-filter", "changed")
    assert page.locator(f"{ROWS}:visible").count() == len(history.changed_rows()) > 0
    unchanged = next(r for r in history.rows if not r.changes)
    assert row(page, unchanged.key).is_hidden()
    page.select_option("#change-filter", "drift")
    assert page.locator(f"{ROWS}:visible").count() == 0  # this history has status changes only


def test_the_text_filter_narrows_the_rows_to_matching_case_ids(page, history) -> None:
    page.fill("#history-search", "no_bias")
    assert page.locator(f"{ROWS}:visible").count() == sum("no_bias" in r.key for r in history.rows) > 0
    page.fill("#history-search", "no such case")
    assert page.locator(f"{ROWS}:visible").count() == 0
    assert page.locator("#history-shown").inner_text() == f"0 of {len(history.rows)} rows"


def test_the_status_filter_keeps_rows_with_a_cell_of_a_checked_status(page, history) -> None:
    page.locator("#filters input[name=outcome][value=p]").uncheck()
    failing = [r for r in history.rows if any(c and c.outcome == "fail" for c in r.cells)]
    assert page.locator(f"{ROWS}:visible").count() == len(failing) > 0
