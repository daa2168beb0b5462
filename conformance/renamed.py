"""Options under an old name: they keep working, and say once on stderr what replaces them.

"Known difference" is the one name for a documented finding (``--known-differences FILE``);
``--known-failures`` and ``--no-builtin-known-failures`` are its first spellings, and ``--tf32``
was the first name of ``--reduced-precision-defaults``. A script written against them still runs;
the line it prints says what to write instead. ``conformance run`` passes the new spellings to its
adapter processes, so a run prints no such line of its own making.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

RENAMED = {
    "--known-failures": "--known-differences",
    "--no-builtin-known-failures": "--no-builtin-known-differences",
    "--tf32": "--reduced-precision-defaults",
}


def deprecation(old: str) -> str:
    """The one line an old spelling prints."""
    return f"{old} is deprecated; use {RENAMED[old]}"


class Renamed(argparse.Action):
    """An old spelling, hidden from ``--help``: does what its new option does, and says so once."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **{**kwargs, "default": argparse.SUPPRESS, "help": argparse.SUPPRESS})
        self.said = False  # ``conformance`` builds a parser per command line: once per command line

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        self.say(namespace)
        new = parser._option_string_actions[RENAMED[self.option_strings[0]]]
        new(parser, namespace, values, option_string)

    def say(self, namespace: argparse.Namespace) -> None:
        if not self.said:
            print(f"conformance: {deprecation(self.option_strings[0])}", file=sys.stderr)
            self.said = True


class NotedRenamed(Renamed):
    """The pytest plugin's old spellings: noted in ``deprecated_options``, which the plugin turns into
    one warning each (pytest parses a command line more than once, and owns its output)."""

    def say(self, namespace: argparse.Namespace) -> None:
        namespace.deprecated_options = sorted({*getattr(namespace, "deprecated_options", ()), self.option_strings[0]})


def add_renamed(parser: argparse.ArgumentParser, new: argparse.Action) -> None:
    """Accept ``new``'s old spelling (``RENAMED``) on ``parser`` too."""
    old = next(old for old, name in RENAMED.items() if name in new.option_strings)
    parser.add_argument(old, action=Renamed, dest=new.dest, nargs=new.nargs, type=new.type)
