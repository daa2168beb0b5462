"""A result's message as a person reads it beside a test id: its first meaningful line.

A runtime's error text can run to thirty lines: a Rust error chain from tract
("Error: ...", blank, "Caused by:", "    0: ..."), a Python traceback, Keras's
"Exception encountered when calling LSTM.call()." above the real reason, ANSI
colour codes. The record keeps the whole text (``results.json``'s ``message``,
the HTML diff panel); every place that shows a message short — the summary
lines of ``conformance run``, ``conformance findings``' reason tables, the HTML
matrix's panel summaries and cell tooltips, the regression report — shows
``short_message(text)`` and nothing else, so they all say the same.
"""

from __future__ import annotations

import re

MESSAGE_CHARS = 200
TRACEBACK_HEADER = "Traceback (most recent call last):"
# \x1b as the byte, or as the visible text results store it (conformance.jsonsafe.safe_text).
ANSI_CODE = re.compile(r"(?:\x1b|\\x1b)\[[0-9;]*[A-Za-z]")
# A line that only announces the next one: "Caused by:"-style headers, Rust's
# "thread 'main' panicked at src/lib.rs:2:5:", and Keras 3's wrapper line
# (keras/src/utils/traceback_utils.py), whose reason is on the lines below it.
INTRODUCTION = re.compile(r"(?::|Exception encountered when calling \S+\.)$")


def short_message(text: str | None, limit: int = MESSAGE_CHARS) -> str:
    """``text``'s first meaningful line, at most ``limit`` characters (an ellipsis marks a cut).

    Blank lines and colour codes are dropped; a Python traceback is its
    exception line (of the last traceback, when exceptions were chained: the
    one that was raised); a line that only introduces the next is joined to it.
    """
    lines = [line.rstrip() for line in ANSI_CODE.sub("", text or "").splitlines() if line.strip()]
    if lines and lines[0].strip() == TRACEBACK_HEADER:
        line = exception_line(lines)
    else:
        line = introduced(lines)
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def exception_line(lines: list[str]) -> str:
    """The exception line of a traceback's text: the first unindented line after the last
    traceback's frames (``File ...`` lines and the source lines below them are indented)."""
    found, in_frames = "", False
    for line in lines:
        if line.strip() == TRACEBACK_HEADER:
            in_frames = True
        elif in_frames and not line[:1].isspace():
            found, in_frames = line.strip(), False
    return found or lines[-1].strip()


def introduced(lines: list[str]) -> str:
    """The first line, joined to the next while it only introduces it."""
    joined = lines[0].strip() if lines else ""
    for line in lines[1:]:
        if not INTRODUCTION.search(joined):
            break
        joined = f"{joined} {line.strip()}"
    return joined
