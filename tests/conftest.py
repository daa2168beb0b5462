"""Shared pytest hooks and fixtures for the suite's own tests."""

from pathlib import Path

import pytest


@pytest.fixture
def report_dir(tmp_path) -> Path:
    """A report dir holding an earlier run's page: what bad input must leave as it was."""
    directory = tmp_path / "reports"
    directory.mkdir()
    (directory / "index.html").write_text("previous report")
    return directory


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    line = getattr(config, "_conformance_sensitivity", None)
    if line:
        terminalreporter.write_line(line)
