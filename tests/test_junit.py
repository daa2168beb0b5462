"""junit.xml: valid against a published schema, its counts add up, and a known difference is not a failure."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conformance.results.junit import junit_xml, write_junit
from conformance.results.records import Record, records_of
from tests.test_report import KNOWN_REASON, MIXED_COUNTS, mixed_run_document

SCHEMA = Path(__file__).parent / "data" / "junit-10.xsd"  # Jenkins xunit plugin's JUnit schema


@pytest.fixture(scope="module")
def schema():
    xmlschema = pytest.importorskip("xmlschema", reason="the xmlschema package is not installed (the test extra)")
    return xmlschema.XMLSchema(SCHEMA)


def suite_of(records: list[Record]) -> ET.Element:
    return ET.fromstring(junit_xml(records).encode("utf-8"))


def test_junit_is_valid_against_the_published_schema(tmp_path: Path, schema) -> None:
    path = tmp_path / "junit.xml"
    write_junit(path, records_of(mixed_run_document()))
    schema.validate(path)


def test_the_suite_counts_equal_its_testcases() -> None:
    suite = suite_of(records_of(mixed_run_document()))
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) == sum(MIXED_COUNTS.values())
    assert int(suite.get("failures")) == sum(1 for c in cases if c.find("failure") is not None)
    assert int(suite.get("errors")) == sum(1 for c in cases if c.find("error") is not None)
    assert int(suite.get("skipped")) == sum(1 for c in cases if c.find("skipped") is not None)


def test_a_known_difference_is_skipped_with_its_reason_and_not_a_failure() -> None:
    records = records_of(mixed_run_document())
    suite = suite_of(records)
    known = [c for c in suite.iter("testcase")
             if c.find("skipped") is not None and c.find("skipped").get("type") == "known difference"]
    assert len(known) == MIXED_COUNTS["known"]
    assert {c.find("skipped").get("message") for c in known} == {f"known difference: {KNOWN_REASON}"}
    assert all(c.find("failure") is None and c.find("error") is None for c in known)
    assert (int(suite.get("failures")), int(suite.get("errors"))) == (MIXED_COUNTS["fail"], MIXED_COUNTS["error"])


def test_unexpected_fails_and_errors_are_failure_and_error_elements() -> None:
    suite = suite_of(records_of(mixed_run_document()))
    assert len(suite.findall("testcase/failure")) == MIXED_COUNTS["fail"]
    assert len(suite.findall("testcase/error")) == MIXED_COUNTS["error"]


@pytest.mark.parametrize("text", ["NUL \x00 here", "ESC \x1b[31mred\x1b[0m", "lone \ud800 surrogate",
                                  "not a character \ufffe"])
def test_characters_xml_cannot_carry_keep_the_file_well_formed(tmp_path: Path, text: str, schema) -> None:
    records = records_of(mixed_run_document())
    records = [dataclasses.replace(record, message=text, stderr=text) for record in records]
    path = tmp_path / "junit.xml"
    write_junit(path, records)
    suite = ET.parse(path).getroot()  # raises if not well-formed
    assert "\\x" in suite.find("testcase/error").text or "\\u" in suite.find("testcase/error").text
    schema.validate(path)
