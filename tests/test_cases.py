"""The case matrix: complete, named readably, deterministic."""

import collections
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conformance.matrix.cases import build_cases
from conformance.matrix.spec import CELLS, LayerSpec
from conformance.matrix.weights import per_gate_weights
from conformance.reference import expected_outputs, forward, preactivation_ranges

CASES = build_cases()
# The cases a search found and a maintainer adopted (``conformance search --adopt``, the adopted_cases
# family): each the smallest draw that shows one disagreement, not a family's crossing of options and
# shapes, so the families' rules below hold for the cases cases.py lists (LISTED).
DRAWN_ID = re.compile(r"-drawn[0-9a-f]+-")
LISTED = [c for c in CASES if not DRAWN_ID.search(c.id)]
MANIFEST = Path(__file__).resolve().parent.parent / "fixtures" / "manifest.json"
# The core family's shapes (batch, timesteps): a single step, short sequences, a long one.
CORE_SHAPES = {(1, 1), (2, 5), (3, 5), (3, 7), (4, 48)}
ID_PATTERN = re.compile(r"^(simple_rnn|lstm|gru)-seq[01]-state[01]-(constant|per_gate|random|saturating)"
                        r"-b\d+t\d+(-drawn[0-9a-f]+)?(-[a-z_]+)?$")


def combos(cases):
    return {(c.cell, c.layer.return_sequences, c.layer.return_state) for c in cases}


def manifest_counts() -> tuple[int, int]:
    """The cases and case × dtype pairs of the golden fixtures, which the docs count from."""
    manifest = json.loads(MANIFEST.read_text())
    rows = manifest["cases"] if isinstance(manifest, dict) else manifest
    return len(rows), sum(len(row["dtypes"]) for row in rows)


def test_the_matrix_has_exactly_the_cases_and_pairs_of_the_fixtures():
    cases, pairs = manifest_counts()
    assert len(CASES) == cases
    assert sum(len(c.dtypes) for c in CASES) == pairs


def test_ids_are_unique_and_readable():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert all(ID_PATTERN.match(i) for i in ids), [i for i in ids if not ID_PATTERN.match(i)][:3]


@pytest.mark.parametrize("option", sorted({c.option for c in LISTED}))
def test_every_option_covers_the_four_flag_combinations_of_each_cell_it_applies_to(option):
    cases = [c for c in LISTED if c.option == option]
    cells = {c.cell for c in cases}
    assert combos(cases) == {(cell, s, r) for cell in cells for s in (0, 1) for r in (0, 1)}


def test_every_scheme_covers_all_twelve_combinations():
    for scheme in ("constant", "per_gate", "random", "saturating"):
        assert len(combos(c for c in CASES if c.scheme == scheme)) == 12


def test_the_core_shapes_go_from_a_single_step_to_a_long_sequence():
    assert {(c.batch, c.timesteps) for c in LISTED if c.option == "plain"} == CORE_SHAPES


def test_units_differ_from_features_outside_the_same_size_family():
    assert all(c.layer.units != c.features for c in LISTED if c.option not in ("tutorial", "same_sizes"))


SAME_SIZES = [c for c in CASES if c.option == "same_sizes"]


def test_the_same_size_family_has_every_cell_and_flag_with_all_four_axes_equal():
    assert combos(SAME_SIZES) == {(cell, s, r) for cell in CELLS for s in (0, 1) for r in (0, 1)}
    for case in SAME_SIZES:
        assert case.batch == case.timesteps == case.features == case.layer.units > 1, case.id
        assert case.initial_state is not None and "float64" in case.dtypes


def test_no_other_case_has_batch_equal_to_timesteps_beyond_one():
    assert all(c.batch != c.timesteps or c.batch == 1 for c in LISTED if c.option != "same_sizes")


WHOLE_RANGE = [c for c in CASES if c.scheme == "saturating"]
TAIL = 3.0  # past it tanh is within 0.005 of ±1, sigmoid within 0.05 of 0 or 1, both hard sigmoids clamped


def test_the_whole_range_family_has_every_cell_and_flag_and_both_hard_sigmoids_for_the_gated_cells():
    assert combos(WHOLE_RANGE) == {(cell, s, r) for cell in CELLS for s in (0, 1) for r in (0, 1)}
    for option in ("hard_sigmoid", "legacy_hard_sigmoid"):
        gated = [c for c in WHOLE_RANGE if c.option == option]
        assert combos(gated) == {(cell, s, r) for cell in ("lstm", "gru") for s in (0, 1) for r in (0, 1)}


@pytest.mark.parametrize("case", WHOLE_RANGE, ids=lambda c: c.id)
def test_a_whole_range_case_drives_every_gate_and_candidate_into_both_tails(case):
    """Each use of an activation (the oracle's observer names them: input, forget, output,
    update, reset, candidate, hidden) gets arguments beyond -3 and beyond +3 somewhere."""
    for use, (low, high) in preactivation_ranges(case).items():
        if use == "activation:cell_state":
            # c grows by at most |i*g| <= 1 a step and a closed forget gate resets it: over five
            # steps it stays within about ±2.6, so its tanh reaches its bend (tanh(0.9) = 0.72) in
            # both directions but not its flat tails.
            assert low < -0.9 and high > 0.9, (use, low, high)
        else:
            assert low < -TAIL and high > TAIL, (use, low, high)


def test_the_random_scheme_stays_in_the_activations_middle():
    """Why the whole-range family exists: every other random case stays within ±3."""
    for case in CASES:
        if case.scheme == "random":
            for use, (low, high) in preactivation_ranges(case).items():
                assert -TAIL < low and high < TAIL, (case.id, use, low, high)


def test_the_tutorial_case_exists_for_all_twelve_combinations():
    tutorial = [c for c in CASES if c.option == "tutorial"]
    assert len(combos(tutorial)) == 12
    for case in tutorial:
        np.testing.assert_array_equal(case.x.ravel(), np.float32([0.1, 0.2, 0.3, 0.1, 0.2, 0.3]))
        assert case.layer.units == 1


def test_every_case_runs_in_float32_and_its_other_pairs_in_float64_or_reduced_precision():
    cases, pairs = len(CASES), sum(len(c.dtypes) for c in CASES)
    assert all(c.dtypes[0] == "float32" for c in CASES)
    reduced = sum(d in ("float16", "bfloat16") for c in CASES for d in c.dtypes)
    assert sum("float64" in c.dtypes for c in CASES) + reduced == pairs - cases


def test_float64_covers_the_tutorial_and_the_per_gate_and_random_schemes():
    assert all("float64" in c.dtypes for c in CASES if c.option == "tutorial")
    assert {c.scheme for c in CASES if "float64" in c.dtypes} == {"constant", "per_gate", "random"}


@pytest.mark.parametrize("option", ["go_backwards", "initial_state", "mask_right", "mask_holes",
                                    "mask_empty_row", "mask_go_backwards", "zero_output_for_mask",
                                    "reset_before", "no_bias", "relu", "linear", "hard_sigmoid",
                                    "legacy_hard_sigmoid", "bidi_concat", "bidi_sum", "bidi_ave",
                                    "bidi_mul", "bidi_none", "stacked", "encdec", "unroll",
                                    "unroll_go_backwards", "unroll_mask_holes", "dropout",
                                    "dropout_mask_right", "masking_right", "masking_holes",
                                    "masking_empty_row", "stacked_masking_right", "bidi_concat_masking_right"])
def test_the_issue_s_options_are_all_present(option):
    assert any(c.option == option for c in CASES)


def test_a_fully_masked_row_is_really_fully_masked():
    case = next(c for c in CASES if c.option == "mask_empty_row")
    assert not case.mask.any(axis=1).all()


def test_holes_are_in_the_middle_not_only_at_the_end():
    case = next(c for c in CASES if c.option == "mask_holes")
    assert any(not row[1:-1].all() and row[-1] for row in case.mask)


def test_building_twice_gives_identical_arrays():
    again = {c.id: c for c in build_cases()}
    for case in CASES:
        other = again[case.id]
        np.testing.assert_array_equal(case.x, other.x)
        for name, weights in case.weights.items():
            for key, value in weights.items():
                np.testing.assert_array_equal(value, other.weights[name][key])


def test_per_gate_constants_differ_between_gates_so_a_permutation_shows():
    for cell in CELLS:
        layer = LayerSpec(cell, 2)
        for matrix in per_gate_weights(layer, 3).values():
            blocks = np.split(np.atleast_2d(matrix)[0], len(layer.gates))
            assert len({float(b[0]) for b in blocks}) == len(layer.gates)


def _arrays(case) -> list[np.ndarray]:
    """Every number a case feeds an adapter: inputs, states and weights."""
    weights = [value for layer in case.weights.values() for value in layer.values()]
    optional = [case.decoder_x, case.embeddings, case.earlier_x, *(case.initial_state or ())]
    return [case.x, *weights, *(a for a in optional if a is not None)]


def test_every_input_and_weight_is_a_float32_number_so_both_dtypes_share_one_answer():
    for case in CASES:
        for array in _arrays(case):
            np.testing.assert_array_equal(array, array.astype(np.float32).astype(np.float64), err_msg=case.id)


def test_counts_by_cell_are_balanced():
    counts = collections.Counter(c.cell for c in CASES)
    assert min(counts.values()) >= 0.8 * max(counts.values())


MASKING = [c for c in CASES if c.mask_source == "masking"]


def test_the_masking_family_covers_every_cell_and_flag_for_each_of_its_masks():
    for option in ("masking_right", "masking_holes", "masking_empty_row", "stacked_masking_right",
                   "bidi_concat_masking_right"):
        cases = [c for c in MASKING if c.option == option]
        assert combos(cases) == {(cell, s, r) for cell in CELLS for s in (0, 1) for r in (0, 1)}, option


@pytest.mark.parametrize("case", MASKING, ids=lambda c: c.id)
def test_a_masking_layer_derives_exactly_the_case_mask_from_x(case):
    """Masking(mask_value=0.0) masks a step when all its features are 0: the masked steps are all
    zeros, and each row's first real step has a zero feature without being masked."""
    np.testing.assert_array_equal(np.any(case.x != 0.0, axis=-1), case.mask)
    for row, keep in zip(case.x, case.mask):
        real = np.flatnonzero(keep)
        if real.size:
            assert (row[real[0]] == 0.0).any() and not (row[real[0]] == 0.0).all()


def test_a_masking_case_whose_x_would_not_give_its_mask_is_refused():
    case = MASKING[0]
    with pytest.raises(ValueError, match="Masking layer would not derive its mask"):
        dataclasses.replace(case, x=case.x + 1.0)
    with pytest.raises(ValueError, match="mask_source='token' is not allowed"):
        dataclasses.replace(case, mask_source="token")
    with pytest.raises(ValueError, match="tokens and embeddings go with mask_source='embedding'"):
        dataclasses.replace(case, mask_source="embedding")


EMBEDDING = [c for c in CASES if c.mask_source == "embedding"]


def test_the_embedding_family_covers_every_cell_and_flag_for_each_of_its_masks():
    for option in ("embedding_right", "embedding_holes", "bidi_concat_embedding_right"):
        cases = [c for c in EMBEDDING if c.option == option]
        assert combos(cases) == {(cell, s, r) for cell in CELLS for s in (0, 1) for r in (0, 1)}, option


@pytest.mark.parametrize("case", EMBEDDING, ids=lambda c: c.id)
def test_an_embedding_with_mask_zero_gives_exactly_the_case_x_and_mask(case):
    """Embedding(mask_zero=True) looks each token up and masks the steps whose token is 0; row 0
    of the table is no zero vector, so a port that ignores the mask (or derives it from zero
    vectors, as Masking would) computes on it."""
    assert case.tokens.dtype == np.int32 and case.tokens.shape == case.mask.shape
    np.testing.assert_array_equal(case.embeddings[case.tokens], case.x)
    np.testing.assert_array_equal(case.tokens != 0, case.mask)
    assert (case.embeddings[0] != 0).all() and not case.mask.all()


def test_an_embedding_case_whose_tokens_would_not_give_its_x_or_mask_is_refused():
    case = EMBEDDING[0]
    with pytest.raises(ValueError, match="Embedding.mask_zero=True. would not give x and mask"):
        dataclasses.replace(case, tokens=np.where(case.mask, 0, case.tokens).astype(np.int32))
    with pytest.raises(ValueError, match="would not give x and mask"):
        dataclasses.replace(case, x=case.x + 1.0)


STATEFUL = [c for c in CASES if c.earlier_x is not None]


def test_the_stateful_family_covers_every_cell_and_flag_carried_reversed_and_reset():
    for option in ("stateful", "stateful_go_backwards", "stateful_reset"):
        cases = [c for c in STATEFUL if c.option == option]
        assert combos(cases) == {(cell, s, r) for cell in CELLS for s in (0, 1) for r in (0, 1)}, option
        assert all(c.layer.stateful and c.reset_states == (option == "stateful_reset") for c in cases)
        assert all(c.earlier_x.shape[1] != c.timesteps for c in cases)  # the two calls cannot be mixed up


@pytest.mark.parametrize("case", STATEFUL, ids=lambda c: c.id)
def test_a_stateful_answer_is_the_second_call_from_the_state_the_first_left(case):
    """Derived with the oracle's plain call, twice: the first call's final states are the second
    call's initial state (zeros after reset_states), which is what stateful=True means."""
    plain = dataclasses.replace(case.layer, stateful=False)
    first = forward(dataclasses.replace(plain, return_state=True), case.weights["layer"], case.earlier_x)
    states = None if case.reset_states else first[1:]
    second = forward(plain, case.weights["layer"], case.x, initial_state=states)
    expected = expected_outputs(case)
    assert len(second) == len(expected)
    for got, want in zip(second, expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    if not case.reset_states:  # and the state did matter
        fresh = forward(plain, case.weights["layer"], case.x)
        assert np.abs(fresh[-1] - expected[-1]).max() > 1e-3


def test_stateful_cases_need_their_earlier_call_and_only_they_have_one():
    case = STATEFUL[0]
    with pytest.raises(ValueError, match="earlier_x .and reset_states. go with a stateful layer"):
        dataclasses.replace(case, earlier_x=None)
    plain = next(c for c in CASES if c.earlier_x is None)
    with pytest.raises(ValueError, match="go with a stateful layer"):
        dataclasses.replace(plain, reset_states=True)


def test_no_two_dtype_rows_of_a_case_share_an_array_nor_with_the_case():
    """What an adapter writes into one row's arrays reaches no other row (issue 29, item 1)."""
    from tests.fixture_cases import fixture_cases

    holes = next(c for c in fixture_cases() if c.option == "mask_holes" and "float64" in c.dtypes)
    rows = [holes, holes.for_dtype("float32"), holes.for_dtype("float64"), holes.for_dtype("float32").fresh_copy()]
    arrays = [[row.x, row.mask, *row.expected, *(w for layer in row.weights.values() for w in layer.values())]
              for row in rows]
    for n, first in enumerate(arrays):
        for second in arrays[n + 1:]:
            assert not any(np.shares_memory(a, b) for a, b in zip(first, second))
