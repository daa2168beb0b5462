"""Keras's composition rules and the output-list assembler (conformance/semantics.py, SEMANTICS.md §1, §3).

Each test is one sentence of the spec, on small hand-made arrays whose expected
result is derived in the test itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance import semantics
from conformance.matrix.spec import BidirectionalSpec, EncoderDecoderSpec, LayerSpec, StackedSpec
from conformance.semantics import LayerRun

BATCH, STEPS, UNITS = 2, 4, 3


def _sequence(offset: float = 0.0) -> np.ndarray:
    """(BATCH, STEPS, UNITS) where the value at [b, t, u] is offset + 100 b + 10 t + u."""
    b, t, u = np.meshgrid(np.arange(BATCH), np.arange(STEPS), np.arange(UNITS), indexing="ij")
    return offset + 100.0 * b + 10.0 * t + u


def _state(value: float) -> np.ndarray:
    return np.full((BATCH, UNITS), value)


def _same(got: list[np.ndarray], want: list[np.ndarray]) -> bool:
    return len(got) == len(want) and all(np.array_equal(g, w) for g, w in zip(got, want))


# --- the list of one layer ----------------------------------------------------------------


def test_a_layer_lists_its_last_output_then_h_then_c():
    layer = LayerSpec("lstm", UNITS, return_state=True)
    run = LayerRun(_sequence(), [_state(1.0), _state(2.0)])
    assert _same(semantics.output_list(layer, {"layer": run}),
                 [_sequence()[:, -1], _state(1.0), _state(2.0)])


def test_return_sequences_lists_the_whole_sequence_and_no_states_without_return_state():
    layer = LayerSpec("gru", UNITS, return_sequences=True)
    run = LayerRun(_sequence(), [_state(1.0)])
    assert _same(semantics.output_list(layer, {"layer": run}), [_sequence()])


def test_a_go_backwards_sequence_stays_in_processing_order():
    layer = LayerSpec("gru", UNITS, return_sequences=True, go_backwards=True)
    processed = _sequence()
    (listed,) = semantics.output_list(layer, {"layer": LayerRun(processed, [_state(1.0)])})
    assert np.array_equal(listed, processed)


# --- Bidirectional ------------------------------------------------------------------------


def _bidirectional_runs() -> dict[str, LayerRun]:
    """Forward values from 0, backward from 1000 (in processing order); states 1, 2 and 3, 4."""
    return {"forward": LayerRun(_sequence(), [_state(1.0), _state(2.0)]),
            "backward": LayerRun(_sequence(1000.0), [_state(3.0), _state(4.0)])}


def test_a_bidirectional_list_is_merged_then_forward_states_then_backward_states():
    spec = BidirectionalSpec(LayerSpec("lstm", UNITS, return_state=True), merge_mode="concat")
    forward_last = _sequence()[:, -1]
    backward_last = _sequence(1000.0)[:, -1]  # the backward copy's last processed step (input step 0)
    want = [np.concatenate([forward_last, backward_last], axis=-1),
            _state(1.0), _state(2.0), _state(3.0), _state(4.0)]
    assert _same(semantics.output_list(spec, _bidirectional_runs()), want)


def test_merge_mode_none_lists_both_outputs_first_forward_then_backward():
    spec = BidirectionalSpec(LayerSpec("gru", UNITS, return_state=True), merge_mode=None)
    runs = {"forward": LayerRun(_sequence(), [_state(1.0)]),
            "backward": LayerRun(_sequence(1000.0), [_state(3.0)])}
    want = [_sequence()[:, -1], _sequence(1000.0)[:, -1], _state(1.0), _state(3.0)]
    assert _same(semantics.output_list(spec, runs), want)


def test_the_backward_sequence_is_flipped_back_to_input_order_before_the_merge():
    spec = BidirectionalSpec(LayerSpec("simple_rnn", UNITS, return_sequences=True), merge_mode=None)
    runs = {"forward": LayerRun(_sequence(), [_state(1.0)]),
            "backward": LayerRun(_sequence(1000.0), [_state(3.0)])}
    forward, backward = semantics.output_list(spec, runs)
    assert np.array_equal(forward, _sequence())
    for t in range(STEPS):  # input step t is the backward copy's processing step STEPS-1-t
        assert np.array_equal(backward[:, t], _sequence(1000.0)[:, STEPS - 1 - t])


@pytest.mark.parametrize("merge_mode, merged", [
    ("concat", [[1.0, 2.0, 3.0, 5.0]]),  # forward's units first
    ("sum", [[1.0 + 3.0, 2.0 + 5.0]]),
    ("ave", [[(1.0 + 3.0) / 2, (2.0 + 5.0) / 2]]),
    ("mul", [[1.0 * 3.0, 2.0 * 5.0]]),
])
def test_merge_modes_combine_forward_and_backward_in_the_inputs_dtype(merge_mode, merged):
    forward, backward = np.array([[1.0, 2.0]], np.float32), np.array([[3.0, 5.0]], np.float32)
    (result,) = semantics.merge(merge_mode, forward, backward)
    assert result.tolist() == merged and result.dtype == np.float32


def test_a_merge_the_framework_computed_is_listed_as_it_is():
    spec = BidirectionalSpec(LayerSpec("gru", UNITS, return_state=True), merge_mode="sum")
    runs = {"forward": LayerRun(_sequence(), [_state(1.0)]),
            "backward": LayerRun(_sequence(1000.0), [_state(3.0)])}
    framework_merged = _state(-7.0)
    assert _same(semantics.output_list(spec, runs, merged=framework_merged),
                 [framework_merged, _state(1.0), _state(3.0)])


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("asked", [True, False])
def test_bidirectional_forces_zero_output_for_mask_to_return_sequences(return_sequences, asked):
    layer = LayerSpec("lstm", UNITS, return_sequences=return_sequences, zero_output_for_mask=asked)
    copies = semantics.keras_sublayers(BidirectionalSpec(layer))
    assert [copy.zero_output_for_mask for copy in copies.values()] == [return_sequences] * 2
    assert [copy.go_backwards for copy in copies.values()] == [False, True]


def test_a_bidirectional_initial_state_is_forward_states_then_backward_states():
    spec = BidirectionalSpec(LayerSpec("lstm", UNITS))
    states = [_state(1.0), _state(2.0), _state(3.0), _state(4.0)]
    split = semantics.split_initial_state(spec, states)
    assert _same(split["forward"], states[:2]) and _same(split["backward"], states[2:])


# --- stacks and encoder-decoders ----------------------------------------------------------


def _stack() -> StackedSpec:
    return StackedSpec((LayerSpec("gru", 5, return_sequences=True), LayerSpec("gru", 2, return_sequences=True),
                        LayerSpec("gru", UNITS, return_state=True)))


def _encoder_decoder() -> EncoderDecoderSpec:
    return EncoderDecoderSpec(LayerSpec("lstm", 6, return_state=True), LayerSpec("lstm", 6, return_sequences=True))


class _Recorder:
    """A runner for ``semantics.route`` that records what each sub-layer was given."""

    def __init__(self) -> None:
        self.calls: dict[str, dict] = {}

    def __call__(self, name, layer, inputs, initial_state, masked) -> LayerRun:
        self.calls[name] = {"inputs": inputs, "initial_state": initial_state, "masked": masked}
        offset = 1000.0 * len(self.calls)
        return LayerRun(inputs + offset, [np.full((BATCH, layer.units), offset)])


def test_the_mask_reaches_every_stacked_layer_but_only_the_encoder():
    assert semantics.masked_sublayers(_stack()) == ("layer_0", "layer_1", "layer_2")
    assert semantics.masked_sublayers(_encoder_decoder()) == ("encoder",)
    stacked, encoded = _Recorder(), _Recorder()
    semantics.route(_stack(), stacked, _sequence())
    semantics.route(_encoder_decoder(), encoded, _sequence(), decoder_x=_sequence(50.0))
    assert [call["masked"] for call in stacked.calls.values()] == [True, True, True]
    assert {name: call["masked"] for name, call in encoded.calls.items()} == {"encoder": True, "decoder": False}


def test_each_stacked_layer_reads_the_previous_sequence_and_only_the_first_the_initial_state():
    runner, h0 = _Recorder(), [_state(9.0)]
    runs = semantics.route(_stack(), runner, _sequence(), initial_state=h0)
    assert np.array_equal(runner.calls["layer_0"]["inputs"], _sequence())
    assert np.array_equal(runner.calls["layer_1"]["inputs"], runs["layer_0"].sequence)
    assert np.array_equal(runner.calls["layer_2"]["inputs"], runs["layer_1"].sequence)
    assert _same(runner.calls["layer_0"]["initial_state"], h0)
    assert runner.calls["layer_1"]["initial_state"] is None and runner.calls["layer_2"]["initial_state"] is None


def test_the_decoder_reads_its_own_inputs_and_starts_from_the_encoders_final_states():
    runner, decoder_x = _Recorder(), _sequence(50.0)
    runs = semantics.route(_encoder_decoder(), runner, _sequence(), initial_state=[_state(9.0)], decoder_x=decoder_x)
    assert np.array_equal(runner.calls["decoder"]["inputs"], decoder_x)
    assert _same(runner.calls["decoder"]["initial_state"], runs["encoder"].states)


def test_a_stack_lists_its_last_layer_and_an_encoder_decoder_its_decoder():
    last = LayerRun(_sequence(), [_state(5.0)])
    runs = {"layer_0": LayerRun(_sequence(1000.0), []), "layer_1": LayerRun(_sequence(2000.0), []), "layer_2": last}
    assert _same(semantics.output_list(_stack(), runs), [_sequence()[:, -1], _state(5.0)])
    encoder_decoder = {"encoder": LayerRun(_sequence(1000.0), [_state(1.0), _state(2.0)]),
                       "decoder": LayerRun(_sequence(), [_state(3.0), _state(4.0)])}
    assert _same(semantics.output_list(_encoder_decoder(), encoder_decoder), [_sequence()])


def test_input_widths_of_a_stack_are_the_features_then_each_previous_layers_units():
    assert semantics.input_widths(_stack(), 7) == {"layer_0": 7, "layer_1": 5, "layer_2": 2}
    assert semantics.input_widths(_encoder_decoder(), 7, 4) == {"encoder": 7, "decoder": 4}
    assert semantics.input_widths(BidirectionalSpec(LayerSpec("gru", 2)), 7) == {"forward": 7, "backward": 7}


def test_the_first_layer_reads_the_inputs():
    assert semantics.first_layer(_stack()) == _stack().layers[0]
    assert semantics.first_layer(_encoder_decoder()) == _encoder_decoder().encoder


# --- masks --------------------------------------------------------------------------------


def test_a_right_padded_mask_gives_each_rows_real_steps_including_an_empty_row():
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
    assert semantics.right_padded_lengths(mask).tolist() == [4, 2, 0]
    assert semantics.right_padded_lengths(None) is None


def test_a_mask_with_holes_has_no_lengths():
    assert semantics.right_padded_lengths(np.array([[1, 0, 1, 1]], dtype=bool)) is None
    assert semantics.right_padded_lengths(np.array([[0, 1, 1, 1]], dtype=bool)) is None


def test_under_a_right_padded_mask_the_last_output_is_each_rows_last_real_step():
    layer, lengths = LayerSpec("gru", UNITS), np.array([4, 2])
    last = semantics.last_output(layer, _sequence(), lengths)
    assert np.array_equal(last[0], _sequence()[0, 3]) and np.array_equal(last[1], _sequence()[1, 1])


def test_with_go_backwards_the_last_output_is_the_last_processed_step():
    """Keras processes the padding first, so the last processed step is real."""
    layer = LayerSpec("gru", UNITS, go_backwards=True)
    last = semantics.last_output(layer, _sequence(), np.array([4, 2]))
    assert np.array_equal(last, _sequence()[:, -1])


def test_with_zero_output_for_mask_the_last_output_is_the_last_step_as_computed():
    layer = LayerSpec("gru", UNITS, zero_output_for_mask=True)
    assert np.array_equal(semantics.last_output(layer, _sequence(), np.array([4, 2])), _sequence()[:, -1])


def test_a_bidirectional_last_output_under_a_mask_is_the_forward_rows_last_real_step():
    spec = BidirectionalSpec(LayerSpec("gru", UNITS), merge_mode=None)
    runs = {"forward": LayerRun(_sequence(), [_state(1.0)]),
            "backward": LayerRun(_sequence(1000.0), [_state(3.0)])}
    forward, backward = semantics.output_list(spec, runs, lengths=np.array([4, 2]))
    assert np.array_equal(forward[1], _sequence()[1, 1])
    assert np.array_equal(backward, _sequence(1000.0)[:, -1])


def test_flip_valid_prefix_reverses_each_row_within_its_length():
    sequence = np.arange(8.0).reshape(2, 4, 1)
    flipped = semantics.flip_valid_prefix(sequence, np.array([4, 2]))
    assert flipped[..., 0].tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]


def test_a_prefix_reversed_pass_in_keras_processing_order_has_the_padding_first():
    """Row 1 (length 2) was fed steps 1, 0 then the padding 2, 3: Keras processes 3, 2, 1, 0."""
    fed = np.array([[[3.0], [2.0], [1.0], [0.0]], [[1.0], [0.0], [2.0], [3.0]]])
    in_keras_order = semantics.processing_order(fed, np.array([4, 2]))
    assert in_keras_order[..., 0].tolist() == [[3, 2, 1, 0], [3, 2, 1, 0]]
    assert semantics.processing_order(fed, None) is fed
