"""``conformance bench --tox``: the README's main command timed whole, cold and then warm.

Runs ``tox run-parallel -m matrix`` (another label with ``--label``, e.g.
``deployment``; with ``--full``: ``-- --full``, the full plan, else the default
covering plan) from the current directory's ``tox.ini``
twice into one scratch tox work dir beside the output file:

- **cold**: a new tox work dir, an empty pip cache (``PIP_CACHE_DIR``) and an
  empty export cache (``CONFORMANCE_CACHE_DIR``), as on a fresh machine: every
  environment is created and installed, every export made;
- **warm**: the same again with everything kept, as a CI cache would keep it.

For each it writes the wall time, and per tox environment its setup
(installs) and command seconds from tox's own ``--result-json``, and the
longest environment's share of the wall time (the balance across cores).
Then, from each environment's ``reports/<env>/results.json``: per adapter the
results run, the seconds spent in ``adapter.run``, the compilations and
exports its records count (``run_info.compilations``) and their ratio to the
results run, and the peak resident memory of its processes (recorded by
``conformance run``). Measured and written down, never asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from conformance.commands.bench import adapter_figures
from conformance.commands.exits import UsageError
from conformance.results.machine import machine_info, package_versions
from conformance.results.records import write_json_atomic

LABEL = "matrix"


def check_tox_project(root: Path, label: str = LABEL) -> None:
    """tox installed and a tox.ini here: else one line, exit 2."""
    import importlib.util

    if importlib.util.find_spec("tox") is None:
        raise UsageError("bench --tox needs tox in this environment (python3 -m pip install tox)")
    if not (root / "tox.ini").is_file():
        raise UsageError(f"bench --tox runs tox.ini's '{label}' label: no tox.ini in {root}")


def tox_command(work_dir: Path, result_json: Path, full: bool = False, label: str = LABEL) -> list[str]:
    return [sys.executable, "-m", "tox", "run-parallel", "-m", label, "--parallel-no-spinner",
            "--workdir", str(work_dir), "--result-json", str(result_json), *(["--", "--full"] if full else [])]


def env_figures(tox_result: dict) -> dict[str, dict]:
    """Per environment that ran: installs (setup) and command seconds, and its whole duration, as tox
    measured (tox lists every env of tox.ini, and its packaging env, with no result)."""
    figures = {}
    for name, env in tox_result.get("testenvs", {}).items():
        if "result" not in env:
            continue
        setup = sum(step.get("elapsed", 0.0) for step in env.get("setup", []))
        command = sum(step.get("elapsed", 0.0) for step in env.get("test", []))
        result = env["result"]
        figures[name] = {"setup_s": round(setup, 1), "command_s": round(command, 1),
                         "duration_s": round(result.get("duration", setup + command), 1),
                         "success": result.get("success")}
    return figures


def timed_matrix(root: Path, scratch: Path, name: str, environment: dict[str, str], full: bool = False,
                 label: str = LABEL) -> dict:
    """One ``tox run-parallel -m LABEL``: its wall time, its environments, its adapters."""
    result_json = scratch / f"tox-{name}.json"
    print(f"bench: tox run-parallel -m {label} ({name}) ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    done = subprocess.run(tox_command(scratch / "tox-work", result_json, full, label), cwd=root, env=environment,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    try:
        envs = env_figures(json.loads(result_json.read_text()))
    except (OSError, ValueError):
        envs = {}
    adapters = {}
    for env in envs:
        adapters.update(adapter_figures(root / "reports" / env / "results.json"))
    longest = max(envs.items(), key=lambda item: item[1]["duration_s"], default=(None, {"duration_s": 0.0}))
    return {"wall_s": round(wall, 1), "tox_exit_status": done.returncode,
            "stderr_tail": done.stderr.strip().splitlines()[-5:] if done.returncode else [],
            "longest_env": longest[0], "longest_env_share": round(longest[1]["duration_s"] / wall, 3),
            "envs": envs, "adapters": adapters}


def bench_tox_command(output: Path, full: bool = False, label: str = LABEL) -> int:
    root = Path.cwd()
    check_tox_project(root, label)
    scratch = output.parent / "bench-tox"
    shutil.rmtree(scratch, ignore_errors=True)  # the benchmark's own scratch: cold means empty
    scratch.mkdir(parents=True)
    environment = dict(os.environ, PIP_CACHE_DIR=str(scratch / "pip-cache"),
                       CONFORMANCE_CACHE_DIR=str(scratch / "export-cache"))
    runs = {name: timed_matrix(root, scratch, name, environment, full, label) for name in ("cold", "warm")}
    command = f"tox run-parallel -m {label}" + (" -- --full" if full else "")
    document = {"machine": machine_info(), "versions": package_versions(), "cpu_count": os.cpu_count(),
                "command": command, "plan": "full" if full else "default",
                "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **runs}
    write_json_atomic(output, document)
    print(summary(document))
    print(f"benchmark: {output}")
    return 0 if all(run["tox_exit_status"] in (0, 1) for run in runs.values()) else 1


def summary(document: dict) -> str:
    lines = []
    for name in ("cold", "warm"):
        run = document[name]
        lines.append(f"{name}: {run['wall_s']:.0f} s wall (tox exit {run['tox_exit_status']}); longest env "
                     f"{run['longest_env']} = {run['longest_env_share']:.0%} of it")
        lines.append(f"  {'env':<18} {'setup s':>8} {'command s':>10}")
        lines += [f"  {env:<18} {f['setup_s']:>8.1f} {f['command_s']:>10.1f}" for env, f in run["envs"].items()]
    lines.append(f"  {'adapter':<20} {'results':>8} {'compilations/result':>20} {'peak MiB':>9}")
    for adapter, f in document["cold"]["adapters"].items():
        ratio = "-" if f["compilations_per_result"] is None else f"{f['compilations_per_result']:.3f}"
        memory = "-" if f["peak_rss_mib"] is None else f"{f['peak_rss_mib']:.0f}"
        lines.append(f"  {adapter:<20} {f['results_run']:>8} {ratio:>20} {memory:>9}")
    return "\n".join(lines)
