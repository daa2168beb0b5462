"""``conformance run``: validate the input, supervise one process per adapter, write the reports.

Writes ``results.json``, ``junit.xml`` and ``index.html`` to the report dir
(each atomically), plus per-adapter streams under ``REPORT_DIR/streams/``.
An interrupted run (Ctrl-C, SIGTERM) still writes all three, marked
incomplete. Exit 0 when nothing failed or errored (documented known
differences aside), 1 when something did, 2 on bad usage.
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
from conformance.cli import EXIT_FAILED, EXIT_OK, UsageError
from conformance.fixtures import default_fixtures_dir, load_cases, manifest_sha256
from conformance.known_failures import load_known_failures
from conformance.machine import machine_info
from conformance.plugin import DEFAULT_KNOWN_FAILURES
from conformance.results import results_document, status_counts, write_json_atomic
from conformance.runner import GroupRun, group_records, new_group, progress_line, supervise

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
    known_failures = args.known_failures or DEFAULT_KNOWN_FAILURES
    try:
        load_known_failures(known_failures)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return {"device": args.device, "dtype": args.dtype, "keyword": args.keyword,
            "fixtures_dir": args.fixtures_dir, "known_failures": str(known_failures),
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


def write_outputs(report_dir: Path, groups: list[GroupRun], fixtures_dir: Path, complete: bool,
                  created: str) -> dict:
    from conformance.junit import write_junit
    from conformance.report import render_report

    records = [record for group in groups for record in group_records(group)]
    document = results_document(records, complete=complete, created=created,
                                fixtures_sha256=manifest_sha256(fixtures_dir), machine=machine_info(),
                                adapters=adapter_summaries(groups))
    write_json_atomic(report_dir / "results.json", document)
    write_junit(report_dir / "junit.xml", document["results"])
    render_report(document, report_dir)
    return document


def summary_table(document: dict) -> str:
    by_adapter: dict[str, list[dict]] = {}
    for record in document["results"]:
        by_adapter.setdefault(record["adapter"], []).append(record)
    header = f"{'adapter':<20} {'pass':>6} {'fail':>6} {'known':>6} {'unsup':>6} {'error':>6} {'skip':>6}"
    # "known" counts the fails and errors that known_failures.txt explains; fail/error the rest.
    lines = [header, "-" * len(header)]
    for adapter, records in sorted(by_adapter.items()):
        known = [r for r in records if r["run_info"].get("known_failure")]
        counts = status_counts(r for r in records if not r["run_info"].get("known_failure"))
        lines.append(f"{adapter:<20} {counts['pass']:>6} {counts['fail']:>6} {len(known):>6} "
                     f"{counts['unsupported']:>6} {counts['error']:>6} {counts['skipped']:>6}")
    return "\n".join(lines)


def unexpected_failures(document: dict) -> int:
    return sum(1 for r in document["results"]
               if r["status"] in ("fail", "error") and not r["run_info"].get("known_failure"))


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
    document = write_outputs(args.report_dir, groups, fixtures_dir, complete, created)
    print(summary_table(document))
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
