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


@pytest.fixture(scope="module")
def cases() -> dict:
    """The checked-in fixtures' cases by id, loaded afresh for each module that asks."""
    from conformance.fixtures import load_cases

    return {case.id: case for case in load_cases()}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory, request) -> Path:
    """A disk cache of the module's own, for the rows that cache conversions (``cached``)."""
    return tmp_path_factory.mktemp(f"{request.module.__name__.rpartition('.')[2]}-cache")


@pytest.fixture
def cached(monkeypatch, cache_dir) -> None:
    """One disk cache for the module's tests (a cache the machine holds stays out)."""
    monkeypatch.setenv("CONFORMANCE_CACHE_DIR", str(cache_dir))


# The development loop's fast subset is `pytest -m "not slow"`. Every test of these modules is
# slow: each starts processes (the installed script, pytest, pip, tox) or loads a real framework.
# tests/test_markers.py keeps the list whole; single slow tests elsewhere carry the mark themselves.
SLOW_MODULES = frozenset({
    "test_api", "test_search",
    "test_bare_forward", "test_bench_tox", "test_bfloat16_exports", "test_cases_command", "test_cli",
    "test_commands", "test_compare_command", "test_compilation_counts", "test_covering_plan",
    "test_device_rows", "test_explain", "test_export_onnx", "test_fixture_independence", "test_unseen_independence",
    "test_fixtures_robustness", "test_flax_mapping", "test_float16_bfloat16_rows", "test_history", "test_junit",
    "test_keras_initializers", "test_keras_mapping", "test_keras_reduced_precision", "test_known_differences",
    "test_loading_robustness", "test_messages", "test_onnx_mapping", "test_onnx_opset",
    "test_onnx_reduced_precision", "test_openvino_adapter", "test_examples", "test_reduced_precision",
    "test_report_browser", "test_repro", "test_results_robustness", "test_run_plan", "test_run_robustness",
    "test_run_shards", "test_runner", "test_specificity", "test_sweep", "test_torch_flax_reduced_precision",
    "test_torch_mapping", "test_tox", "test_tract_adapter", "test_workflow", "test_executorch_adapter",
    "test_torch_compile_adapter", "test_litert_adapter", "test_keras_onnx_backends",
    "test_openvino_torch_adapter", "test_openvino_keras_adapter", "test_run_isolation", "test_report_dir_safety",
})


def pytest_ignore_collect(collection_path, config):
    """Under `-m "not slow"` the slow modules are not even imported: every test in them would be
    deselected, and importing them loads the frameworks (most of the fast loop's time otherwise)."""
    if config.getoption("markexpr", "").strip() == "not slow" and collection_path.stem in SLOW_MODULES:
        return True
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.stem in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    line = getattr(config, "_conformance_sensitivity", None)
    if line:
        terminalreporter.write_line(line)
