"""``conformance bench``: speed and memory, measured and written down, never asserted.

Writes ``reports/benchmark.json`` with, per adapter:

- ``matrix_wall_s``: wall time of the adapter's whole CPU matrix in one pytest
  process (installs and fixture building excluded), and ``peak_rss_mib``, the
  process's peak resident memory (from ``wait4``);
- ``overhead``: on a sample of cases, the median time of ``adapter.run``
  beside the median time of the framework's bare forward pass on the same
  prepared model and inputs (the adapter's optional ``bare_forward(case,
  device)``), and their ratio minus one: the harness's own share;
- ``export_cache`` (export-based adapters): per-case time with the export
  cache on and off (the adapter's ``export_cache`` attribute);
- ``compilations`` and ``compilations_per_result``: the compilations and
  exports the matrix's records count (``run_info.compilations``), and their
  ratio to the results run (None for an adapter that neither compiles nor exports).

``conformance bench --tox`` (``conformance.commands.bench_tox``) times the
whole tox matrix instead, cold and warm.

Each adapter is measured in a process of its own (Keras fixes its backend
per process), one after another so that they don't compete for the 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from conformance.adapters import LoadedAdapter, adapter_paths, load_adapter
from conformance.files import check_output_dir, check_output_file
from conformance.results.machine import machine_info, package_versions
from conformance.results.records import write_json_atomic

TEST_MODULE = Path(__file__).resolve().parent.parent / "test_conformance.py"
SAMPLE_EVERY = 23  # every 23rd case: ~20 cases spread over all families
REPEATS = 5
QUICK_KEYWORD = "tutorial"
RAN = ("pass", "fail", "error")  # the statuses of a result the adapter computed


def _median_seconds(function, repeats: int = REPEATS) -> float:
    function()  # warm-up: compilation and caches are not what we measure
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_matrix(adapter: str, report_dir: Path, keyword: str = "") -> dict:
    """Wall time and peak RSS of one adapter's whole matrix in a pytest process."""
    from conformance.commands.supervisor import plugin_args

    command = [sys.executable, "-m", "pytest", str(TEST_MODULE), *plugin_args(), "-q", "--no-header", "-p",
               "no:cacheprovider", "--tb=no", "-rN", "-o", "addopts=", "-W", "default",
               "--adapter", adapter, "--device", "cpu", "--report-dir", str(report_dir)]
    if keyword:
        command += ["-k", keyword]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    results_file = report_dir / "results.json"
    results = json.loads(results_file.read_text())["results"] if results_file.exists() else []
    counted = next(iter(adapter_figures(results_file).values()), {})
    return {"matrix_wall_s": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "results": len(results), "cases_run": counted.get("results_run", 0),
            "time_in_adapter_run_s": counted.get("time_in_adapter_run_s", 0.0),
            "compilations": counted.get("compilations"),
            "compilations_per_result": counted.get("compilations_per_result"),
            "exit_status": os.waitstatus_to_exitcode(status)}


def adapter_figures(results_file: Path) -> dict[str, dict]:
    """Per adapter of one environment's results: results run, time in run, compilations, memory."""
    try:
        document = json.loads(results_file.read_text())
    except (OSError, ValueError):
        return {}
    figures: dict[str, dict] = {}
    for record in document.get("results", []):
        entry = figures.setdefault(record["adapter"], {"results_run": 0, "time_in_adapter_run_s": 0.0,
                                                       "compilations": 0, "counted": False})
        if record["status"] not in RAN:
            continue
        entry["results_run"] += 1
        entry["time_in_adapter_run_s"] += record.get("duration_s") or 0.0
        count = (record.get("run_info") or {}).get("compilations")
        if isinstance(count, int):
            entry["compilations"] += count
            entry["counted"] = True
    for name, entry in figures.items():
        counted = entry.pop("counted")
        entry["time_in_adapter_run_s"] = round(entry["time_in_adapter_run_s"], 2)
        entry["compilations_per_result"] = (round(entry["compilations"] / entry["results_run"], 3)
                                            if counted and entry["results_run"] else None)
        if not counted:
            entry["compilations"] = None  # an adapter that neither compiles nor exports says nothing
        entry["peak_rss_mib"] = (document.get("adapters", {}).get(name) or {}).get("peak_rss_mib")
    return figures


def sample_cases(quick: bool):
    from conformance.fixtures import load_cases

    cases = load_cases()
    if quick:
        return [c for c in cases if QUICK_KEYWORD in c.id][:4]
    return cases[::SAMPLE_EVERY]


def overhead(adapter: LoadedAdapter, cases) -> dict:
    """adapter.run against the bare framework forward pass, side by side, per case."""
    bare = adapter.bare_forward
    if bare is None:
        return {"measured": False, "reason": "adapter has no bare_forward(case, device)"}
    rows = []
    for case in cases:
        bound = case.for_dtype("float32")
        if adapter.supports(bound):
            continue
        run_s = _median_seconds(lambda bound=bound: adapter.run(bound, "cpu"))
        bare_s = _median_seconds(bare(bound, "cpu"))
        rows.append({"case": case.id, "run_s": run_s, "bare_s": bare_s, "ratio": run_s / bare_s})
    if not rows:
        return {"measured": False, "reason": "no supported case in the sample"}
    total_run, total_bare = sum(r["run_s"] for r in rows), sum(r["bare_s"] for r in rows)
    return {"measured": True, "cases": len(rows), "median_ratio": statistics.median(r["ratio"] for r in rows),
            "overhead_fraction": total_run / total_bare - 1.0, "per_case": rows}


def export_cache_effect(adapter: LoadedAdapter, cases) -> dict | None:
    """Seconds per case with the adapter's export cache on and off; None: it has no such cache."""
    if adapter.export_cache is None:
        return None
    figures = {}
    for enabled in (True, False):
        adapter.export_cache = enabled
        started, count = time.perf_counter(), 0
        for case in cases:
            bound = case.for_dtype("float32")
            if not adapter.supports(bound):
                adapter.run(bound, "cpu")
                count += 1
        figures["with_cache_s_per_case" if enabled else "without_cache_s_per_case"] = (
            (time.perf_counter() - started) / max(count, 1))
    adapter.export_cache = True
    return figures


def worker(adapter_name: str, quick: bool) -> dict:
    """Runs inside the adapter's own process: the in-process measurements."""
    adapter = load_adapter(adapter_name)
    reason = adapter.available()
    if reason:
        return {"available": False, "reason": reason}
    cases = sample_cases(quick)
    result = {"available": True, "versions": adapter.versions(), "overhead": overhead(adapter, cases)}
    cache = export_cache_effect(adapter, cases[: (2 if quick else 6)])
    if cache is not None:
        result["export_cache"] = cache
    return result


def run_worker(adapter: str, quick: bool) -> dict:
    command = [sys.executable, "-m", "conformance.commands.bench", adapter] + (["--quick"] if quick else [])
    done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"available": False, "reason": f"benchmark worker failed: {tail}"}
    return json.loads(lines[-1])


def check_options(args: argparse.Namespace) -> None:
    """Every named adapter loads and every output can be written, checked before any
    measurement: a typo in ``--adapter`` must not cost an hour of timings, nor replace an
    existing benchmark.json (UnknownAdapterError / OutputPathError: one line, exit 2)."""
    check_output_file(args.output)
    check_output_dir(scratch_dir(args.output))
    for name in args.adapter:
        load_adapter(name)


def scratch_dir(output: Path) -> Path:
    """Where the matrix runs write their reports: beside the benchmark file."""
    return output.parent / "bench"


def bench_command(args: argparse.Namespace) -> int:
    adapters = args.adapter or list(adapter_paths())
    scratch = scratch_dir(args.output)
    figures: dict[str, dict] = {}
    for adapter in adapters:
        print(f"bench: {adapter} ...", file=sys.stderr, flush=True)
        entry = run_worker(adapter, args.quick)
        if entry.get("available"):
            entry.update(measure_matrix(adapter, scratch / adapter, QUICK_KEYWORD if args.quick else ""))
        figures[adapter] = entry
    broken = [name for name, f in figures.items() if not _matrix_ran(f)]
    measured = [f for f in figures.values() if "matrix_wall_s" in f and _matrix_ran(f)]
    document = {"machine": machine_info(), "versions": package_versions(), "quick": args.quick,
                "cpu_count": os.cpu_count(), "adapters": figures,
                "total_matrix_wall_s": round(sum(f["matrix_wall_s"] for f in measured), 2),
                "max_peak_rss_mib": max((f["peak_rss_mib"] for f in measured), default=None)}
    write_json_atomic(args.output, document)
    print(summary(document))
    print(f"benchmark: {args.output}")
    if broken:  # a timing of a pytest run that broke measures nothing: say so, exit 1
        print(f"bench: the matrix run broke for {', '.join(broken)} (see exit_status); "
              "left out of the totals", file=sys.stderr)
        return 1
    return 0


def _matrix_ran(entry: dict) -> bool:
    """pytest ran the tests (0: all passed, 1: some failed); 2-5 mean it broke or ran nothing."""
    return "exit_status" not in entry or (entry["exit_status"] in (0, 1) and entry["results"] > 0)


def summary(document: dict) -> str:
    lines = [f"{'adapter':<18} {'matrix s':>9} {'in run s':>9} {'peak MiB':>9} {'overhead':>9}"]
    for name, entry in document["adapters"].items():
        if "matrix_wall_s" not in entry:
            lines.append(f"{name:<18} unavailable: {entry.get('reason')}")
            continue
        if not _matrix_ran(entry):
            lines.append(f"{name:<18} matrix run broke: pytest exit status {entry['exit_status']}, "
                         f"{entry['results']} results")
            continue
        measured = entry["overhead"].get("measured")
        share = f"{entry['overhead']['overhead_fraction']:+.1%}" if measured else "n/a"
        lines.append(f"{name:<18} {entry['matrix_wall_s']:>9.1f} {entry['time_in_adapter_run_s']:>9.1f} "
                     f"{entry['peak_rss_mib']:>9.0f} {share:>9}")
    lines.append(f"total matrix wall time (adapters one after another): {document['total_matrix_wall_s']:.1f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    parsed = argparse.ArgumentParser()
    parsed.add_argument("adapter")
    parsed.add_argument("--quick", action="store_true")
    options = parsed.parse_args()
    print(json.dumps(worker(options.adapter, options.quick)))
