"""conformance bench: figures only from matrix runs that really ran."""

from __future__ import annotations

import argparse
import json

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
