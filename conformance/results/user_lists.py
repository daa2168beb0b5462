"""What a user's known-differences lists (``--known-differences FILE``) explained, counted apart.

The built-in list (``conformance/verdict/known_differences.txt``) is evidenced: each
entry cites where the difference was observed. A user's list is the user's word. A
run that a user's list made green must not read like a clean certification, so the
results document carries, for each user list (``user_known_lists``):

- ``file``, and ``results``: how many results its entries explained;
- ``entries``: each entry's ``pattern``, ``line``, ``reason`` and ``results`` it
  swallowed (a result counts for the first entry that explains it, as the verdict does);
- ``adapters``: per adapter, ``known`` (results the list explained) and
  ``computed`` (its results that ran: pass, fail or error);
- ``called_out``: the adapters of which it explained more than ``CALLED_OUT_SHARE``
  of the computed results;
- ``test_ids``: the results it explained (what JUnit marks).

The summary, the HTML report, results.json and junit.xml all show them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from conformance.results.records import Record
from conformance.verdict.known_differences import BUILTIN_KNOWN_DIFFERENCES, Entry, KnownDifferences

CALLED_OUT_SHARE = 0.2
"""A user's list that explains more than this share of an adapter's computed results is called out."""
COMPUTED = ("pass", "fail", "error")


def user_known_lists(known: KnownDifferences, records: Iterable[Record],
                     versions: Mapping[str, Mapping[str, str] | None]) -> list[dict[str, Any]]:
    """The accounts of the user's lists (see the module's docstring), in the order they were given;
    ``versions`` are each adapter's (what scoped entries are judged by)."""
    records = list(records)
    lists: dict[str, dict[str, Any]] = {}
    accounts: dict[str, dict[str, Any]] = {}  # entry origin -> its account
    for entry in known.entries:
        file, line = origin_of(entry)
        if Path(file).resolve() == BUILTIN_KNOWN_DIFFERENCES.resolve():
            continue
        listed = lists.setdefault(file, {"file": file, "results": 0, "entries": [], "adapters": {},
                                         "called_out": [], "test_ids": []})
        accounts[entry.origin] = {"pattern": entry.pattern, "line": line, "reason": entry.reason, "results": 0}
        listed["entries"].append(accounts[entry.origin])
    if not lists:
        return []
    computed = Counter(r.adapter for r in records if r.status in COMPUTED)
    for record in records:
        entry = explaining_entry(known, record, versions.get(record.adapter))
        if entry is None or entry.origin not in accounts:
            continue
        listed = lists[origin_of(entry)[0]]
        accounts[entry.origin]["results"] += 1
        listed["results"] += 1
        listed["test_ids"].append(record.test_id)
        share = listed["adapters"].setdefault(record.adapter, {"known": 0, "computed": computed[record.adapter]})
        share["known"] += 1
    for listed in lists.values():
        listed["called_out"] = sorted(name for name, share in listed["adapters"].items()
                                      if share["known"] > CALLED_OUT_SHARE * share["computed"])
    return list(lists.values())


def origin_of(entry: Entry) -> tuple[str, int]:
    """An entry's file and line (its ``origin`` is ``file:line``; a file name may hold ``:``)."""
    file, _, line = entry.origin.rpartition(":")
    return file, int(line)


def explaining_entry(known: KnownDifferences, record: Record, versions: Mapping[str, str] | None) -> Entry | None:
    """The entry whose reason a known result carries: the first that matches it, applies to its
    adapter's versions and gives that reason (else the first that matches with that reason)."""
    if record.outcome != "known":
        return None
    matching = [e for e in known.entries if e.reason == record.known and e.matches(record.test_id)]
    return next((e for e in matching if e.applies(versions)), matching[0] if matching else None)


def user_list_lines(document: dict[str, Any]) -> list[str]:
    """The summary's lines on the user's lists: each list's count, its entries', and the call-outs."""
    lists = document.get("user_known_lists") or []
    lines = []
    for listed in lists:
        entries = ", ".join(f"{e['pattern']!r} (line {e['line']}) {e['results']}" for e in listed["entries"]
                            if e["results"]) or "none explained a result"
        lines.append(f"known differences from your list {listed['file']} (not the built-in, evidenced one): "
                     f"{listed['results']} result{'s' * (listed['results'] != 1)}; per entry: {entries}")
        lines += [called_out_line(listed, name) for name in listed["called_out"]]
    return lines


def called_out_line(listed: dict[str, Any], adapter: str) -> str:
    share = listed["adapters"][adapter]
    return (f"CALLED OUT: {listed['file']} explains {share['known']} of the {share['computed']} results "
            f"adapter {adapter} computed, more than {CALLED_OUT_SHARE:.0%}: a list that broad can hide "
            f"real failures; this run is no clean certification of {adapter}")
