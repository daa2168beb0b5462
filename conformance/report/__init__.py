"""What people read: the HTML report of a results document, and the regression report.

``render_report(document, out_dir) -> Path`` writes ``out_dir/index.html``;
``write_report(document, out_dir)`` writes it with ``results.json`` and ``junit.xml``, all or none;
``render_regression(regression, baseline, current, out_path) -> Path`` writes the
comparison of two runs made by ``conformance.results.regression.compare_runs``;
``render_history(history, out_dir) -> Path`` writes ``history.html`` (and ``history.json``), runs
across releases (``conformance.results.history.build_history``).
Every page is self-contained (inline CSS and JS, no network) and opens from disk; a large
report's result details are in ``index-details-*.js`` files beside its ``index.html``.
"""

from conformance.report.history import render_history
from conformance.report.html import render_regression, render_report, write_report

__all__ = ["render_history", "render_regression", "render_report", "write_report"]
