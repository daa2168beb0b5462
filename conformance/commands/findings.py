"""The measured part of FINDINGS.md, counted from a results file.

The findings themselves (what a framework does differently, the evidence, the
source lines) are written by hand. The figures beside them — per adapter and
device, how many results passed, were known differences, failed or errored
unexpectedly, or were unsupported, and for which reasons — are counted here
from a run's results so that they cannot drift from what the suite measured.
``conformance findings RESULTS`` prints the sections; ``--write FINDINGS.md``
replaces each one between its markers and leaves the written text alone.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable
from typing import Any

from conformance.adapters import BUILTIN_ADAPTERS
from conformance.commands.exits import EXIT_OK, UsageError
from conformance.files import write_text_atomic
from conformance.matrix.case import REDUCED_PRECISION, is_reduced_precision
from conformance.results.messages import short_message
from conformance.results.records import Record, records_of, reduced_precision_label

COUNTED = ("pass", "known", "fail", "error", "unsupported")
Column = tuple[str, str]  # (adapter, device): one row of the counts table


def marker(section: str, end: bool = False) -> str:
    return f"<!-- findings:{section}:{'end' if end else 'start'} -->"


def column_of(record: Record) -> Column:
    return record.adapter, record.device


def reason_of(record: Record) -> str:
    """Why a result is what it is: the known-differences entry's reason, else the first meaningful
    line of the result's message (``short_message``: a 30-line backtrace is no table cell)."""
    return record.known or short_message(record.message)


def adapter_order(name: str) -> tuple[int, str]:
    """Built-in adapters in the registry's order (Keras on TensorFlow first), then the rest by name."""
    builtins = list(BUILTIN_ADAPTERS)
    return (builtins.index(name) if name in builtins else len(builtins), name)


def outcome_counts_by_column(records: Iterable[Record]) -> dict[Column, Counter]:
    counts: dict[Column, Counter] = {}
    for record in records:
        counts.setdefault(column_of(record), Counter())[record.outcome] += 1
    return dict(sorted(counts.items(), key=lambda item: (adapter_order(item[0][0]), item[0][1])))


def cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def versions_of(document: dict[str, Any], adapter: str) -> str:
    versions = document.get("adapters", {}).get(adapter, {}).get("versions", {})
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def provenance(document: dict[str, Any]) -> str:
    machine = document.get("machine", {})
    state = "complete" if document.get("complete") else "INCOMPLETE"
    label = reduced_precision_label(records_of(document))
    return (f"Counted by `conformance findings` from a {state} run created {document.get('created') or '?'} "
            f"on {machine.get('cpu') or '?'} (Python {machine.get('python') or '?'}), "
            f"{len(document['results'])} results." + (f" Labelled mode: {label}." if label else ""))


def counts_section(document: dict[str, Any]) -> str:
    """One row per adapter and device that ran; fail and error are the unexpected ones. The float16
    and bfloat16 rows get a table of their own: they are counted apart from the float32 verdict."""
    records = records_of(document)
    full = [record for record in records if not is_reduced_precision(record.dtype)]
    reduced = [record for record in records if is_reduced_precision(record.dtype)]
    lines = [provenance(document), "", *counts_table(document, full)]
    if reduced:
        lines += ["", f"The {' and '.join(REDUCED_PRECISION)} rows, counted apart (the reduced-precision rule):", "",
                  *counts_table(document, reduced)]
    skipped = skipped_lines(records)
    return "\n".join(lines + ([""] + skipped if skipped else []))


def counts_table(document: dict[str, Any], records: list[Record]) -> list[str]:
    lines = ["| adapter | device | versions | results | " + " | ".join(COUNTED) + " |",
             "|---" * (4 + len(COUNTED)) + "|"]
    for (adapter, device), counts in outcome_counts_by_column(records).items():
        if counts["skipped"] == sum(counts.values()):
            continue
        figures = " | ".join(str(counts[name]) for name in COUNTED)
        lines.append(f"| {cell(adapter)} | {cell(device)} | {cell(versions_of(document, adapter))} | "
                     f"{sum(counts.values())} | {figures} |")
    return lines


def skipped_lines(records: list[Record]) -> list[str]:
    """The adapter and device pairs that produced nothing but skips, grouped by the reason given."""
    idle = {column for column, c in outcome_counts_by_column(records).items() if c["skipped"] == sum(c.values())}
    adapters_by_reason: dict[tuple[str, str], set[str]] = {}
    for record in records:
        if column_of(record) in idle:
            reason = short_message(record.message.removeprefix(f"{record.adapter}: "))  # the same words for each
            adapters_by_reason.setdefault((record.device, reason), set()).add(record.adapter)
    return [f"Every `{device}` result of {', '.join(sorted(names, key=adapter_order))} was skipped: "
            f"{cell(reason)}." for (device, reason), names in adapters_by_reason.items()]


def reasons_section(records: Iterable[Record], wanted: str) -> str:
    """How many results of each adapter have each reason, for one outcome (unsupported, known)."""
    counts = Counter((r.adapter, reason_of(r)) for r in records if r.outcome == wanted)
    ordered = sorted(counts.items(), key=lambda item: (adapter_order(item[0][0]), -item[1], item[0][1]))
    lines = ["| adapter | results | reason |", "|---|---|---|"]
    lines += [f"| {cell(adapter)} | {n} | {cell(reason)} |" for (adapter, reason), n in ordered]
    return "\n".join(lines if ordered else ["(none in this run)"])


def render_sections(document: dict[str, Any]) -> dict[str, str]:
    """Every generated section of FINDINGS.md by name."""
    return {"counts": counts_section(document),
            "unsupported": reasons_section(records_of(document), "unsupported"),
            "known": reasons_section(records_of(document), "known")}


def replace_sections(text: str, sections: dict[str, str], origin: str) -> str:
    """``text`` with each section's old body, between its two markers, replaced by the new one."""
    for name, body in sections.items():
        start, end = marker(name), marker(name, end=True)
        if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
            raise UsageError(f"{origin}: needs one {start} followed by one {end}")
        head, rest = text.split(start)
        text = f"{head}{start}\n{body}\n{end}{rest.split(end)[1]}"
    return text


def findings_command(args: argparse.Namespace) -> int:
    from conformance.results.reading import load_any

    sections = render_sections(load_any(args.results))
    if args.write is None:
        print("\n\n".join(f"{marker(name)}\n{body}\n{marker(name, end=True)}" for name, body in sections.items()))
        return EXIT_OK
    try:
        text = args.write.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{args.write}: cannot be read ({exc.strerror or exc})") from None
    write_text_atomic(args.write, replace_sections(text, sections, str(args.write)))
    print(f"{args.write}: {', '.join(sections)} sections rewritten from {len(args.results)} results file(s)")
    return EXIT_OK
