"""No verdict is bent by what one adapter does (issue 29, items 1-7, 12 and 14).

An adapter may write into the arrays it was handed, change numpy's global
error state or the working directory, answer in text, name itself with
control characters, answer its optional members with the wrong types, share
its name with another adapter, print without end, raise ``KeyboardInterrupt``
or leave a process behind. Each test runs the installed ``conformance``
script on one of ``tests/hostile_adapters.py`` and checks what a user gets:
every other result still judged as it would be without the misbehaviour, and
the misbehaviour itself recorded where it happened.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from conformance.results.records import validate_results
from tests.commandline import CONSOLE_SCRIPT, one_line_error
from tests.test_run_robustness import ENV, TUTORIAL, alive, planned_equals_recorded, strict_json

pytestmark = pytest.mark.slow

BOTH_DTYPES = ["--device", "cpu", "-k", "tutorial"]  # 12 cases x float32, float64: 24 tests


def conformance_run(report_dir: Path | str, *args: str, cwd: Path | None = None,
                    env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONSOLE_SCRIPT), "run", "--report-dir", str(report_dir), *args], cwd=cwd,
                          env=env or ENV, capture_output=True, text=True, timeout=600)


def hostile(name: str) -> list[str]:
    return ["--adapter", f"tests.hostile_adapters:{name}"]


def test_an_adapter_writing_into_everything_it_was_handed_changes_no_verdict(tmp_path):
    """Its own result, the other dtype's row of the same case and the later cases all pass:
    each result hands the adapter arrays of its own, and judges against arrays it never saw."""
    result = conformance_run(tmp_path, *hostile("InPlaceAdapter"), "--device", "cpu",
                             "-k", "tutorial or mask_holes")
    records = planned_equals_recorded(strict_json(tmp_path / "results.json"))
    assert {r["dtype"] for r in records.values() if "mask_holes" in r["case_id"]} == {"float32", "float64"}
    assert {r["status"] for r in records.values()} == {"pass"}, result.stdout
    assert result.returncode == 0


def test_numpy_set_to_raise_by_an_adapter_does_not_reach_the_verdict(tmp_path):
    """After ``np.seterr(all="raise")`` in the adapter, float16 results (whose ULP figures underflow
    in a cast) are still judged: the verdict runs under numpy's default error state."""
    result = conformance_run(tmp_path, *hostile("SeterrRaiseAdapter"), "--device", "cpu",
                             "-k", "tutorial or lstm-seq1-state1-saturating-b3t5-reduced_precision")
    records = planned_equals_recorded(strict_json(tmp_path / "results.json"))
    assert {"float16", "bfloat16"} <= {r["dtype"] for r in records.values()}
    assert {r["status"] for r in records.values()} == {"pass"}, result.stdout
    assert result.returncode == 0


def test_text_and_object_outputs_are_fails_that_name_the_dtype(tmp_path):
    result = conformance_run(tmp_path, *hostile("TextOutputAdapter"), *TUTORIAL)
    records = planned_equals_recorded(strict_json(tmp_path / "results.json"))
    by_cell = {cell: [r for r in records.values() if r["cell"] == cell] for cell in ("lstm", "gru", "simple_rnn")}
    assert {r["status"] for r in by_cell["lstm"] + by_cell["gru"]} == {"fail"}
    assert all("dtype <U5, expected float32" in r["message"] for r in by_cell["lstm"])
    assert all("dtype object, expected float32" in r["message"] for r in by_cell["gru"])
    assert {r["status"] for r in by_cell["simple_rnn"]} == {"pass"}
    assert result.returncode == 1


def test_an_adapter_that_changes_directory_leaves_a_relative_report_dir_where_it_was(tmp_path):
    result = conformance_run("report", *hostile("ChdirAdapter"), *BOTH_DTYPES, cwd=tmp_path)
    records = planned_equals_recorded(strict_json(tmp_path / "report" / "results.json"))
    assert len(records) == 24 and {r["status"] for r in records.values()} == {"pass"}, result.stdout
    assert [p for p in (tmp_path / "elsewhere").rglob("*") if p.is_file()] == []
    assert result.returncode == 0


def test_an_adapter_named_with_control_characters_has_every_result_recorded(tmp_path):
    """Control characters in text are stored as ``\\xNN``; the supervisor finds the results under that name."""
    result = conformance_run(tmp_path, *hostile("BellNameAdapter"), *BOTH_DTYPES)
    records = planned_equals_recorded(strict_json(tmp_path / "results.json"))
    assert len(records) == 24 and {r["status"] for r in records.values()} == {"pass"}, result.stdout
    assert {r["adapter"] for r in records.values()} == {"hostile-\\x07bell\\x1b"}
    assert result.returncode == 0


@pytest.mark.parametrize("adapter, member", [
    ("NoneDevicesAdapter", "devices() returned None"),
    ("IntDevicesAdapter", "devices() returned 1"),
    ("IntDeviceNameAdapter", "device_name('cpu') returned 0"),
    ("BytesVersionsAdapter", "versions() returned {b'oracle': '1.0'}"),
])
def test_an_optional_member_answering_the_wrong_type_is_an_error_of_that_adapter(tmp_path, adapter, member):
    """Every result of the adapter is an error that says which member answered what, and the
    results document is still one the suite's own schema accepts."""
    result = conformance_run(tmp_path, *hostile(adapter), *TUTORIAL)
    document = strict_json(tmp_path / "results.json")
    validate_results(document, "results.json")
    records = planned_equals_recorded(document)
    assert len(records) == 12 and {r["status"] for r in records.values()} == {"error"}, result.stdout
    assert all(member in r["message"] for r in records.values()), result.stdout
    assert [member in entry["contract_breach"] for entry in document["adapters"].values()] == [True]
    assert result.returncode == 1
    rendered = subprocess.run([str(CONSOLE_SCRIPT), "report", str(tmp_path / "results.json"), "-o",
                               str(tmp_path / "rendered")], env=ENV, capture_output=True, text=True, timeout=300)
    assert rendered.returncode == 0, rendered.stderr


def test_two_adapters_with_one_name_are_refused_before_anything_is_written(tmp_path):
    result = conformance_run(tmp_path / "report", "--adapter", "tests.oracle_adapters:OracleAdapter",
                             *hostile("SameNameAdapter"), *TUTORIAL)
    assert "both named 'oracle'" in one_line_error(result)
    assert not (tmp_path / "report").exists()


def test_the_raw_stderr_file_is_capped_as_the_records_are(tmp_path):
    """20 MB printed; the file keeps its first and last lines and says how much it left out."""
    result = conformance_run(tmp_path, *hostile("LoudAdapter"), *TUTORIAL)
    assert result.returncode == 0, result.stdout + result.stderr
    stderr = tmp_path / "streams" / "tests.hostile_adapters_LoudAdapter.stderr"
    assert stderr.stat().st_size < 3 * 1024 * 1024
    text = stderr.read_text()
    assert text.startswith("loud adapter: ") and "bytes of stderr omitted" in text
    assert text.rstrip().endswith("x" * 100)


def test_a_keyboard_interrupt_raised_inside_run_is_recorded_as_such(tmp_path):
    result = conformance_run(tmp_path, *hostile("KeyboardInterruptAdapter"), *TUTORIAL)
    document = strict_json(tmp_path / "results.json")
    records = planned_equals_recorded(document)
    lstm = [r for r in records.values() if r["cell"] == "lstm"]
    assert {r["status"] for r in lstm} == {"error"}
    assert all("KeyboardInterrupt" in r["message"] for r in lstm), [r["message"] for r in lstm]
    assert {r["status"] for r in records.values() if r["cell"] != "lstm"} == {"pass"}
    assert document["complete"] is True and result.returncode == 1


def test_a_process_an_adapter_leaves_behind_ends_with_the_run(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    result = conformance_run(tmp_path / "report", *hostile("GrandchildAdapter"), *TUTORIAL,
                             env=dict(ENV, HOSTILE_GRANDCHILD_PID=str(pid_file)))
    assert result.returncode == 0, result.stdout + result.stderr
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and alive(grandchild):
        time.sleep(0.2)
    try:
        assert not alive(grandchild)
    finally:
        if alive(grandchild):
            os.kill(grandchild, 9)
