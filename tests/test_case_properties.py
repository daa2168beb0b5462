"""The properties of a case, which known-differences conditions name: read from the case itself,
the same whether the caller holds the case or only its id."""

from __future__ import annotations

import numpy as np
import pytest

from conformance.matrix.cases import build_cases
from conformance.matrix.properties import PROPERTIES, case_properties, mask_properties, properties_of
from conformance.matrix.unseen import unseen_case, unseen_cases


@pytest.mark.parametrize("rows, expected", [
    ([[1, 1, 1], [1, 1, 0]], {"masked_row": False, "masked_start": False, "mask_holes": False, "padded": True}),
    ([[1, 1, 1], [0, 0, 0]], {"masked_row": True, "masked_start": True, "mask_holes": False, "padded": False}),
    ([[0, 1, 1], [1, 1, 1]], {"masked_row": False, "masked_start": True, "mask_holes": True, "padded": False}),
    ([[1, 0, 1], [1, 1, 1]], {"masked_row": False, "masked_start": False, "mask_holes": True, "padded": False}),
])
def test_the_mask_properties_describe_the_mask_not_the_options_name(rows, expected):
    assert mask_properties(np.asarray(rows, dtype=bool)) == {"mask": True, **expected}


def test_without_a_mask_every_mask_property_is_false():
    assert not any(mask_properties(None).values())


def test_every_case_has_every_property_with_a_value_of_its_kind():
    """The vocabulary and the cases agree: the whole fixed matrix and 200 unseen cases."""
    for case in build_cases() + unseen_cases(200, 1):
        found = case_properties(case)
        assert found.keys() == PROPERTIES.keys(), case.id
        for name, value in found.items():
            assert type(value) is PROPERTIES[name].kind, (case.id, name)
            assert not PROPERTIES[name].values or value in PROPERTIES[name].values, (case.id, name, value)


def test_a_bidirectionals_own_backward_copy_is_not_go_backwards():
    bidirectional = next(c for c in build_cases() if c.spec.kind == "bidirectional")
    assert case_properties(bidirectional)["go_backwards"] is False
    assert case_properties(bidirectional)["composite"] == "bidirectional"


def test_an_unseen_id_gives_the_properties_of_the_case_redrawn_from_its_seed_and_index():
    case = unseen_case(7, 42)
    assert properties_of(f"{case.id}[tract-cpu-float32]") == case_properties(case)
    assert properties_of(case.id)["unseen"] is True


def test_an_id_that_names_no_case_has_no_properties():
    case = unseen_case(7, 42)
    assert properties_of(case.id.replace("unseen7-42", "unseen7-43")) is None  # another draw's label
    assert properties_of("lstm-seq0-state0-random-b3t5-no_such_option") is None
