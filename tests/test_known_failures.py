"""Known differences are data: every entry needs a reason, and brackets in ids are literal."""

import pytest

from conformance.known_failures import parse_known_failures

TEXT = """
# comment lines are ignored
*-mask_empty_row[keras-jax-*-float32]   # masked leading steps output initial h
gru-seq0-state0-random-b1t1[torch-cpu-float32]  # an exact id
"""


def test_a_pattern_matches_ids_with_their_brackets_literal():
    known = parse_known_failures(TEXT)
    assert known.reason_for("lstm-seq0-state1-random-b3t5-mask_empty_row[keras-jax-cpu-float32]")
    assert known.reason_for("lstm-seq0-state1-random-b3t5-mask_empty_row[keras-jax-cpu-float64]") is None
    assert known.reason_for("lstm-seq0-state1-random-b3t5-mask_empty_rowk[keras-jax-cpu-float32]") is None


def test_entries_that_matched_nothing_are_reported():
    known = parse_known_failures(TEXT)
    known.reason_for("gru-seq0-state0-random-b1t1[torch-cpu-float32]")
    assert known.unused() == ["*-mask_empty_row[keras-jax-*-float32]"]


def test_an_entry_without_a_reason_is_refused():
    with pytest.raises(ValueError, match="needs '# reason'"):
        parse_known_failures("lstm-*[torch-cpu-float32]\n", "kf.txt")


def test_the_shipped_list_parses():
    from conformance.known_failures import load_known_failures
    from conformance.plugin import DEFAULT_KNOWN_FAILURES

    assert load_known_failures(DEFAULT_KNOWN_FAILURES).entries
