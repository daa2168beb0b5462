"""Known differences as data: plain-text lists of test ids, each with its reason.

One entry per line: a test id, or a pattern over test ids where ``*`` and
``?`` are the only wildcards (brackets are literal: test ids contain them), then
optionally the framework versions it holds for and the properties of the cases
it holds for, then ``#`` and the reason (required: an entry nobody can explain
is a bug)::

    PATTERN [REQUIREMENT ...] [CONDITION ...]   # reason
    gru-*-reset_before*[torch-*]           # torch GRU is always reset-after (SEMANTICS.md §4)
    *[keras-jax-*-float64]   keras>=3.12   # keras-jax: float64 computed partly in float32
    lstm-seq?-state1-*[tract*-cpu-float32]  batch>=2 timesteps>=2 !initial_state  # tract: ...

A CONDITION names a property of the case (``conformance.matrix.properties``, the
vocabulary and its one home): ``name`` (true), ``!name`` (false), ``name=a,b``
(one of), ``name!=a,b`` (none of), ``name<N``, ``name<=N``, ``name>N``,
``name>=N``. It says the difference's cause, so that an entry holds for unseen
cases, whose ids name their options in orders no fixed id has. A word is a
condition when it starts with ``!``, has no operator or a single ``=``, or
compares a property's name (``is_condition``); any other word is a REQUIREMENT.
An unknown property, a value it never takes or an operator its kind does not
take is a one-line ValueError naming ``file:line``. The plugin passes the
properties of the case it holds; every other caller (the planner, the
supervisor, ``conformance compare``) gives the test id alone, and the properties
are those of the case the id names (``properties_of``: a fixed case rebuilt by
the matrix's code, an unseen one redrawn from its seed and index).

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
entry that does not apply to the versions a run had is not checked by it, and
an entry whose conditions no fixed case meets (a cause only drawn cases reach)
is checked only by a run whose unseen cases include one it matches: a fixed run
never names it.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion

from conformance.matrix.case import test_id
from conformance.matrix.properties import PROPERTIES, Properties, properties_of
from conformance.matrix.unseen import is_unseen

BUILTIN_KNOWN_DIFFERENCES = Path(__file__).with_name("known_differences.txt")


Versions = Mapping[str, str]  # package -> version, as an adapter's ``versions()`` reports them


@dataclass(frozen=True)
class Condition:
    """One condition on a case's property (``conformance.matrix.properties``), as written: ``name``
    (true), ``!name`` (false), ``name=a,b`` (one of), ``name!=a,b`` (none of), ``name<N``,
    ``name<=N``, ``name>N``, ``name>=N`` (a number)."""

    text: str
    name: str
    operator: str  # "is", "not", "=", "!=", "<", "<=", ">", ">="
    values: tuple = ()

    def holds(self, properties: Properties) -> bool:
        value = properties[self.name]
        if self.operator in ("is", "not"):
            return value is (self.operator == "is")
        if self.operator in ("=", "!="):
            return (value in self.values) is (self.operator == "=")
        return COMPARE[self.operator](value, self.values[0])


COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@dataclass(frozen=True)
class Entry:
    pattern: str
    reason: str
    origin: str  # "file:line", for messages
    requirements: tuple[str, ...] = ()  # PEP 508 name+specifier each; empty: every version
    conditions: tuple[Condition, ...] = ()  # on the case's properties; empty: every case

    @property
    def text(self) -> str:
        """The pattern and its conditions, as written: how reports name the entry."""
        return " ".join([self.pattern, *(condition.text for condition in self.conditions)])

    def matches(self, test_id: str, properties: Properties | None = None) -> bool:
        """The pattern matches ``test_id`` and the case has every property the conditions name:
        ``properties`` are the case's (``case_properties``), or else read from the case the id
        names (``properties_of``); a case whose properties are unknown meets no condition."""
        if not self.pattern_matches(test_id):
            return False
        if not self.conditions:
            return True
        found = properties if properties is not None else properties_of(test_id)
        return found is not None and all(condition.holds(found) for condition in self.conditions)

    def pattern_matches(self, test_id: str) -> bool:
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
        """The unmatched entries as written (``Entry.text``: the pattern and its conditions)."""
        return list(dict.fromkeys(entry.text for entry in self.unmatched))


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

    def reason_for(self, test_id: str, versions: Versions | None = None,
                   properties: Properties | None = None) -> str | None:
        """The first matching entry's reason: files are read in order, the built-in list first.

        ``versions`` are those of the test's adapter; ``None`` (unknown) leaves scoped entries out.
        ``properties`` are the test's case's, where the caller holds the case (``Entry.matches``).
        """
        for entry in self.entries:
            if entry.matches(test_id, properties) and entry.applies(versions):
                return entry.reason
        return None

    def audit(self, columns: Iterable[tuple[str, str, str]], known_ids: Iterable[str],
              case_dtypes: Mapping[str, Iterable[str]], selected: bool,
              versions: Mapping[str, Versions] | None = None, ran_ids: Iterable[str] = ()) -> Audit:
        """Which entries a run checked, and which of those matched no result.

        ``columns`` are the (adapter, device, dtype) columns that produced at
        least one result other than ``skipped``; ``known_ids`` the test ids
        whose outcome is ``known``; ``case_dtypes`` every case of the run (before
        ``-k``) and its dtypes; ``ran_ids`` the test ids with a result other
        than ``skipped``. An entry could speak for a run when it could match a
        test of one of those columns: entries for adapters that did not run,
        or for a GPU the machine lacks, say nothing about this run.

        Such an entry that matches (pattern and conditions) a test of the
        fixed matrix for those columns is *checked*, and *unmatched*

        - in a whole run, when it matches none of ``known_ids`` (it explained
          nothing; a result may be matched by several entries, and counts for
          each of them);
        - in a run narrowed with ``-k`` (``selected``), never: the selection
          may have left out what it explains.

        An entry that no fixed test meets is for drawn cases only (its
        conditions name a cause the fixed matrix does not reach): it is
        checked only by a run whose unseen tests (``ran_ids``) include one it
        matches, and unmatched when that run is whole and it explains none of
        them. Either way, an entry whose pattern alone matches no test of the
        run (a typo, a case that no longer exists, which no selection could
        make match) is checked and unmatched.

        ``versions`` (adapter -> its versions) decides the columns a scoped
        entry could speak for: only those of adapters whose versions it
        applies to (``None``: no adapter's versions are known).
        """
        columns, versions, known_ids = set(columns), versions or {}, list(known_ids)
        every = [test_id(case_id, *column) for case_id, dtypes in case_dtypes.items()
                 for column in columns if column[2] in dtypes]
        fixed = [candidate for candidate in every if not is_unseen(candidate)]
        drawn = [ran for ran in ran_ids if is_unseen(ran)]
        checked, unmatched = [], []
        for entry in self.entries:
            brackets = {test_id("", *column) for column in columns if entry.applies(versions.get(column[0]))}
            if not any(entry.covers_column(bracket) for bracket in brackets):
                continue
            spoken_for = [ids if not entry.requirements else [c for c in ids if c[c.find("["):] in brackets]
                          for ids in (every, fixed, drawn, known_ids)]  # a scoped entry: its adapters' tests
            verdict = _verdict(entry, *spoken_for, selected)
            if verdict != "unchecked":
                checked.append(entry.text)
            if verdict == "unmatched":
                unmatched.append(entry)
        return Audit(list(dict.fromkeys(checked)), unmatched)


def _verdict(entry: Entry, every: list[str], fixed: list[str], drawn: list[str], known_ids: list[str],
             selected: bool) -> str:
    """"matched", "unmatched" or "unchecked": ``KnownDifferences.audit``'s rule for one entry (``every``:
    the run's tests before ``-k``; ``fixed``: those of the fixed matrix; ``drawn``: the unseen ones that ran)."""
    if not any(entry.pattern_matches(candidate) for candidate in every):
        return "unmatched"
    if not any(entry.matches(candidate) for candidate in fixed) and not any(entry.matches(c) for c in drawn):
        return "unchecked"
    if selected or any(entry.matches(known) for known in known_ids):
        return "matched"
    return "unmatched"


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


CONDITION = re.compile(r"(?P<not>!?)(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op><=|>=|!=|=|<|>)(?P<value>.*))?")


def is_condition(text: str) -> bool:
    """A condition, not a version requirement: ``!name``, a bare ``name``, ``name=...``, or a
    comparison whose name is a case property (a property's name is never a package's)."""
    match = CONDITION.fullmatch(text)
    return match is not None and (bool(match["not"]) or match["op"] in (None, "=") or match["name"] in PROPERTIES)


def parse_condition(text: str, where: str) -> Condition:
    """``text`` as a ``Condition`` on a property of ``PROPERTIES``; a one-line ValueError naming
    ``where`` for an unknown property or a comparison its kind does not take."""
    match = CONDITION.fullmatch(text)
    name, op = match["name"], match["op"] or ("not" if match["not"] else "is")
    if name not in PROPERTIES:
        raise ValueError(f"{where}: {text!r} is neither a version requirement nor a condition on a case "
                         f"property ({', '.join(PROPERTIES)})")
    if match["not"] and match["op"]:
        raise ValueError(f"{where}: {text!r}: '!' goes before a true-or-false property alone (!{name})")
    kind, values = PROPERTIES[name].kind, PROPERTIES[name].values
    if kind is bool:
        if op not in ("is", "not"):
            raise ValueError(f"{where}: {text!r}: {name} is true or false, written {name} or !{name}")
        return Condition(text, name, op)
    if op in ("is", "not") or (kind is str and op not in ("=", "!=")):
        example = values[0] if values else "plain"
        usage = f"{name}>=2, {name}=1,2" if kind is int else f"{name}={example}, {name}!={example}"
        raise ValueError(f"{where}: {text!r}: {name} is {'a number' if kind is int else 'a name'}, written {usage}")
    words = match["value"].split(",") if op in ("=", "!=") else [match["value"]]
    if kind is int and not all(word.isdigit() for word in words):
        raise ValueError(f"{where}: {text!r}: {name} is compared with a whole number")
    if kind is str and values and not all(word in values for word in words):
        raise ValueError(f"{where}: {text!r}: {name} is one of {', '.join(values)}")
    return Condition(text, name, op, tuple(int(word) if kind is int else word for word in words))


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
        pattern, *words = head.split() or [""]
        if pattern.count("[") > 1 or any(text.startswith("[") for text in words):
            raise ValueError(f"{where}: {head.strip()!r} can match no test id (no spaces, at most one '[')")
        conditions = tuple(parse_condition(text, where) for text in words if is_condition(text))
        scope = tuple(parse_requirement(text, where) for text in words if not is_condition(text))
        entries.append(Entry(pattern, reason.strip(), where, scope, conditions))
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
