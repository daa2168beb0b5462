"""Known differences as data: plain-text lists of test ids, each with its reason.

One entry per line: a test id, or a pattern over test ids where ``*`` and
``?`` are the only wildcards (brackets are literal: test ids contain them), then
optionally the framework versions it holds for, then ``#`` and the reason
(required: an entry nobody can explain is a bug)::

    PATTERN [REQUIREMENT ...]   # reason
    gru-*-reset_before*[torch-*]           # torch GRU is always reset-after (SEMANTICS.md §4)
    *[keras-jax-*-float64]   keras>=3.12   # keras-jax: float64 computed partly in float32

A REQUIREMENT is a PEP 508 name and specifier written without spaces
(``keras>=3.12``, ``onnxruntime<1.19,>=1.15``). A *scoped* entry applies
(``Entry.applies``) only to a result whose adapter reports every named
package (``versions()``, names compared canonicalized) at a version its
specifier allows, pre-releases included; a package the adapter does not
report, or versions not known at all, and the entry does not apply. An entry
without requirements applies to every version.

The built-in list is ``conformance/verdict/known_differences.txt``; ``--known-differences
FILE`` (repeatable) adds files after it and ``--no-builtin-known-differences``
leaves it out. The pytest plugin applies the list at collection, with the
versions of each test's adapter: a matching test gets
``pytest.mark.xfail(strict=True)`` with the first matching, applying entry's
reason. ``conformance compare`` applies the lists again to both runs, each
with its own recorded versions. A fail or error of such a test is still recorded as ``fail``/``error``,
with the reason as the record's ``known``; its outcome is ``known``
(``conformance.results.records.Record.outcome``) and it does not fail the run.
Only fails and errors become known: an entry over passing, unsupported or
skipped results explains nothing.

So that the lists cannot rot silently, ``KnownDifferences.audit`` names the
entries that matched no result (see its docstring for the rule); a scoped
entry that does not apply to the versions a run had is not checked by it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion

from conformance.matrix.case import test_id

BUILTIN_KNOWN_DIFFERENCES = Path(__file__).with_name("known_differences.txt")


Versions = Mapping[str, str]  # package -> version, as an adapter's ``versions()`` reports them


@dataclass(frozen=True)
class Entry:
    pattern: str
    reason: str
    origin: str  # "file:line", for messages
    requirements: tuple[str, ...] = ()  # PEP 508 name+specifier each; empty: every version

    def matches(self, test_id: str) -> bool:
        return pattern_regex(self.pattern).fullmatch(test_id) is not None

    def applies(self, versions: Versions | None) -> bool:
        """Does the entry hold for these versions? Unscoped: always; scoped: only when every named
        package is in ``versions`` at a version its specifier allows (``None``: versions unknown)."""
        if not self.requirements:
            return True
        if versions is None:
            return False
        known = {canonicalize_name(name): str(version) for name, version in versions.items()}
        return all(_satisfied(requirement(text), known) for text in self.requirements)

    def covers_column(self, column: str) -> bool:
        """Could this entry match a test of ``column`` (``[adapter-device-dtype]``)?

        A test id holds one ``[``, so an entry's part from its ``[`` on must
        match the column; an entry without one could match any column.
        """
        at = self.pattern.find("[")
        return at < 0 or pattern_regex(self.pattern[at:]).fullmatch(column) is not None


@dataclass(frozen=True)
class Audit:
    """What a run could say about the known-differences entries: see ``KnownDifferences.audit``."""

    checked: list[str]
    unmatched: list[Entry]

    @property
    def unmatched_patterns(self) -> list[str]:
        return list(dict.fromkeys(entry.pattern for entry in self.unmatched))


@dataclass
class KnownDifferences:
    entries: list[Entry]

    def installed_versions(self) -> dict[str, str]:
        """The installed versions of the packages the scoped entries name, read from the
        distributions' metadata without importing them: what a process that runs no adapter
        (``conformance run``'s planner and supervisor) judges scoped entries by; an adapter's own
        ``versions()`` report the same numbers."""
        from importlib import metadata

        names = {requirement(text).name for entry in self.entries for text in entry.requirements}
        found = {}
        for name in sorted(names):
            try:
                found[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                pass
        return found

    def reason_for(self, test_id: str, versions: Versions | None = None) -> str | None:
        """The first matching entry's reason: files are read in order, the built-in list first.

        ``versions`` are those of the test's adapter; ``None`` (unknown) leaves scoped entries out.
        """
        for entry in self.entries:
            if entry.matches(test_id) and entry.applies(versions):
                return entry.reason
        return None

    def audit(self, columns: Iterable[tuple[str, str, str]], known_ids: Iterable[str],
              case_dtypes: Mapping[str, Iterable[str]], selected: bool,
              versions: Mapping[str, Versions] | None = None) -> Audit:
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

        ``versions`` (adapter -> its versions) decides the columns a scoped
        entry could speak for: only those of adapters whose versions it
        applies to (``None``: no adapter's versions are known).
        """
        columns, versions = set(columns), versions or {}
        if selected:
            candidates = [test_id(case_id, *column) for case_id, dtypes in case_dtypes.items()
                          for column in columns if column[2] in dtypes]
        else:
            candidates = list(known_ids)
        checked, unmatched = [], []
        for entry in self.entries:
            brackets = {test_id("", *column) for column in columns if entry.applies(versions.get(column[0]))}
            if not any(entry.covers_column(bracket) for bracket in brackets):
                continue
            checked.append(entry.pattern)
            spoken_for = candidates if not entry.requirements else \
                [c for c in candidates if c[c.find("["):] in brackets]
            if not any(entry.matches(candidate) for candidate in spoken_for):
                unmatched.append(entry)
        return Audit(list(dict.fromkeys(checked)), unmatched)


@functools.lru_cache(maxsize=1024)
def pattern_regex(pattern: str) -> re.Pattern:
    """``*`` -> any run of characters, ``?`` -> one character, everything else literal."""
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts))


@functools.lru_cache(maxsize=256)
def requirement(text: str) -> Requirement:
    return Requirement(text)


def _satisfied(required: Requirement, versions: Mapping[str, str]) -> bool:
    """A version that is no PEP 440 version (a build label, say) satisfies nothing."""
    version = versions.get(canonicalize_name(required.name))
    if version is None:
        return False
    try:
        return required.specifier.contains(version, prereleases=True)
    except InvalidVersion:
        return False


def parse_requirement(text: str, where: str) -> str:
    """``text`` if it is a PEP 508 name with a version specifier; a one-line ValueError else."""
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        requirement = None
    if requirement is None or not requirement.specifier or requirement.url or requirement.marker \
            or requirement.extras:
        raise ValueError(f"{where}: {text!r} is not a version requirement")
    return text


def parse_known_differences(text: str, origin: str = "<text>") -> KnownDifferences:
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        head, hash_sign, reason = stripped.partition("#")
        where = f"{origin}:{number}"
        if not hash_sign or not reason.strip():
            raise ValueError(f"{where}: an entry needs '# reason' after the test id")
        pattern, *requirements = head.split() or [""]
        if pattern.count("[") > 1 or any(text.startswith("[") for text in requirements):
            raise ValueError(f"{where}: {head.strip()!r} can match no test id (no spaces, at most one '[')")
        scope = tuple(parse_requirement(text, where) for text in requirements)
        entries.append(Entry(pattern, reason.strip(), where, scope))
    return KnownDifferences(entries)


def known_difference_files(extra: Iterable[str | Path], builtin: bool = True) -> list[Path]:
    """The lists a run uses, in matching order: the built-in one (unless left out), then ``extra``."""
    return ([BUILTIN_KNOWN_DIFFERENCES] if builtin else []) + [Path(p) for p in extra]


def load_known_differences(paths: Iterable[str | Path]) -> KnownDifferences:
    """One list from several files; a missing, unreadable or malformed one is a one-line ValueError."""
    entries: list[Entry] = []
    for path in map(Path, paths):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValueError(f"{path}: known-differences file not found") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path}: known-differences file is not UTF-8 text") from None
        except OSError as exc:
            raise ValueError(f"{path}: known-differences file cannot be read ({exc.strerror or exc})") from None
        entries.extend(parse_known_differences(text, str(path)).entries)
    return KnownDifferences(entries)
