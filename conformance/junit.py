"""JUnit XML from result records, for CI systems that read it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from conformance.results import status_counts, write_text_atomic


def junit_xml(records: list[dict[str, Any]]) -> str:
    counts = status_counts(records)
    suite = ET.Element("testsuite", name="rnn-conformance", tests=str(len(records)),
                       failures=str(counts["fail"]), errors=str(counts["error"]),
                       skipped=str(counts["unsupported"] + counts["skipped"]),
                       time=f"{sum(r.get('duration_s', 0.0) for r in records):.3f}")
    for record in records:
        case = ET.SubElement(suite, "testcase", classname=f"conformance.{record['adapter']}",
                             name=record["test_id"], time=f"{record.get('duration_s', 0.0):.6f}")
        status, message = record["status"], record["message"]
        known = record.get("run_info", {}).get("known_failure")
        if status in ("unsupported", "skipped") or known:
            label = f"known difference: {known}" if known else f"{status}: {message}"
            ET.SubElement(case, "skipped", message=label[:1000])
        elif status == "fail":
            ET.SubElement(case, "failure", message=message[:1000]).text = message
        elif status == "error":
            element = ET.SubElement(case, "error", message=message[:1000])
            element.text = record.get("stderr") or message
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(path, records: list[dict[str, Any]]) -> None:
    write_text_atomic(path, junit_xml(records))
