"""``conformance cases``: the matrix from the fixtures manifest, with its coverage, as a user runs it."""

from __future__ import annotations

import json
import subprocess

from tests.commandline import CONSOLE_SCRIPT, one_line_error


def cases(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONSOLE_SCRIPT), "cases", *arguments], capture_output=True, text=True, timeout=120)


def test_the_whole_matrix_is_listed_with_its_counts():
    done = cases()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["id", "layer", "dtypes", "mask_source", "activation", "recurrent_activation"]
    listed = json.loads(cases("--json").stdout)
    assert lines[-1] == f"{len(listed)} cases, {sum(len(r['dtypes']) for r in listed)} case x dtype pairs"
    assert len(lines) == len(listed) + 2


def test_the_whole_range_cases_show_their_coverage_beyond_three_both_ways():
    rows = json.loads(cases("--match", "*-saturating-*", "--json").stdout)
    assert len(rows) == 28 + 12  # the whole-range family, and the saturating float16/bfloat16 cases
    for row in rows:
        for low, high in row["preactivation_range"].values():
            assert low < -3 and high > 3, row["id"]


def test_a_masking_case_says_where_its_mask_comes_from():
    done = cases("--match", "gru-seq0-state0-random-b3t5-masking_holes")
    row = done.stdout.splitlines()[1].split()
    assert row[0] == "gru-seq0-state0-random-b3t5-masking_holes" and "masking" in row


def test_a_pattern_matching_no_case_is_one_line_and_exit_2():
    assert "no case id matches 'nope*'" in one_line_error(cases("--match", "nope*"))


def test_a_broken_manifest_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "manifest.json").write_text("{", encoding="utf-8")
    assert "manifest.json" in one_line_error(cases("--fixtures-dir", str(tmp_path)))
