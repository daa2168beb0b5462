"""conformance bench: figures only from matrix runs that really ran."""

from __future__ import annotations

import argparse
import json

from conformance.adapters import load_adapter
from conformance.commands import bench


def test_a_matrix_run_that_broke_is_left_out_of_the_totals_and_exits_1(monkeypatch, tmp_path, capsys):
    """pytest exit 2 (usage/collection error) with no results is no timing of the matrix."""
    monkeypatch.setattr(bench, "run_worker", lambda adapter, quick: {"available": True, "overhead": {}})
    runs = {"good": {"exit_status": 1, "results": 20}, "broke": {"exit_status": 2, "results": 0}}
    monkeypatch.setattr(bench, "measure_matrix", lambda adapter, report_dir, keyword: {
        "matrix_wall_s": 3.0, "peak_rss_mib": 100.0, "cases_run": 1, "time_in_adapter_run_s": 1.0,
        **runs[adapter]})
    output = tmp_path / "benchmark.json"
    args = argparse.Namespace(adapter=["good", "broke"], quick=True, output=output)
    assert bench.bench_command(args) == 1
    document = json.loads(output.read_text())
    assert document["total_matrix_wall_s"] == 3.0
    assert "broke" in capsys.readouterr().err


def test_an_adapter_without_bare_forward_gets_no_overhead_figure():
    adapter = load_adapter("tests.oracle_adapters:OracleAdapter")
    assert bench.overhead(adapter, bench.sample_cases(quick=True)) == {
        "measured": False, "reason": "adapter has no bare_forward(case, device)"}


def test_an_adapter_without_export_cache_gets_no_cache_figure():
    assert bench.export_cache_effect(load_adapter("tests.oracle_adapters:OracleAdapter"), []) is None


def test_the_export_cache_is_timed_off_then_switched_back_on():
    adapter = load_adapter("tests.oracle_adapters:CachingOracleAdapter")
    cases = bench.sample_cases(quick=True)
    figures = bench.export_cache_effect(adapter, cases)
    assert set(figures) == {"with_cache_s_per_case", "without_cache_s_per_case"}
    assert adapter.adapter.uncached_runs == len(cases) and adapter.export_cache is True
