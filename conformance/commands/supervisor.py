"""``conformance run``: every adapter in its own pytest process, supervised.

Why a supervisor: Keras fixes its backend at import (one backend per
process), and a framework may segfault, abort or hang. Each adapter runs as
``pytest conformance/test_conformance.py --adapter NAME`` writing a results
stream; the supervisor follows the stream for progress, kills a process whose
current test outlives ``case_timeout``, records that test (or the one a crash
interrupted) as ``error`` with the captured stderr, and restarts the process
with ``--skip-done`` so the rest of the matrix still runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from conformance.matrix.case import Case
from conformance.results.records import JsonlWriter, Record, make_record, read_jsonl

TEST_MODULE = Path(__file__).resolve().parent.parent / "test_conformance.py"
STDERR_HEAD, STDERR_TAIL = 1000, 3000  # a crash's first lines say what happened, its last where
MAX_RESTARTS = 50


@dataclass
class GroupRun:
    """One adapter's process(es), its stream and its progress."""

    adapter: str
    stream: Path
    group_json: Path
    stderr_path: Path
    total: int = 0
    done: int = 0
    failed: int = 0
    restarts: int = 0
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    current: str | None = None
    current_since: float = 0.0
    seen_lines: int = 0
    stderr_offset: int = 0  # where the running process's stderr starts in the shared file
    crashed_tests: list[str] = field(default_factory=list)
    broken: str | None = None  # why the process ended abnormally with no test in flight


def parse_test_id(test_id: str) -> tuple[str, str, str, str]:
    """``case[adapter-device-dtype]`` -> (case, adapter, device, dtype); adapters may hold '-'."""
    case_id, _, rest = test_id.partition("[")
    adapter, device, dtype = rest.rstrip("]").rsplit("-", 2)
    return case_id, adapter, device, dtype


def plugin_args() -> list[str]:
    """``-p conformance.plugin`` when the package isn't installed (so its pytest11 entry point is absent)."""
    from importlib import metadata

    installed = any(ep.value == "conformance.plugin" for ep in metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "conformance.plugin"]


def pytest_command(group: GroupRun, options: dict, resume: bool) -> list[str]:
    command = [sys.executable, "-m", "pytest", str(TEST_MODULE), *plugin_args(), "-p", "no:cacheprovider",
               "-q", "--no-header", "-rN", "--tb=no",
               "--adapter", group.adapter, "--device", options["device"], "--dtype", options["dtype"],
               "--report-dir", str(group.stream.parent), "--results-stream", str(group.stream),
               "--results-json", str(group.group_json), *known_failure_args(options),
               "-o", "addopts=", "-W", "default"]
    if options.get("fixtures_dir"):
        command += ["--fixtures-dir", str(options["fixtures_dir"])]
    if options.get("keyword"):
        command += ["-k", options["keyword"]]
    if resume:
        command.append("--skip-done")
    if options.get("tf32"):
        command.append("--tf32")
    return command


def known_failure_args(options: dict) -> list[str]:
    """The run's known-differences lists, passed on as given (the child resolves them the same way)."""
    args = [arg for path in options.get("known_failures", ()) for arg in ("--known-failures", str(path))]
    return args + ([] if options.get("builtin_known_failures", True) else ["--no-builtin-known-failures"])


def start(group: GroupRun, options: dict, resume: bool) -> None:
    stderr = open(group.stderr_path, "ab")
    group.stderr_offset = stderr.tell()
    group.process = subprocess.Popen(
        pytest_command(group, options, resume), stdout=subprocess.DEVNULL, stderr=stderr,
        start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    stderr.close()
    group.started_at = time.monotonic()
    group.current, group.current_since = None, time.monotonic()


def follow(group: GroupRun) -> None:
    """Read new stream lines: progress counts and the test now running."""
    if not group.stream.exists():
        return
    lines = read_jsonl(group.stream)
    for line in lines[group.seen_lines:]:
        kind = line.get("record")
        if kind == "collected":
            group.total = max(group.total, line["count"] + group.done)
        elif kind == "started":
            group.current, group.current_since = line["test_id"], time.monotonic()
        elif kind == "result":
            group.done += 1
            group.failed += Record.from_dict(line).unexpected
            if line["test_id"] == group.current:
                group.current = None
    group.seen_lines = len(lines)


def process_stderr(group: GroupRun) -> str:
    """The current process's stderr only (never an earlier crash's): its head and its tail."""
    try:
        data = group.stderr_path.read_bytes()[group.stderr_offset:]
    except OSError:
        return ""
    if len(data) > STDERR_HEAD + STDERR_TAIL:
        omitted = len(data) - STDERR_HEAD - STDERR_TAIL
        data = data[:STDERR_HEAD] + f"\n[... {omitted} bytes of stderr omitted ...]\n".encode() + data[-STDERR_TAIL:]
    return data.decode("utf-8", "replace")


def kill(group: GroupRun) -> None:
    if group.process and group.process.poll() is None:
        try:
            os.killpg(group.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        group.process.wait()


def record_lost_test(group: GroupRun, cases: dict[str, Case], options: dict, why: str) -> None:
    """The test in flight when the process died or was killed becomes an ``error``.

    Known or not by the same list the pytest process marks its tests with (``options["known"]``).
    """
    test_id = group.current
    if test_id is None:
        return
    case_id, adapter, device, dtype = parse_test_id(test_id)
    record = make_record(case=cases[case_id], adapter=adapter, device=device, dtype=dtype,
                         status="error", message=why, stderr=process_stderr(group),
                         known=options["known"].reason_for(test_id))
    JsonlWriter(group.stream).append(record.to_dict())
    group.crashed_tests.append(test_id)
    group.current = None


def exit_description(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def supervise(group: GroupRun, cases: dict[str, Case], options: dict,
              on_progress: Callable[[], None]) -> None:
    """Run one adapter's tests to the end, surviving crashes and hangs."""
    start(group, options, resume=False)
    stop = options.get("stop")
    while True:
        time.sleep(0.2)
        if stop is not None and stop.is_set():
            kill(group)
            return
        follow(group)
        on_progress()
        assert group.process is not None
        code = group.process.poll()
        if code is None:
            timed_out = group.current and time.monotonic() - group.current_since > options["case_timeout"]
            if not timed_out:
                continue
            kill(group)
            follow(group)
            record_lost_test(group, cases, options, f"no answer within the per-case timeout of "
                                           f"{options['case_timeout']:g} s; process killed")
        else:
            follow(group)
            if code in (0, 1, 5):
                return
            if group.current is None:
                last = (process_stderr(group).strip().splitlines() or ["no stderr"])[-1]
                group.broken = f"pytest {exit_description(code)} outside any test: {last}"
                return
            record_lost_test(group, cases, options, f"the adapter process {exit_description(code)} during this test")
        group.restarts += 1
        if group.restarts > MAX_RESTARTS:
            return
        start(group, options, resume=True)


# --- the whole matrix ---------------------------------------------------------------------------


def safe_name(adapter: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in adapter)


def new_group(adapter: str, work_dir: Path) -> GroupRun:
    name = safe_name(adapter)
    for leftover in (work_dir / f"{name}.jsonl", work_dir / f"{name}.stderr"):
        leftover.unlink(missing_ok=True)
    return GroupRun(adapter=adapter, stream=work_dir / f"{name}.jsonl",
                    group_json=work_dir / f"{name}.json", stderr_path=work_dir / f"{name}.stderr")


def progress_line(groups: list[GroupRun]) -> str:
    parts = []
    for group in groups:
        total = f"/{group.total}" if group.total else ""
        parts.append(f"{group.adapter} {group.done}{total}" + (f" ({group.failed} failed)" if group.failed else ""))
    return "progress: " + " | ".join(parts)


def group_records(group: GroupRun) -> list[Record]:
    if not group.stream.exists():
        return []
    return [Record.from_dict(line) for line in read_jsonl(group.stream) if line.get("record") == "result"]
