"""What may be written as JSON: numbers and text made safe, in one place.

JSON has no NaN or infinity, XML 1.0 and terminals choke on control
characters, and a lone surrogate cannot be encoded at all: an adapter's
output, message or stderr may hold any of them, and a result must never be
lost to what it holds. Every writer of results (streams, results.json, the
verdict's own dicts, regression reports) goes through ``json_safe``.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from typing import Any

NON_FINITE = ("nan", "inf", "-inf")  # how results store the numbers JSON has no literal for
# Python reads and writes integers of at most 4300 digits (sys.int_info.default_max_str_digits);
# a larger one (an adapter's run_info) is written as infinite rather than lose its result.
MAX_INT_BITS = 14_000


# --- what may be written: numbers and text made safe ------------------------------------------

# NUL, the other C0 controls but tab / newline / CR, DEL, lone surrogates, and the two
# non-characters XML 1.0 forbids: none survives in results.json, junit.xml or a terminal.
UNSAFE_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def _visible(match: re.Match) -> str:
    char = match.group()
    if "\ud800" <= char <= "\udfff":
        return "\ufffd"  # a lone surrogate is no character at all: the replacement character
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(text: str) -> str:
    """``text`` with every control character shown as ``\\xNN`` and every lone surrogate as U+FFFD.

    An adapter's message or stderr may hold anything (undecodable bytes decoded
    with surrogateescape, ANSI colours, NUL); the files must still be written,
    well-formed, and show what was there.
    """
    return UNSAFE_TEXT.sub(_visible, text)


def number_text(value: float) -> str:
    """A non-finite float as results store it: 'nan', 'inf' or '-inf'."""
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON data every writer of results can write: the one door out.

    Non-finite floats become ``NON_FINITE`` strings, every string (keys
    included) goes through ``safe_text``, tuples become lists, numpy scalars and
    arrays plain numbers and lists, and anything else an adapter put in its
    ``run_info`` its ``str()``: a result is never lost to what it holds. Plain
    types are tested first, by exact type: a full run's document is millions of floats.
    """
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else number_text(value)
    if kind is str:
        return safe_text(value) if UNSAFE_TEXT.search(value) else value
    if kind is list or kind is tuple:
        return [json_safe(item) for item in value]
    if kind is dict:
        return {json_safe(key) if type(key) is str else safe_text(str(key)): json_safe(item)
                for key, item in value.items()}
    if kind is int:
        return value if value.bit_length() <= MAX_INT_BITS else ("inf" if value > 0 else "-inf")
    if value is None or kind is bool:
        return value
    return _json_safe_other(value)


def _json_safe_other(value: Any) -> Any:
    """``json_safe`` of what is no plain JSON type: subclasses, numpy values, anything else."""
    if isinstance(value, str):
        return safe_text(str(value))
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, float):
        return json_safe(float(value))
    if isinstance(value, int) or isinstance(value, numbers.Integral):
        return json_safe(int(value))
    if isinstance(value, dict):
        return json_safe(dict(value))
    if isinstance(value, (list, tuple)):
        return json_safe(list(value))
    if isinstance(value, numbers.Real):
        return json_safe(float(value))
    if hasattr(value, "tolist"):  # a numpy array or scalar
        return json_safe(value.tolist())
    return safe_text(str(value))


def json_text(value: Any, **options: Any) -> str:
    """``json.dumps`` of ``json_safe(value)``: what every results file and stream line is written with."""
    return json.dumps(json_safe(value), sort_keys=True, allow_nan=False, **options)
