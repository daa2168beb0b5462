"""The labelled reduced-precision mode: one flag (``--tf32`` its deprecated alias), one variable, every row labelled.

Off (the default), every adapter switches its runtime's reduced-precision
defaults off for the float32 verdict; on, they are left as the runtime ships
them, and every record, the summary, the HTML report and the findings say so.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conformance.adapters.contract import REDUCED_PRECISION_VARIABLE, reduced_precision_allowed, tf32_allowed
from conformance.results.records import REDUCED_PRECISION_KEY, load_results
from tests.commandline import CONSOLE_SCRIPT

REPO = Path(__file__).resolve().parent.parent
PROBE = "tests.oracle_adapters:Tf32ProbeAdapter"  # records what the contract function said in its process


def conformance(*args: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != REDUCED_PRECISION_VARIABLE}
    return subprocess.run([str(CONSOLE_SCRIPT), *args], capture_output=True, text=True, timeout=300,
                          env={**environment, "PYTHONPATH": str(REPO)})


def test_the_contract_function_reads_the_one_variable(monkeypatch):
    monkeypatch.delenv(REDUCED_PRECISION_VARIABLE, raising=False)
    assert (reduced_precision_allowed(), tf32_allowed()) == (False, False)
    monkeypatch.setenv(REDUCED_PRECISION_VARIABLE, "1")
    assert (reduced_precision_allowed(), tf32_allowed()) == (True, True)


@pytest.mark.parametrize("flag", ["--reduced-precision-defaults", "--tf32"])
def test_every_record_of_a_run_in_the_mode_is_labelled_and_so_is_the_run(tmp_path, flag):
    done = conformance("run", "--adapter", PROBE, "-k", "tutorial", flag, "--report-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    deprecation = "conformance: --tf32 is deprecated; use --reduced-precision-defaults"
    assert [line for line in done.stderr.splitlines() if "deprecated" in line] == (
        [deprecation] if flag == "--tf32" else [])
    records = load_results(tmp_path / "results.json")["results"]  # the published schema allows the label
    assert len(records) == 24
    assert {(r["run_info"][REDUCED_PRECISION_KEY], r["run_info"]["tf32_seen"]) for r in records} == {(True, True)}
    label = "reduced-precision defaults left on (--reduced-precision-defaults) for every result"
    assert f"labelled mode: {label}: not the float32 verdict" in done.stdout
    assert label in (tmp_path / "index.html").read_text()
    findings = conformance("findings", str(tmp_path / "results.json"))
    assert f"Labelled mode: {label}" in findings.stdout


def test_a_run_outside_the_mode_carries_no_label(tmp_path):
    done = conformance("run", "--adapter", PROBE, "-k", "tutorial and lstm", "--report-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    records = json.loads((tmp_path / "results.json").read_text())["results"]
    assert {REDUCED_PRECISION_KEY in r["run_info"] or r["run_info"]["tf32_seen"] for r in records} == {False}
    assert "labelled mode" not in done.stdout.lower()
    assert "reduced-precision" not in (tmp_path / "index.html").read_text()


def test_the_errors_the_supervisor_writes_for_a_crash_are_labelled_too(tmp_path):
    done = conformance("run", "--adapter", "tests.faulty_adapters:AbortingAdapter", "-k", "tutorial and lstm",
                       "--reduced-precision-defaults", "--report-dir", str(tmp_path))
    records = json.loads((tmp_path / "results.json").read_text())["results"]
    assert done.returncode == 1 and {r["status"] for r in records} == {"error"}
    assert {r["run_info"].get(REDUCED_PRECISION_KEY) for r in records} == {True}
