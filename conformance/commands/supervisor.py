"""``conformance run``: every adapter in its own pytest process, supervised.

Why a supervisor: Keras fixes its backend at import (one backend per
process), and a framework may segfault, abort or hang. Each adapter runs as
``pytest conformance/test_conformance.py --adapter NAME`` writing a results
stream; the supervisor follows the stream for progress, kills a process whose
current test outlives ``case_timeout`` (or that stays silent past
``startup_timeout`` from its start: importing a framework is no case), records
that test (or the one a crash interrupted) as ``error`` with the captured
stderr, and restarts the process with ``--skip-done`` so the rest of the matrix
still runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from conformance.jsonsafe import safe_text
from conformance.matrix.case import Case
from conformance.plugin import SUPERVISOR_VARIABLE
from conformance.results.records import REDUCED_PRECISION_KEY, JsonlWriter, Record, make_record, parse_json, read_jsonl

TEST_MODULE = Path(__file__).resolve().parent.parent / "test_conformance.py"
# At most 64 KiB of a lost test's stderr: its first lines say what happened, its last where.
STDERR_HEAD, STDERR_TAIL = 4 * 1024, 60 * 1024
# At most 2 MiB of each process's in the raw streams/*.stderr (cap_stderr_file).
STDERR_FILE_HEAD, STDERR_FILE_TAIL = 1024 * 1024, 1024 * 1024
INTERRUPTED = "not run: the run was interrupted (Ctrl-C or SIGTERM) before this test"


@dataclass
class GroupRun:
    """One adapter's planned results, its process(es), its stream and its progress.

    ``planned`` is decided before any process starts (``conformance.plugin``'s
    own selection); the group ends with one record per planned test id, those
    it could not produce being ``error`` records that say why (``ended``).
    """

    adapter: str  # as asked for: a registered name or module:Class
    planned: list[str]
    stream: Path
    group_json: Path
    stderr_path: Path
    plan_path: Path
    failed: int = 0
    restarts: int = 0
    process: subprocess.Popen | None = None
    current: str | None = None
    current_since: float = 0.0  # when the test in flight started, or the process did, or the last result came
    current_stderr_at: int | None = None  # where the test in flight began writing stderr
    started_up: bool = False  # the running process has begun (or skipped) its first test
    peak_rss_mib: float | None = None  # the largest peak resident memory of its processes
    stream_offset: int = 0
    stderr_offset: int = 0  # where the running process's stderr starts in the shared file
    recorded: set[str] = field(default_factory=set)
    ended: str | None = None  # why the planned results still missing were not produced
    shard: str = ""  # "1/2": which part of its adapter's plan this group runs (--shards), else ""

    @property
    def label(self) -> str:
        """The adapter as progress and messages name it, with its shard when the plan was split."""
        return f"{self.adapter} [{self.shard}]" if self.shard else self.adapter

    @property
    def total(self) -> int:
        return len(self.planned)

    @property
    def done(self) -> int:
        return len(self.recorded)

    def missing(self) -> list[str]:
        return [test_id for test_id in self.planned if test_id not in self.recorded]


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
    """The adapter process: exactly the group's plan (no -k of its own), its output not captured,
    so that what an adapter writes to stderr before it dies reaches the supervisor."""
    command = [sys.executable, "-m", "pytest", str(TEST_MODULE), *plugin_args(), "-p", "no:cacheprovider",
               "-q", "--no-header", "-rN", "--tb=no", "--capture=no",
               "--adapter", group.adapter, "--device", options["device"], "--dtype", options["dtype"],
               "--report-dir", str(group.stream.parent), "--results-stream", str(group.stream),
               "--results-json", str(group.group_json), "--plan", str(group.plan_path),
               *known_difference_args(options), "-o", "addopts=", "-W", "default"]
    if options.get("fixtures_dir"):
        command += ["--fixtures-dir", str(options["fixtures_dir"])]
    if options.get("fixtures_checked"):
        command += ["--fixtures-checked", options["fixtures_checked"]]
    if options.get("unseen"):
        command += ["--unseen", str(options["unseen"]["count"]), "--unseen-seed", str(options["unseen"]["seed"])]
    if resume:
        command.append("--skip-done")
    if options.get("reduced_precision_defaults"):
        command.append("--reduced-precision-defaults")
    if options.get("onnx_opset") is not None:
        command += ["--onnx-opset", str(options["onnx_opset"])]
    return command


def known_difference_args(options: dict) -> list[str]:
    """The run's known-differences lists, passed on as given (the child resolves them the same way)."""
    args = [arg for path in options.get("known_differences", ()) for arg in ("--known-differences", str(path))]
    return args + ([] if options.get("builtin_known_differences", True) else ["--no-builtin-known-differences"])


def start(group: GroupRun, options: dict, resume: bool) -> None:
    stderr = open(group.stderr_path, "ab")
    group.stderr_offset = stderr.tell()
    environment = dict(os.environ, PYTHONUNBUFFERED="1", **{SUPERVISOR_VARIABLE: str(os.getpid())})
    group.process = subprocess.Popen(
        pytest_command(group, options, resume), stdout=subprocess.DEVNULL, stderr=stderr,
        start_new_session=True, env=environment)
    stderr.close()
    group.current, group.current_since, group.current_stderr_at = None, time.monotonic(), None
    group.started_up = False


def new_lines(group: GroupRun) -> list[dict]:
    """The stream's complete lines written since the last call (a torn last line waits)."""
    try:
        with open(group.stream, "rb") as stream:
            stream.seek(group.stream_offset)
            data = stream.read()
    except FileNotFoundError:
        return []
    complete = data[:data.rfind(b"\n") + 1]
    group.stream_offset += len(complete)
    return [parse_json(line) for line in complete.decode("utf-8").splitlines() if line.strip()]


def follow(group: GroupRun) -> None:
    """Read new stream lines: progress counts and the test now running."""
    for line in new_lines(group):
        kind = line.get("record")
        group.started_up = group.started_up or kind in ("started", "result")
        if group.current is None:
            group.current_since = time.monotonic()  # the process is making progress outside a test
        if kind == "started":
            group.current, group.current_since = line["test_id"], time.monotonic()
            group.current_stderr_at = line.get("stderr_at")
        elif kind == "result" and line["test_id"] not in group.recorded:
            group.recorded.add(line["test_id"])
            group.failed += Record.from_dict(line).unexpected
            if line["test_id"] == group.current:
                group.current = None


def process_stderr(group: GroupRun, since: int | None = None) -> str:
    """The stderr written since ``since`` (default: since the current process started), never an
    earlier crash's: at most its head and its tail."""
    try:
        data = group.stderr_path.read_bytes()[max(since or 0, group.stderr_offset):]
    except OSError:
        return ""
    if len(data) > STDERR_HEAD + STDERR_TAIL:
        omitted = len(data) - STDERR_HEAD - STDERR_TAIL
        data = data[:STDERR_HEAD] + f"\n[... {omitted} bytes of stderr omitted ...]\n".encode() + data[-STDERR_TAIL:]
    return data.decode("utf-8", "replace")


def reap(group: GroupRun, block: bool = False) -> int | None:
    """The process's exit code once it has ended (None while it runs), its peak resident memory
    kept in ``peak_rss_mib``: ``os.wait4`` gives the resource usage that ``Popen.poll`` drops."""
    process = group.process
    assert process is not None
    if process.returncode is not None:
        return process.returncode
    try:
        pid, status, usage = os.wait4(process.pid, 0 if block else os.WNOHANG)
    except ChildProcessError:  # reaped already: Popen knows how it ended
        return process.wait() if block else process.poll()
    if pid == 0:
        return None
    process.returncode = os.waitstatus_to_exitcode(status)
    group.peak_rss_mib = max(group.peak_rss_mib or 0.0, round(usage.ru_maxrss / 1024, 1))  # KiB on Linux
    return process.returncode


def kill(group: GroupRun) -> None:
    """End the adapter process and its whole process group, ended or not: what it started (a
    worker pool, a compiler server) must not outlive it and run on after the run."""
    if group.process is None:
        return
    try:
        os.killpg(group.process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # the process and all it started have ended
        pass
    reap(group, block=True)


def cap_stderr_file(group: GroupRun) -> None:
    """Cut what the process that just ended wrote to the stderr file to its first and last
    ``STDERR_FILE_HEAD`` / ``STDERR_FILE_TAIL`` bytes, as records are cut: an adapter that prints
    without end must not fill the report dir (the records took their part already)."""
    try:
        size = group.stderr_path.stat().st_size
        omitted = size - group.stderr_offset - STDERR_FILE_HEAD - STDERR_FILE_TAIL
        if omitted <= 0:
            return
        with open(group.stderr_path, "r+b") as stderr:
            stderr.seek(size - STDERR_FILE_TAIL)
            tail = stderr.read(STDERR_FILE_TAIL)
            stderr.seek(group.stderr_offset + STDERR_FILE_HEAD)
            stderr.write(f"\n[... {omitted} bytes of stderr omitted ...]\n".encode() + tail)
            stderr.truncate()
    except OSError:  # the raw file is a help; the records hold what the verdict needs
        pass


def append_error(group: GroupRun, cases: dict[str, Case], options: dict, test_id: str, why: str,
                 stderr: str = "", produced: bool = True) -> None:
    """An ``error`` record for ``test_id`` (``not_run`` for one the user's interrupt stopped), appended
    to the group's stream."""
    case_id, adapter, device, dtype = parse_test_id(test_id)
    known = options["known"].reason_for(test_id, options["known"].installed_versions()) if produced else None
    run_info = {REDUCED_PRECISION_KEY: True} if options.get("reduced_precision_defaults") else {}
    status = "not_run" if why == INTERRUPTED else "error"  # stopped by the user: not run is no error
    record = make_record(case=cases[case_id], adapter=adapter, device=device, dtype=dtype, status=status,
                         message=why, stderr=stderr, known=known, produced=produced, run_info=run_info)
    JsonlWriter(group.stream).append(record.to_dict())
    group.recorded.add(test_id)
    group.failed += record.unexpected


def record_lost_test(group: GroupRun, cases: dict[str, Case], options: dict, why: str) -> None:
    """The test in flight when the process died or was killed becomes an ``error`` with the
    stderr written since it started; known or not by the list the adapter process marks its tests with."""
    test_id = group.current
    if test_id is None or test_id in group.recorded:
        group.current = None
        return
    append_error(group, cases, options, test_id, why, stderr=process_stderr(group, group.current_stderr_at))
    group.current = None


def exit_description(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def silence_limit(group: GroupRun, options: dict) -> float:
    """How long the running process may stay silent: ``startup_timeout`` until its first test
    begins (pytest, the fixtures, and the framework, which loads in the first test's
    ``available()``: seconds on a busy machine, whatever the cases cost), ``case_timeout`` after."""
    return options["case_timeout"] if group.started_up else options["startup_timeout"]


def killed_for_silence(group: GroupRun, cases: dict[str, Case], options: dict) -> str:
    """Kill a process silent past its limit; the test in flight (if any) becomes an error."""
    in_flight, starting = group.current is not None, not group.started_up
    kill(group)
    follow(group)
    if starting:
        return f"was killed at the startup timeout of {options['startup_timeout']:g} s"
    record_lost_test(group, cases, options, f"no answer within the per-case timeout of "
                                            f"{options['case_timeout']:g} s; process killed")
    return "was killed at the per-case timeout" + ("" if in_flight else " outside any test")


def run_process(group: GroupRun, cases: dict[str, Case], options: dict, on_progress: Callable[[], None],
                resume: bool) -> str | None:
    """One adapter process, from start to end; how it ended (None when the run was stopped)."""
    start(group, options, resume)
    stop = options["stop"]
    while True:
        time.sleep(0.2)
        if stop.is_set():
            kill(group)
            follow(group)
            return None
        follow(group)
        on_progress()
        assert group.process is not None
        code = reap(group)
        if code is None:
            if time.monotonic() - group.current_since > silence_limit(group, options):
                return killed_for_silence(group, cases, options)
            continue
        follow(group)
        ended = exit_description(code)
        record_lost_test(group, cases, options, f"the adapter process {ended} during this test")
        return ended


def supervise(group: GroupRun, cases: dict[str, Case], options: dict,
              on_progress: Callable[[], None]) -> None:
    """Run one adapter's plan to the end, surviving crashes, hangs and early exits.

    A process that ends with planned tests left is restarted on the rest
    (``--skip-done``), whatever its exit status, as long as it got further;
    one that produced nothing is not restarted. Whatever stays unproduced
    becomes an ``error`` record saying why (``group.ended``).
    """
    last_end = ""
    while group.missing():
        if options["stop"].is_set():
            group.ended = INTERRUPTED
            break
        if group.restarts > options["max_restarts"]:
            group.ended = (f"not run: the supervisor gave up after {group.restarts - 1} restarts of the "
                           f"adapter process (the last one {last_end})")
            break
        before = group.done
        ended = run_process(group, cases, options, on_progress, resume=group.restarts > 0)
        kill(group)  # anything the adapter process left behind
        cap_stderr_file(group)
        if ended is None:
            group.ended = INTERRUPTED
            break
        last_end = ended
        if group.missing() and group.done == before:
            last = (process_stderr(group).strip().splitlines() or ["no stderr"])[-1]
            group.ended = f"not run: the adapter process {ended} before reaching this test: {last}"
            break
        group.restarts += bool(group.missing())
    for test_id in group.missing():
        append_error(group, cases, options, test_id, group.ended or INTERRUPTED, produced=False)


# --- the whole matrix ---------------------------------------------------------------------------


def safe_name(adapter: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in adapter)


def new_group(adapter: str, planned: list[str], work_dir: Path, shard: str = "") -> GroupRun:
    """A group whose plan file is written and whose earlier stream and stderr are gone.

    The plan file holds the test ids as the adapter process builds them; the group holds them as
    its stream stores them (``safe_text``: an adapter name's control characters as ``\\xNN``),
    which is how it finds them there."""
    name = safe_name(adapter) + (f".{shard.replace('/', 'of')}" if shard else "")
    group = GroupRun(adapter=adapter, planned=[safe_text(test_id) for test_id in planned],
                     stream=work_dir / f"{name}.jsonl",
                     group_json=work_dir / f"{name}.json", stderr_path=work_dir / f"{name}.stderr",
                     plan_path=work_dir / f"{name}.plan.json", shard=shard)
    for leftover in (group.stream, group.stderr_path, group.group_json):
        leftover.unlink(missing_ok=True)
    group.plan_path.write_text(json.dumps(planned))
    return group


def shard_groups(adapter: str, planned: list[str], work_dir: Path, shards: int) -> list[GroupRun]:
    """The adapter's plan in ``shards`` contiguous parts, a group (a process) each.

    Contiguous, in the plan's case order, because neighbouring cases share a
    structure: an export or compilation made for a structure then serves the
    cases around it in the same process, and few structures are paid twice.
    """
    count = max(1, min(shards, len(planned)))
    if count == 1:
        return [new_group(adapter, planned, work_dir)]
    bounds = [round(n * len(planned) / count) for n in range(count + 1)]
    return [new_group(adapter, planned[bounds[n]:bounds[n + 1]], work_dir, f"{n + 1}/{count}")
            for n in range(count)]


def progress_line(group: GroupRun, elapsed: float) -> str:
    """'torch 120/924 (2 failed), 45 s, about 4 min left': one adapter's part, with an estimate from its
    pace so far once it has one, or 'done' at the end."""
    counts = f"{group.label} {group.done}/{group.total}" + (f" ({group.failed} failed)" if group.failed else "")
    if group.done >= group.total or group.ended:
        return f"{counts}, done"
    left = "" if not group.done else f", about {duration_text(elapsed / group.done * (group.total - group.done))} left"
    return f"{counts}, {duration_text(elapsed)}{left}"


def duration_text(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def group_records(group: GroupRun) -> list[Record]:
    """The group's records: one per planned test id, the first one written for it."""
    if not group.stream.exists():
        return []
    planned, by_id = set(group.planned), {}
    for line in read_jsonl(group.stream):
        if line.get("record") == "result" and line["test_id"] in planned:
            by_id.setdefault(line["test_id"], Record.from_dict(line))
    return list(by_id.values())
