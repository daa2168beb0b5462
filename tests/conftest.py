"""Shared pytest hooks for the suite's own tests."""


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    line = getattr(config, "_conformance_sensitivity", None)
    if line:
        terminalreporter.write_line(line)
