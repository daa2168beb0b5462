"""Known differences as data: a plain-text list of test ids, each with its reason.

One entry per line: a test id, or a pattern over test ids where ``*`` and
``?`` are the only wildcards (brackets are literal: test ids contain them), then
``#`` and the reason (required: an entry nobody can explain is a bug)::

    gru-*-reset_before*[torch-*]   # torch GRU is always reset-after (SPEC 4)

A matched failure is still recorded as ``fail`` with its reason attached and
shown by pytest as ``xfail``; it does not fail the run. Entries that match no
test are reported, so the list cannot rot silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class KnownFailures:
    entries: list[tuple[str, str]] = field(default_factory=list)
    used: set[str] = field(default_factory=set)

    def reason_for(self, test_id: str) -> str | None:
        for pattern, reason in self.entries:
            if pattern_regex(pattern).fullmatch(test_id):
                self.used.add(pattern)
                return reason
        return None

    def unused(self) -> list[str]:
        return [pattern for pattern, _ in self.entries if pattern not in self.used]


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
        if not hash_sign or not reason.strip():
            raise ValueError(f"{origin}:{number}: an entry needs '# reason' after the test id")
        entries.append((pattern.strip(), reason.strip()))
    return KnownFailures(entries)


def load_known_failures(path: str | Path | None) -> KnownFailures:
    if path is None:
        return KnownFailures()
    path = Path(path)
    try:
        return parse_known_failures(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        raise ValueError(f"{path}: known-failures file not found") from None
