"""Known differences as data: plain-text lists of test ids, each with its reason.

One entry per line: a test id, or a pattern over test ids where ``*`` and
``?`` are the only wildcards (brackets are literal: test ids contain them), then
``#`` and the reason (required: an entry nobody can explain is a bug)::

    gru-*-reset_before*[torch-*]   # torch GRU is always reset-after (SEMANTICS.md §4)

The built-in list is ``conformance/verdict/known_differences.txt``; ``--known-failures
FILE`` (repeatable) adds files after it and ``--no-builtin-known-failures``
leaves it out. The pytest plugin applies the list at collection: a matching
test gets ``pytest.mark.xfail(strict=True)`` with the first matching entry's
reason. A fail or error of such a test is still recorded as ``fail``/``error``,
with the reason as the record's ``known``; its outcome is ``known``
(``conformance.results.records.Record.outcome``) and it does not fail the run.
Only fails and errors become known: an entry over passing, unsupported or
skipped results explains nothing.

So that the lists cannot rot silently, ``KnownFailures.audit`` names the
entries that matched no result (see its docstring for the rule).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from conformance.matrix.case import test_id

BUILTIN_KNOWN_FAILURES = Path(__file__).with_name("known_differences.txt")


@dataclass(frozen=True)
class Entry:
    pattern: str
    reason: str
    origin: str  # "file:line", for messages

    def matches(self, test_id: str) -> bool:
        return pattern_regex(self.pattern).fullmatch(test_id) is not None

    def covers_column(self, column: str) -> bool:
        """Could this entry match a test of ``column`` (``[adapter-device-dtype]``)?

        A test id holds one ``[``, so an entry's part from its ``[`` on must
        match the column; an entry without one could match any column.
        """
        at = self.pattern.find("[")
        return at < 0 or pattern_regex(self.pattern[at:]).fullmatch(column) is not None


@dataclass(frozen=True)
class Audit:
    """What a run could say about the known-differences entries: see ``KnownFailures.audit``."""

    checked: list[str]
    unmatched: list[Entry]

    @property
    def unmatched_patterns(self) -> list[str]:
        return list(dict.fromkeys(entry.pattern for entry in self.unmatched))


@dataclass
class KnownFailures:
    entries: list[Entry]

    def reason_for(self, test_id: str) -> str | None:
        """The first matching entry's reason: files are read in order, the built-in list first."""
        for entry in self.entries:
            if entry.matches(test_id):
                return entry.reason
        return None

    def audit(self, columns: Iterable[tuple[str, str, str]], known_ids: Iterable[str],
              case_dtypes: Mapping[str, Iterable[str]], selected: bool) -> Audit:
        """Which entries a run checked, and which of those matched no result.

        ``columns`` are the (adapter, device, dtype) columns that produced at
        least one result other than ``skipped``; ``known_ids`` the test ids
        whose outcome is ``known``. An entry is *checked* when it could match
        a test of one of those columns: entries for adapters that did not
        run, or for a GPU the machine lacks, say nothing about this run. A
        checked entry is *unmatched*

        - in a whole run, when it matches none of ``known_ids`` (it explained
          nothing; a result may be matched by several entries, and counts for
          each of them);
        - in a run narrowed with ``-k`` (``selected``), only when it matches no
          test id of the whole matrix for those columns (``case_dtypes``: every
          case id and its dtypes): a typo or a case that no longer exists, which
          no selection could make match.
        """
        columns = set(columns)
        brackets = [test_id("", *column) for column in columns]
        if selected:
            candidates = [test_id(case_id, *column) for case_id, dtypes in case_dtypes.items()
                          for column in columns if column[2] in dtypes]
        else:
            candidates = list(known_ids)
        checked, unmatched = [], []
        for entry in self.entries:
            if not any(entry.covers_column(bracket) for bracket in brackets):
                continue
            checked.append(entry.pattern)
            if not any(entry.matches(candidate) for candidate in candidates):
                unmatched.append(entry)
        return Audit(list(dict.fromkeys(checked)), unmatched)


@functools.lru_cache(maxsize=1024)
def pattern_regex(pattern: str) -> re.Pattern:
    """``*`` -> any run of characters, ``?`` -> one character, everything else literal."""
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts))


def parse_known_failures(text: str, origin: str = "<text>") -> KnownFailures:
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pattern, hash_sign, reason = stripped.partition("#")
        pattern, where = pattern.strip(), f"{origin}:{number}"
        if not hash_sign or not reason.strip():
            raise ValueError(f"{where}: an entry needs '# reason' after the test id")
        if len(pattern.split()) > 1 or pattern.count("[") > 1:
            raise ValueError(f"{where}: {pattern!r} can match no test id (no spaces, at most one '[')")
        entries.append(Entry(pattern, reason.strip(), where))
    return KnownFailures(entries)


def known_failure_files(extra: Iterable[str | Path], builtin: bool = True) -> list[Path]:
    """The lists a run uses, in matching order: the built-in one (unless left out), then ``extra``."""
    return ([BUILTIN_KNOWN_FAILURES] if builtin else []) + [Path(p) for p in extra]


def load_known_failures(paths: Iterable[str | Path]) -> KnownFailures:
    """One list from several files; a missing, unreadable or malformed one is a one-line ValueError."""
    entries: list[Entry] = []
    for path in map(Path, paths):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValueError(f"{path}: known-failures file not found") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path}: known-failures file is not UTF-8 text") from None
        except OSError as exc:
            raise ValueError(f"{path}: known-failures file cannot be read ({exc.strerror or exc})") from None
        entries.extend(parse_known_failures(text, str(path)).entries)
    return KnownFailures(entries)
