"""`conformance search`: cases drawn from the matrix's space, disagreements found and shrunk."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings

from conformance.matrix import drawn
from conformance.matrix.cases import build_cases
from conformance.matrix.drawn import Draw, drawn_case, draws
from conformance.reference import expected_outputs
from tests.commandline import CONSOLE_SCRIPT, one_line_error

REPO = Path(__file__).resolve().parent.parent
FAULTY = "tests.faulty_adapters:LstmGatesInOnnxOrder"  # LSTM gates i, f, c, o read as ONNX's i, o, f, c


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(draws())
def test_every_draw_is_a_case_the_oracle_answers_and_normalizing_it_again_changes_nothing(draw):
    assert draw.normalized() == draw
    case = drawn_case(draw)
    assert case.dtype == draw.dtype and case.id == draw.case_id()
    assert all(np.isfinite(a).all() for a in expected_outputs(case))


def test_the_same_draw_gives_the_same_id_and_the_same_values():
    draw = Draw(cell="gru", return_sequences=True, composite="bidirectional", merge_mode="sum", mask="holes",
                initial_state=True, scheme="random", batch=3, steps=4, features=2, units=3).normalized()
    first, second = drawn_case(draw), drawn_case(Draw(**draw.to_dict()))
    assert first.id == second.id
    assert np.array_equal(first.x, second.x) and np.array_equal(first.mask, second.mask)
    assert all(np.array_equal(first.weights[n][k], second.weights[n][k]) for n in first.weights
               for k in first.weights[n])


def test_drawn_ids_name_the_fixed_families_options_so_known_patterns_apply():
    draw = Draw(cell="lstm", return_state=True, mask="holes", mask_source="masking", initial_state=True,
                scheme="random", batch=3, steps=5, features=3, units=4).normalized()
    assert draw.case_id().startswith("lstm-seq0-state1-random-b3t5-drawn")
    assert draw.case_id().endswith("-masking_holes_initial_state")


def test_the_adopted_family_is_exactly_the_cases_adopted_from_draws():
    """Each entry of drawn_cases.json (``conformance search --adopt``) is one fixed case, with a drawn
    id; no other fixed case has one."""
    adopted = json.loads(drawn.ADOPTED.read_text())
    drawn_ids = [case.id for case in build_cases() if "-drawn" in case.id]
    assert len(drawn_ids) == len(set(drawn_ids)) == len(adopted)


def search(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONSOLE_SCRIPT), "search", *args], capture_output=True, text=True, timeout=900,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_a_search_finds_a_planted_porting_bug_and_shrinks_it_below_the_smallest_fixed_case(tmp_path):
    done = search(tmp_path, "--adapter", FAULTY, "--budget", "10", "--max-found", "1", "-o", "found")
    assert done.returncode == 1, done.stdout + done.stderr
    document = json.loads((tmp_path / "found" / "search.json").read_text())
    (found,) = document["disagreements"]
    assert found["status"] == "fail" and found["draw"]["cell"] == "lstm"
    smallest_fixed = min(c.batch * c.timesteps * c.features * c.spec.units for c in build_cases()
                         if c.id.startswith("lstm-") and c.spec.kind == "layer")
    shrunk = found["draw"]
    assert shrunk["batch"] * shrunk["steps"] * shrunk["features"] * shrunk["units"] <= smallest_fixed
    proposal = json.loads((tmp_path / "found" / f"01-{found['test_id'].split('[')[0]}" / "case.json").read_text())
    assert proposal["draw"] == shrunk and proposal["adopt"].startswith("conformance search --adopt ")
    assert found["test_id"] in done.stdout and document["complete"] is True


def test_a_correct_adapter_gives_no_disagreement_and_exit_0(tmp_path):
    done = search(tmp_path, "--adapter", "tests.oracle_adapters:OracleAdapter", "--budget", "0.3", "-o", "clean")
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads((tmp_path / "clean" / "search.json").read_text())
    assert document["disagreements"] == [] and document["tried"] > 0 and document["complete"] is True


def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(tmp_path):
    for args, message in (
            (["--adapter", FAULTY, "--budget", "0"], "--budget must be a positive number"),
            (["--adapter", FAULTY, "--budget", "-1"], "--budget must be a positive number"),
            (["--adapter", FAULTY, "--seed", "x"], "invalid int value"),
            (["--adapter", "no-such-adapter"], "unknown adapter"),
            (["--adapter", FAULTY, "--max-found", "0"], "--max-found must be at least 1"),
            (["--adopt", "missing.json"], "not a search's case.json")):
        done = search(tmp_path, *args, "-o", "out")
        assert done.returncode == 2 and message in one_line_error(done), (args, done.stderr)
    assert not (tmp_path / "out").exists()
