"""``conformance run``: validate the input, supervise one process per adapter, write the reports.

Writes ``results.json``, ``junit.xml`` and ``index.html`` to the report dir
(each atomically), plus per-adapter streams under ``REPORT_DIR/streams/``.
An interrupted run (Ctrl-C, SIGTERM) still writes all three, marked
incomplete. Every output counts outcomes with ``conformance.results.records.Record.outcome``
(known differences apart from unexpected fails and errors), and the
known-differences entries that matched no result are named at the end of the
run and in the reports. Exit 0 when nothing failed or errored unexpectedly,
1 when something did, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import datetime
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conformance.adapters import adapter_paths, load_adapter
from conformance.commands.exits import EXIT_FAILED, EXIT_OK, UsageError
from conformance.commands.supervisor import GroupRun, group_records, new_group, progress_line, supervise
from conformance.fixtures import default_fixtures_dir, load_cases, manifest_sha256
from conformance.results.machine import machine_info
from conformance.results.records import (
    OUTCOMES,
    Record,
    audit_known,
    outcome_counts,
    records_of,
    results_document,
    unexpected_count,
    write_json_atomic,
)
from conformance.verdict.known_differences import Audit, known_failure_files, load_known_failures

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


def check_writable(report_dir: Path) -> None:
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        probe = report_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"report dir {report_dir} is not writable ({exc.strerror or exc})") from None


def validated_options(args: argparse.Namespace) -> dict:
    check_keyword(args.keyword)
    check_writable(args.report_dir)
    if args.jobs < 1 or args.case_timeout <= 0:
        raise UsageError("--jobs must be >= 1 and --case-timeout > 0")
    for name in args.adapter:
        load_adapter(name)  # UnknownAdapterError -> one line, exit 2
    builtin = not args.no_builtin_known_failures
    try:
        known = load_known_failures(known_failure_files(args.known_failures, builtin))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return {"device": args.device, "dtype": args.dtype, "keyword": args.keyword,
            "fixtures_dir": args.fixtures_dir, "known": known, "builtin_known_failures": builtin,
            "known_failures": [str(Path(p).resolve()) for p in args.known_failures],
            "case_timeout": args.case_timeout, "tf32": args.tf32}


class Progress:
    """Prints a progress line at most every few seconds, from any thread."""

    def __init__(self, groups: list[GroupRun]):
        self.groups, self.lock, self.last = groups, threading.Lock(), 0.0

    def __call__(self, force: bool = False) -> None:
        with self.lock:
            if force or time.monotonic() - self.last >= PROGRESS_EVERY:
                self.last = time.monotonic()
                print(progress_line(self.groups), file=sys.stderr, flush=True)


def adapter_summaries(groups: list[GroupRun]) -> dict:
    import json

    summary = {}
    for group in groups:
        try:
            summary.update(json.loads(group.group_json.read_text())["adapters"])
        except (OSError, ValueError, KeyError):
            continue
    return summary


def write_outputs(report_dir: Path, records: list[Record], groups: list[GroupRun], fixtures_dir: Path,
                  complete: bool, created: str, audit: Audit | None) -> dict:
    from conformance.report import render_report
    from conformance.results.junit import write_junit

    document = results_document(records, complete=complete, created=created,
                                fixtures_sha256=manifest_sha256(fixtures_dir), machine=machine_info(),
                                adapters=adapter_summaries(groups), known_checked=audit and audit.checked,
                                known_unmatched=audit and audit.unmatched_patterns)
    write_json_atomic(report_dir / "results.json", document)
    write_junit(report_dir / "junit.xml", records_of(document))
    render_report(document, report_dir)
    return document


SUMMARY_COLUMNS = {"pass": "pass", "fail": "fail", "error": "error", "known": "known",
                   "unsupported": "unsup", "skipped": "skip"}


def summary_table(document: dict) -> str:
    """Outcome counts per adapter and in all; fail and error are the unexpected ones."""
    by_adapter: dict[str, list[Record]] = {}
    for record in records_of(document):
        by_adapter.setdefault(record.adapter, []).append(record)
    rows = [(adapter, outcome_counts(records)) for adapter, records in sorted(by_adapter.items())]
    rows.append(("all", document["counts"]))
    header = f"{'adapter':<20}" + "".join(f" {SUMMARY_COLUMNS[name]:>6}" for name in OUTCOMES)
    lines = [header, "-" * len(header)]
    lines += [f"{name:<20}" + "".join(f" {counts[o]:>6}" for o in OUTCOMES) for name, counts in rows]
    totals = rows[-1][1]
    lines.append(f"{unexpected_count(totals)} unexpected (fail, error), {totals['known']} known differences "
                 f"(fails and errors the known-differences lists explain)")
    return "\n".join(lines)


def unmatched_lines(audit: Audit | None) -> list[str]:
    """The known-differences entries that matched no result, each with where it is written."""
    if audit is None or not audit.unmatched:
        return []
    return [f"known-differences entries that matched no result ({len(audit.unmatched)}):"] + [
        f"  {entry.pattern}   # {entry.reason}  ({entry.origin})" for entry in audit.unmatched]


def unexpected_failures(document: dict) -> int:
    return unexpected_count(document["counts"])


def _raise_interrupt(signum, frame):  # SIGTERM behaves like Ctrl-C: finish the reports
    raise KeyboardInterrupt


def run_command(args: argparse.Namespace) -> int:
    options = validated_options(args)
    fixtures_dir = args.fixtures_dir or default_fixtures_dir()
    cases = {case.id: case for case in load_cases(fixtures_dir)}
    stream_dir = args.report_dir / "streams"
    stream_dir.mkdir(parents=True, exist_ok=True)
    groups = [new_group(name, stream_dir) for name in (args.adapter or list(adapter_paths()))]
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    progress = Progress(groups)
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt)
    options["stop"] = threading.Event()
    pool = ThreadPoolExecutor(max_workers=args.jobs)
    complete = False
    try:
        futures = [pool.submit(supervise, g, cases, options, progress) for g in groups]
        while not all(f.done() for f in futures):
            time.sleep(0.5)
        for future in futures:
            future.result()
        complete = True
    except KeyboardInterrupt:
        options["stop"].set()
        print("conformance: interrupted; writing the reports of what finished", file=sys.stderr)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        signal.signal(signal.SIGTERM, previous_handler)
    progress(force=True)
    records = [record for group in groups for record in group_records(group)]
    audit = audit_known(options["known"], records, {c.id: c.dtypes for c in cases.values()},
                        selected=bool(args.keyword)) if complete else None
    document = write_outputs(args.report_dir, records, groups, fixtures_dir, complete, created, audit)
    print(summary_table(document))
    for line in unmatched_lines(audit):
        print(line)
    print(f"reports: {args.report_dir / 'index.html'}, results.json, junit.xml"
          + ("" if complete else "  (INCOMPLETE run)"))
    if not complete:
        return 130
    broken = [g for g in groups if g.broken]
    for group in broken:
        print(f"conformance: adapter {group.adapter}: {group.broken} "
              f"(see {group.stderr_path})", file=sys.stderr)
    if not document["results"]:
        print("conformance: no test ran (check --adapter, --device, --dtype and -k)", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_FAILED if broken or unexpected_failures(document) else EXIT_OK
