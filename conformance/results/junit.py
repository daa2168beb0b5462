"""JUnit XML from result records, for CI systems that read it.

One ``<testsuite>`` whose ``tests`` / ``failures`` / ``errors`` / ``skipped``
attributes count its ``<testcase>`` children, by outcome
(``conformance.results.records.Record.outcome``): an unexpected fail is a ``<failure>``, an
unexpected error an ``<error>``, and a known difference is a ``<skipped>``
with the message ``known difference: REASON`` (it is not a failure: the run
is green with it), as are unsupported and skipped results. The output is valid
against the Jenkins xunit plugin's ``junit-10.xsd`` (``tests/data/junit-10.xsd``).

Messages come from adapters and may hold characters XML 1.0 cannot carry
(NUL, ESC, lone surrogates): they are written as ``\\xNN`` / ``\\uNNNN``
escapes, so the file is always well-formed. Records written by the current
writers hold none (``conformance.jsonsafe.json_safe``), but a Record may
come from anywhere (an older file, a vendor's code): every field is written as
text, and a duration that is no finite number counts as 0.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from typing import Any

from conformance.files import write_text_atomic
from conformance.results.records import Record, outcome_counts

MESSAGE_CHARS = 1000
# Everything outside XML 1.0's Char production (tab, newline, CR and the ranges below).
XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def xml_text(text: Any) -> str:
    """``text`` (anything: it is made a string) with each character XML 1.0 forbids replaced by its Python escape."""
    return XML_ILLEGAL.sub(_escape, "" if text is None else str(text))


def _message(text: Any) -> str:
    return xml_text(text)[:MESSAGE_CHARS]


def seconds(value: Any) -> float:
    """A record's duration as a finite number of seconds (0 where it is none: an older or odd record)."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def testcase(record: Record, user_list: str | None = None) -> ET.Element:
    """``user_list``: the user's known-differences file that explained this result, if one did."""
    case = ET.Element("testcase", classname=f"conformance.{xml_text(record.adapter)}",
                      name=xml_text(record.test_id), time=f"{seconds(record.duration_s):.6f}")
    kind, message = record.outcome, record.message
    if kind == "fail":
        ET.SubElement(case, "failure", type="fail", message=_message(message)).text = xml_text(message)
    elif kind == "error":
        element = ET.SubElement(case, "error", type="error", message=_message(message))
        element.text = xml_text(record.stderr or message)
    elif kind == "known" and user_list:
        element = ET.SubElement(case, "skipped", type="known difference (your list)",
                                message=_message(f"known difference from your list {user_list}, not the built-in "
                                                 f"one: {record.known}"))
        element.text = xml_text(f"{record.status}: {message}")
    elif kind == "known":
        element = ET.SubElement(case, "skipped", type="known difference",
                                message=_message(f"known difference: {record.known}"))
        element.text = xml_text(f"{record.status}: {message}")
    elif kind in ("unsupported", "skipped"):
        ET.SubElement(case, "skipped", type=kind, message=_message(f"{kind}: {message}"))
    elif kind == "not_run":
        ET.SubElement(case, "skipped", type="not run", message=_message(message))
    return case


def junit_xml(records: list[Record], user_lists: list[dict[str, Any]] | None = None) -> str:
    """``user_lists``: the document's ``user_known_lists``; each is a ``<property>`` of the suite,
    and each result one of them explained says so in its ``<skipped>``."""
    counts = outcome_counts(records)
    suite = ET.Element("testsuite", name="rnn-conformance", tests=str(len(records)),
                       failures=str(counts["fail"]), errors=str(counts["error"]),
                       skipped=str(counts["known"] + counts["unsupported"] + counts["skipped"] + counts["not_run"]),
                       time=f"{sum(seconds(r.duration_s) for r in records):.3f}")
    if user_lists:
        properties = ET.SubElement(suite, "properties")
        for listed in user_lists:
            ET.SubElement(properties, "property", name="known-differences list (yours, not the built-in one)",
                          value=xml_text(user_list_summary(listed)))
    by_list = {test_id: listed["file"] for listed in user_lists or () for test_id in listed["test_ids"]}
    suite.extend(testcase(record, by_list.get(record.test_id)) for record in records)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def user_list_summary(listed: dict[str, Any]) -> str:
    """One user list in a line: its file, what it explained, and the adapters it is called out for."""
    called = "; ".join(f"CALLED OUT for {name}: {listed['adapters'][name]['known']} of "
                       f"{listed['adapters'][name]['computed']} results" for name in listed["called_out"])
    return f"{listed['file']}: explained {listed['results']} results" + (f"; {called}" if called else "")


def write_junit(path, records: list[Record]) -> None:
    write_text_atomic(path, junit_xml(records))
