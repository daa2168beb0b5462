"""``conformance run``: validate the input, plan, supervise one process per adapter, write the reports.

Everything is checked before anything is written (adapters, -k, options,
fixtures, every output path); then the report dir is locked (one run at a
time), the plan is made — every case x adapter x device x dtype asked for —
and each adapter's process runs exactly its part of it. Writes
``results.json``, ``junit.xml`` and ``index.html`` to the report dir (each
atomically), plus per-adapter streams under ``REPORT_DIR/streams/`` (cleared
at the start: a report never mixes in an earlier run's streams). The run
ends with one record per planned result; an interrupted run (any number of
Ctrl-C, SIGTERM) still writes all three, marked incomplete. Every output
counts outcomes with ``conformance.results.records.Record.outcome`` (known
differences apart from unexpected fails and errors), and the
known-differences entries that matched no result are named at the end of the
run and in the reports. Exit 0 when nothing failed or errored unexpectedly,
1 when something did, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import datetime
import math
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conformance import __version__
from conformance.adapters import adapter_paths, load_adapter
from conformance.adapters.contract import LoadedAdapter, check_distinct_names
from conformance.commands.exits import EXIT_FAILED, EXIT_OK, UsageError
from conformance.commands.supervisor import (
    INTERRUPTED,
    GroupRun,
    group_records,
    progress_line,
    shard_groups,
    supervise,
)
from conformance.files import REPORT_FILES, check_output_dir, check_outputs_in
from conformance.fixtures import default_fixtures_dir, load_cases, load_unseen, manifest_sha256
from conformance.matrix.case import REDUCED_PRECISION, Case, is_reduced_precision
from conformance.matrix.covering import CoveringPlan, covering_plan
from conformance.matrix.properties import remember
from conformance.matrix.unseen import check_count, check_seed, fresh_seed, is_unseen
from conformance.plugin import ConformanceParam, device_rows, keyword_filter, matrix_params
from conformance.results.lock import ReportDirBusy, ReportDirLock
from conformance.results.machine import machine_info
from conformance.results.messages import short_message
from conformance.results.records import (
    OUTCOMES,
    Record,
    audit_known,
    outcome_counts,
    records_of,
    reduced_precision_label,
    results_document,
    run_selection,
    unexpected_count,
    unseen_record,
)
from conformance.results.user_lists import user_known_lists, user_list_lines
from conformance.verdict.known_differences import (
    Audit,
    KnownDifferences,
    known_difference_files,
    load_known_differences,
)

PROGRESS_EVERY = 5.0


def check_keyword(expression: str) -> None:
    if not expression:
        return
    from _pytest.mark.expression import Expression  # pytest's own -k grammar

    try:
        Expression.compile(expression)
    except Exception as exc:  # noqa: BLE001 - SyntaxError today, ParseError in older pytest
        message = getattr(exc, "msg", None) or str(exc)
        raise UsageError(f"bad -k expression {expression!r}: {message}") from None


def check_outputs(report_dir: Path) -> None:
    """Every path the run will write, checked before anything is: nothing is created here."""
    check_outputs_in(report_dir, REPORT_FILES)
    check_output_dir(report_dir / "streams")


def check_onnx_opset(opset: int | None) -> None:
    """``--onnx-opset``: within what the graphs need and what the installed onnx knows."""
    if opset is None:
        return
    from conformance.onnx import check_opset

    try:
        check_opset(opset)
    except ImportError:
        raise UsageError("--onnx-opset needs the onnx package (pip install -e '.[onnx]')") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def machine_devices() -> str:
    """``--device auto``: ``all`` where the machine has an NVIDIA GPU, else ``cpu`` (no cuda rows that
    could only be skipped). Read from the device nodes: the plan is made without importing a framework."""
    return "all" if any(Path("/dev").glob("nvidia[0-9]*")) else "cpu"


def validated_options(args: argparse.Namespace) -> dict:
    if args.device == "auto":
        args.device = machine_devices()
    check_keyword(args.keyword)
    if args.jobs < 1 or args.shards < 1 or args.max_restarts < 0:
        raise UsageError("--jobs and --shards must be >= 1 and --max-restarts >= 0")
    for flag, seconds in (("--case-timeout", args.case_timeout), ("--startup-timeout", args.startup_timeout)):
        if not (math.isfinite(seconds) and seconds > 0):
            raise UsageError(f"{flag} {seconds:g}: expected a finite number of seconds > 0")
    adapters = {requested: load_adapter(requested)  # UnknownAdapterError -> one line, exit 2
                for requested in args.adapter or list(adapter_paths())}
    try:
        check_distinct_names(adapters)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_outputs(args.report_dir)
    check_onnx_opset(args.onnx_opset)
    unseen = unseen_choice(args.unseen, args.seed)
    builtin = not args.no_builtin_known_differences
    try:
        known = load_known_differences(known_difference_files(args.known_differences, builtin))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return {"device": args.device, "dtype": args.dtype, "keyword": args.keyword, "adapters": adapters,
            "fixtures_dir": args.fixtures_dir, "known": known, "builtin_known_differences": builtin,
            "known_differences": [str(Path(p).resolve()) for p in args.known_differences],
            "case_timeout": args.case_timeout, "startup_timeout": args.startup_timeout,
            "max_restarts": args.max_restarts,
            "reduced_precision_defaults": args.reduced_precision_defaults, "onnx_opset": args.onnx_opset,
            "unseen": unseen}


def unseen_choice(count: int, seed: int | None) -> dict[str, int] | None:
    """``selection.unseen`` of a run with ``--unseen N [--seed S]`` (a fresh seed where none is given);
    None without; UsageError (one line, exit 2) for a count or seed out of range."""
    try:
        check_count(count)
        if seed is not None:
            check_seed(seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if seed is not None and not count:
        raise UsageError("--seed S goes with --unseen N (the seed of the cases drawn at run time)")
    return unseen_record(count, fresh_seed() if seed is None else seed)


class Progress:
    """Progress on stderr, at most every few seconds, from any thread: on a terminal one line per
    adapter, rewritten in place; elsewhere (a CI log) a plain line for each adapter whose count
    moved since the last one, so that a log holds no line twice."""

    def __init__(self, groups: list[GroupRun]):
        self.groups, self.lock, self.last, self.start = groups, threading.Lock(), 0.0, time.monotonic()
        self.shown: dict[int, str] = {}
        self.terminal = sys.stderr.isatty()

    def __call__(self, force: bool = False) -> None:
        with self.lock:
            if not force and time.monotonic() - self.last < PROGRESS_EVERY:
                return
            self.last = time.monotonic()
            lines = [progress_line(group, self.last - self.start) for group in self.groups]
            if self.terminal:
                rewind = f"\x1b[{len(lines)}F" if self.shown else ""
                print(rewind + "".join(f"\x1b[2Kprogress: {line}\n" for line in lines), end="", file=sys.stderr)
                self.shown = dict(enumerate(lines))
            else:
                for index, line in enumerate(lines):
                    counts = line.split(",")[0]
                    if self.shown.get(index, "").split(",")[0] != counts or (force and self.shown.get(index) != line):
                        print(f"progress: {line}", file=sys.stderr)
                        self.shown[index] = line
            sys.stderr.flush()


def adapter_plan(adapter: LoadedAdapter, cases: list[Case], options: dict) -> list[str]:
    """The test ids one adapter is asked for: the matrix rows of --device (the devices it declares)
    and --dtype that -k selects; for an adapter that compiles per structure, in a run that names
    no -k and no --full, only those of the covering plan (``on_covering_plan``)."""
    selects = keyword_filter(options["keyword"])
    params = matrix_params(cases, device_rows(options["device"], [adapter]), options["dtype"])
    known, versions = options["known"], options["known"].installed_versions()
    params = [p for p in params if selects(p, known.reason_for(p.test_id, versions) is not None)]
    if covers(adapter, options):  # the unseen cases all run: the covering plan is the fixed matrix's
        params = on_covering_plan([p for p in params if not is_unseen(p.case.id)], options["covering"], known,
                                  versions) + [p for p in params if is_unseen(p.case.id)]
    return [p.test_id for p in params]


def check_selection(plans: dict[str, list[str]], args: argparse.Namespace) -> None:
    """A selection that matches no test is refused before the report dir is touched: an earlier
    report there must not be replaced by an empty one."""
    if any(plans.values()):
        return
    asked = " ".join([f"-k {args.keyword!r}"] * bool(args.keyword) + [f"--device {args.device}",
                                                                      f"--dtype {args.dtype}"])
    raise UsageError(f"the selection matches no test ({asked}, adapters {', '.join(plans)}); nothing was run "
                     "or written (conformance cases --match PATTERN lists the case ids a pattern selects)")


def selection_line(plans: dict[str, list[str]], options: dict) -> str:
    """What the run is about to do, before it does it: the tests of each adapter (a -k that
    matches an adapter's name shows here as that adapter's every test)."""
    parts = []
    for requested, plan in plans.items():
        adapter = options["adapters"][requested]
        parts.append(f"{adapter.name} {len(plan)} tests" + (" (covering plan)" if covers(adapter, options) else ""))
    unseen = options["unseen"]
    tests = sum(is_unseen(test_id) for plan in plans.values() for test_id in plan)
    drawn = f"; {tests} of them on the {unseen['count']} unseen cases (seed {unseen['seed']})" if unseen else ""
    return "selected: " + ", ".join(parts) + drawn


def covers(adapter: LoadedAdapter, options: dict) -> bool:
    """Whether the covering plan narrows this adapter's part of the run."""
    return options["covering"] is not None and adapter.compiles_per_structure


def on_covering_plan(params: list[ConformanceParam], plan: CoveringPlan, known: KnownDifferences,
                     versions: dict[str, str]) -> list[ConformanceParam]:
    """The params of the covering plan, and for every known-differences entry the first param it
    matches: each documented difference of the adapter still shows in the default run."""
    shown = {next((p.test_id for p in params if entry.matches(p.test_id)), None)
             for entry in known.entries if entry.applies(versions)}
    return [p for p in params if plan.holds(p.case.id, p.dtype) or p.test_id in shown]


def covering_for(args: argparse.Namespace, cases: list[Case]) -> CoveringPlan | None:
    """The covering plan of a default run; None with --full or -k (a selection asked for by name
    is run whole)."""
    return None if args.full or args.keyword else covering_plan(cases)


def adapter_summaries(groups: list[GroupRun]) -> dict:
    """What each adapter process said about itself, with how many processes its part took and
    their largest peak resident memory (``peak_rss_mib``, from the supervisor's ``wait4``)."""
    import json

    summary = {}
    for group in groups:
        try:
            adapters = json.loads(group.group_json.read_text())["adapters"]
        except (OSError, ValueError, KeyError):
            continue
        for name, entry in adapters.items():  # one adapter per group; its shards' figures add up
            earlier = summary.get(name, {})
            entry["processes"] = earlier.get("processes", 0) + group.restarts + 1
            entry["peak_rss_mib"] = max((m for m in (earlier.get("peak_rss_mib"), group.peak_rss_mib)
                                         if m is not None), default=None)
        summary.update(adapters)
    return summary


def write_outputs(report_dir: Path, records: list[Record], groups: list[GroupRun], fixtures_dir: Path,
                  complete: bool, created: str, audit: Audit | None, options: dict) -> dict:
    from conformance.report import write_report

    document = results_document(records, complete=complete, created=created,
                                fixtures_sha256=manifest_sha256(fixtures_dir), machine=machine_info(),
                                adapters=adapter_summaries(groups), known_checked=audit and audit.checked,
                                known_unmatched=audit and audit.unmatched_patterns,
                                planned=sum(group.total for group in groups), suite_version=__version__,
                                selection=run_selection(keyword=options["keyword"], device=options["device"],
                                                        dtype=options["dtype"],
                                                        adapters=[a.name for a in options["adapters"].values()],
                                                        covering=covering_record(options),
                                                        unseen=options["unseen"]),
                                user_known_lists=user_known_lists(options["known"], records, {
                                    name: entry.get("versions") for name, entry in adapter_summaries(groups).items()}))
    check_outputs(report_dir)  # still writable: nothing is replaced unless everything can be
    write_report(document, report_dir)
    return document


def covered_adapters(options: dict) -> list[str]:
    """The adapters whose part of this run the covering plan narrowed."""
    return sorted(a.name for a in options["adapters"].values() if covers(a, options))


def covering_record(options: dict) -> dict | None:
    """``selection.covering`` of the results document: the plan, the adapters it narrowed and the
    case × dtype pairs it left to the full plan (why: ``covering.WHY_LEFT_OUT``); None for a run
    that no covering plan narrowed."""
    adapters = covered_adapters(options)
    return dict(options["covering"].summary(), adapters=adapters) if adapters else None


def plan_line(document: dict) -> str | None:
    """The summary's plain word that the run was the default (covering) plan, not the full one."""
    covering = (document.get("selection") or {}).get("covering")
    if not covering:
        return None
    return (f"plan: the covering plan (not the full matrix) for {', '.join(covering['adapters'])}: it holds "
            f"{covering['pairs']} of {covering['of']} case x dtype pairs (every factor value and pair of "
            f"values), plus one result per documented known difference; the other "
            f"{len(covering['left_to_full'])} are left to the full plan: conformance run --full")


SUMMARY_COLUMNS = {"pass": "pass", "fail": "fail", "error": "error", "known": "known",
                   "unsupported": "unsup", "skipped": "skip", "not_run": "notrun"}


def summary_table(document: dict) -> str:
    """Outcome counts per adapter and in all; fail and error are the unexpected ones.

    The float16 and bfloat16 rows (``REDUCED_PRECISION``) get a table of their own
    under the float32/float64 one: they are judged by another rule (tolerance.py)
    and counted apart from the float32 verdict. The unseen cases of a run with
    ``--unseen`` get one of their own, and a line "N fixed cases, M unseen (seed S)".
    The unexpected ones of all count in the exit status."""
    records = records_of(document)
    fixed = [record for record in records if not is_unseen(record.case_id)]
    lines = dtype_tables(fixed) if fixed or not records else []
    unseen = (document.get("selection") or {}).get("unseen")
    if unseen:
        drawn = [record for record in records if is_unseen(record.case_id)]
        lines += [""] * bool(lines) + [f"unseen cases, drawn at run time (seed {unseen['seed']}; the same rules, "
                                       "counted apart from the fixed matrix):"] + outcome_table(drawn)
        lines.append(f"{len({r.case_id for r in fixed})} fixed cases, {len({r.case_id for r in drawn})} unseen "
                     f"(seed {unseen['seed']})")
    totals = document["counts"]
    by_user = sum(listed["results"] for listed in document.get("user_known_lists") or [])
    lines.append(f"{unexpected_count(totals)} unexpected (fail, error), {totals['known']} known differences "
                 f"(fails and errors the known-differences lists explain"
                 + (f"; {by_user} of them by your lists, not the built-in one)" if by_user else ")"))
    if document.get("planned") is not None and document["produced"] != document["planned"]:
        missing = document["planned"] - document["produced"]
        lines.append(f"{document['produced']} of {document['planned']} planned results produced; of the other "
                     f"{missing}, {totals['not_run']} not run (the run was stopped before them) and "
                     f"{missing - totals['not_run']} errors saying why")
    label = reduced_precision_label(records)
    plan = plan_line(document)
    return "\n".join(lines + ([f"labelled mode: {label}"] if label else []) + ([plan] if plan else []))


def dtype_tables(records: list[Record]) -> list[str]:
    """The float32/float64 outcome table, and the reduced-precision rows' under it."""
    full = [record for record in records if not is_reduced_precision(record.dtype)]
    reduced = [record for record in records if is_reduced_precision(record.dtype)]
    lines = outcome_table(full) if full or not reduced else []  # no empty float32 table for a reduced-only run
    if reduced:
        if lines:
            lines.append("")
        lines.append(f"{' and '.join(REDUCED_PRECISION)} rows (the reduced-precision rule, counted apart):")
        lines += outcome_table(reduced)
    return lines


def outcome_table(records: list[Record]) -> list[str]:
    """The lines of one outcome table: a row per adapter, then ``all``."""
    by_adapter: dict[str, list[Record]] = {}
    for record in records:
        by_adapter.setdefault(record.adapter, []).append(record)
    rows = [(adapter, outcome_counts(of_adapter)) for adapter, of_adapter in sorted(by_adapter.items())]
    rows.append(("all", outcome_counts(records)))
    header = f"{'adapter':<20}" + "".join(f" {SUMMARY_COLUMNS[name]:>6}" for name in OUTCOMES)
    return [header, "-" * len(header)] + [
        f"{name:<20}" + "".join(f" {counts[o]:>6}" for o in OUTCOMES) for name, counts in rows]


UNEXPECTED_SHOWN = 10


def unexpected_lines(document: dict) -> list[str]:
    """The first unexpected fails and errors, each with its message's first meaningful line
    (``short_message``; the whole text is in results.json and the report's panel)."""
    unexpected = [record for record in records_of(document) if record.unexpected]
    if not unexpected:
        return []
    shown = unexpected[:UNEXPECTED_SHOWN]
    more = f"; the first {len(shown)}" if len(unexpected) > len(shown) else ""
    return [f"unexpected fails and errors ({len(unexpected)}{more}):"] + [
        f"  {record.test_id}: {short_message(record.message)}"
        + (f"\n    diagnosis: {record.diagnosis}" if record.diagnosis else "") for record in shown]


def unmatched_lines(audit: Audit | None) -> list[str]:
    """The known-differences entries that matched no result, each with where it is written."""
    if audit is None or not audit.unmatched:
        return []
    return [f"known-differences entries that matched no result ({len(audit.unmatched)}):"] + [
        f"  {entry.text}   # {entry.reason}  ({entry.origin})" for entry in audit.unmatched]


def unavailable_lines(document: dict, named: list[str]) -> list[str]:
    """Each adapter named with --adapter that could not run at all (its ``available()`` gave a
    reason): all its results are skips, and a run that ran nothing it was asked for is no success."""
    adapters = document.get("adapters") or {}
    return [f"conformance: adapter {name} could not run here: {adapters[name].get('reason')} "
            f"(its {sum(r['adapter'] == name for r in document['results'])} results are skipped)"
            for name in named if name in adapters and not adapters[name].get("available", True)]


def unexpected_failures(document: dict) -> int:
    return unexpected_count(document["counts"])


class StopOnSignal:
    """Ctrl-C and SIGTERM, any number of times, only ask the run to stop: it then writes the
    reports of everything finished, and no further signal can cut that short."""

    def __init__(self, stop: threading.Event):
        self.stop = stop
        self.previous = {}

    def __enter__(self) -> StopOnSignal:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def handle(self, signum, frame) -> None:
        if not self.stop.is_set():
            print("conformance: interrupted; stopping the adapter processes and writing the reports of "
                  "what finished", file=sys.stderr, flush=True)
        self.stop.set()

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def prepare_report_dir(report_dir: Path) -> Path:
    """The locked report dir with an empty ``streams/``: no earlier run's stream can be merged in.
    A ``streams`` that is a link is removed, not followed: nothing is written outside the report dir."""
    try:
        ReportDirLock(report_dir).acquire()  # held until this process ends
    except ReportDirBusy as exc:
        raise UsageError(str(exc)) from None
    stream_dir = report_dir / "streams"
    if stream_dir.is_symlink():
        stream_dir.unlink()
    shutil.rmtree(stream_dir, ignore_errors=True)
    stream_dir.mkdir(parents=True, exist_ok=True)
    return stream_dir


def supervise_all(groups: list[GroupRun], cases: dict[str, Case], options: dict, jobs: int) -> None:
    progress = Progress(groups)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(supervise, group, cases, options, progress) for group in groups]
        while not all(future.done() for future in futures):
            time.sleep(0.2)
        for future in futures:
            future.result()
    progress(force=True)


def run_command(args: argparse.Namespace) -> int:
    options = validated_options(args)
    fixtures_dir = args.fixtures_dir or default_fixtures_dir()
    options["fixtures_checked"] = manifest_sha256(fixtures_dir)  # taken before the checks it vouches for
    case_list = load_cases(fixtures_dir)
    options["covering"] = covering_for(args, case_list)
    unseen = options["unseen"]
    case_list += load_unseen(unseen["count"], unseen["seed"]) if unseen else []
    remember(case_list)  # the properties known-differences conditions are judged by
    cases = {case.id: case for case in case_list}
    try:
        plans = {requested: adapter_plan(adapter, case_list, options)
                 for requested, adapter in options["adapters"].items()}
    except ValueError as exc:  # a -k expression pytest would refuse once it reached a test
        raise UsageError(str(exc)) from None
    check_selection(plans, args)
    options["stop"] = stop = threading.Event()
    with StopOnSignal(stop):
        stream_dir = prepare_report_dir(args.report_dir)  # a refused report dir is the run's one line
        print(selection_line(plans, options), file=sys.stderr, flush=True)
        groups = [group for requested, plan in plans.items()
                  for group in shard_groups(requested, plan, stream_dir, args.shards)]
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        supervise_all(groups, cases, options, args.jobs)
        interrupted = stop.is_set()
        complete = not interrupted and not any(group.ended for group in groups)
        records = [record for group in groups for record in group_records(group)]
        versions = {name: entry.get("versions") for name, entry in adapter_summaries(groups).items()}
        narrowed = bool(args.keyword) or bool(covered_adapters(options))
        audit = audit_known(options["known"], records, {c.id: c.dtypes for c in case_list},
                            selected=narrowed, versions=versions) if complete else None
        document = write_outputs(args.report_dir, records, groups, fixtures_dir, complete, created, audit,
                                 options)
    print(summary_table(document))
    for line in user_list_lines(document) + unexpected_lines(document) + unmatched_lines(audit):
        print(line)
    print(f"reports: {args.report_dir / 'index.html'}, results.json, junit.xml"
          + ("" if complete else "  (INCOMPLETE run)"))
    for group in groups:
        if group.ended and group.ended != INTERRUPTED:
            print(f"conformance: adapter {group.label}: {short_message(group.ended.removeprefix('not run: '))} "
                  f"(see {group.stderr_path})", file=sys.stderr)
    unavailable = unavailable_lines(document, [a.name for a in options["adapters"].values()] if args.adapter else [])
    for line in unavailable:
        print(line)
    if interrupted:
        return 130
    if unavailable:
        return EXIT_FAILED
    if not document["results"]:
        print("conformance: no test ran (check --adapter, --device, --dtype and -k)", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_FAILED if unexpected_failures(document) else EXIT_OK
