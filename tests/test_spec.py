"""LayerSpec and the composite specs: Keras argument names, validation, output lists."""

import re

import pytest

from conformance.matrix.spec import BidirectionalSpec, EncoderDecoderSpec, LayerSpec, StackedSpec, spec_from_dict


def test_lstm_return_state_lists_output_then_h_then_c():
    assert LayerSpec("lstm", 3, return_state=True).output_names() == ["output", "h", "c"]


def test_gru_return_state_lists_output_then_h():
    assert LayerSpec("gru", 3, return_state=True).output_names() == ["output", "h"]


def test_without_return_state_the_list_has_one_tensor():
    assert LayerSpec("simple_rnn", 2, return_sequences=True).output_names() == ["output"]


@pytest.mark.parametrize("field, value, words", [
    ("cell", "rnn", "cell='rnn' is not allowed; expected one of ('simple_rnn', 'lstm', 'gru')"),
    ("units", 0, "units=0 is not allowed; expected a positive int"),
    ("activation", "swish", "activation='swish' is not allowed"),
    ("recurrent_activation", "hard_tanh", "recurrent_activation='hard_tanh' is not allowed"),
    ("go_backwards", 1, "go_backwards=1 is not allowed; expected True or False"),
    ("unroll", "yes", "unroll='yes' is not allowed; expected True or False"),
    ("dropout", 1.0, "dropout=1.0 is not allowed; expected a rate in [0, 1)"),
    ("recurrent_dropout", -0.1, "recurrent_dropout=-0.1 is not allowed; expected a rate in [0, 1)"),
])
def test_bad_values_raise_naming_field_and_allowed_values(field, value, words):
    kwargs = {"cell": "lstm", "units": 2, field: value}
    with pytest.raises(ValueError, match=re.escape(words)):
        LayerSpec(**kwargs)


def test_both_hard_sigmoids_are_selectable_by_distinct_names():
    keras3 = LayerSpec("lstm", 1, recurrent_activation="hard_sigmoid")
    legacy = LayerSpec("lstm", 1, recurrent_activation="legacy_hard_sigmoid")
    assert (keras3.recurrent_activation, legacy.recurrent_activation) == ("hard_sigmoid", "legacy_hard_sigmoid")
    assert keras3 != legacy


def test_bidirectional_lstm_return_state_lists_forward_states_then_backward():
    spec = BidirectionalSpec(LayerSpec("lstm", 2, return_state=True), "concat")
    assert spec.output_names() == ["output", "h_forward", "c_forward", "h_backward", "c_backward"]


def test_bidirectional_without_merge_returns_two_outputs_first():
    spec = BidirectionalSpec(LayerSpec("gru", 2, return_state=True), None)
    assert spec.output_names() == ["output_forward", "output_backward", "h_forward", "h_backward"]


def test_bidirectional_backward_copy_goes_backwards():
    layers = BidirectionalSpec(LayerSpec("gru", 2), "sum").sublayers()
    assert not layers["forward"].go_backwards and layers["backward"].go_backwards


def test_bad_merge_mode_is_refused():
    with pytest.raises(ValueError, match="merge_mode='max' is not allowed"):
        BidirectionalSpec(LayerSpec("gru", 2), "max")


def test_stacked_inner_layers_must_return_sequences():
    with pytest.raises(ValueError, match=r"layers\[0\]"):
        StackedSpec((LayerSpec("lstm", 2), LayerSpec("lstm", 2)))


def test_encoder_must_return_its_states():
    with pytest.raises(ValueError, match="return_state=True"):
        EncoderDecoderSpec(LayerSpec("lstm", 2), LayerSpec("lstm", 2))


def test_encoder_and_decoder_states_must_fit():
    with pytest.raises(ValueError, match="decoder.units"):
        EncoderDecoderSpec(LayerSpec("lstm", 2, return_state=True), LayerSpec("lstm", 3))


@pytest.mark.parametrize("spec", [
    LayerSpec("gru", 3, return_sequences=True, reset_after=False, activation="relu"),
    BidirectionalSpec(LayerSpec("lstm", 2, return_state=True), None),
    LayerSpec("lstm", 2, unroll=True, dropout=0.5, recurrent_dropout=0.25),
    StackedSpec((LayerSpec("gru", 5, return_sequences=True), LayerSpec("gru", 4))),
    EncoderDecoderSpec(LayerSpec("lstm", 2, return_state=True), LayerSpec("lstm", 2, return_sequences=True)),
])
def test_specs_survive_a_round_trip_through_their_dict(spec):
    assert spec_from_dict(spec.to_dict()) == spec


def test_an_unknown_spec_kind_is_refused():
    with pytest.raises(ValueError, match="spec kind='conv'"):
        spec_from_dict({"kind": "conv"})


def test_describe_reads_like_the_keras_call():
    assert LayerSpec("gru", 4, return_state=True).describe() == "GRU(4, return_state=True)"


def test_the_inference_invariant_arguments_are_in_the_dict_only_when_set():
    """A spec without them reads (and hashes in the fixtures manifest) as before they existed."""
    plain = LayerSpec("gru", 3).to_dict()
    assert not {"unroll", "dropout", "recurrent_dropout"} & plain.keys()
    assert LayerSpec("gru", 3, dropout=0.5).inference_invariant == {"dropout": 0.5}
    assert LayerSpec("gru", 3, dropout=0.5).to_dict() == {**plain, "dropout": 0.5}


def test_describe_names_an_inference_invariant_argument_that_is_set():
    assert LayerSpec("lstm", 4, unroll=True).describe() == "LSTM(4, unroll=True)"
