"""What people read: the HTML report of a results document, and the regression report.

``render_report(document, out_dir) -> Path`` writes ``out_dir/index.html``;
``render_regression(regression, baseline, current, out_path) -> Path`` writes the
comparison of two runs made by ``conformance.results.regression.compare_runs``.
Both files are self-contained (inline CSS and JS, no network) and open from disk.
"""

from conformance.report.html import render_regression, render_report

__all__ = ["render_regression", "render_report"]
