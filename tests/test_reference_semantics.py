"""The oracle's behaviours, one per test, as SEMANTICS.md states them (proved against Keras elsewhere)."""

import dataclasses

import numpy as np
import pytest

from conformance.matrix.spec import BidirectionalSpec, EncoderDecoderSpec, LayerSpec, StackedSpec
from conformance.matrix.weights import random_weights
from conformance.reference import forward
from conformance.reference.activations import activation

RNG = np.random.default_rng(7)
X = RNG.uniform(-1, 1, size=(3, 5, 3))


def weights_for(spec: LayerSpec, features: int = 3, seed: int = 0) -> dict:
    return random_weights(spec, features, np.random.default_rng(seed))


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_last_output_equals_h(cell):
    spec = LayerSpec(cell, 4, return_state=True)
    outputs = forward(spec, weights_for(spec), X)
    np.testing.assert_array_equal(outputs[0], outputs[1])


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_last_step_of_the_sequence_equals_h_without_mask(cell):
    spec = LayerSpec(cell, 4, return_sequences=True, return_state=True)
    outputs = forward(spec, weights_for(spec), X)
    np.testing.assert_array_equal(outputs[0][:, -1], outputs[1])


def test_lstm_cell_state_differs_from_h():
    spec = LayerSpec("lstm", 4, return_state=True)
    _, h, c = forward(spec, weights_for(spec), X)
    assert not np.allclose(h, c)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_go_backwards_keeps_processing_order(cell):
    """The sequence is that of the reversed input, not flipped back."""
    backwards = LayerSpec(cell, 4, return_sequences=True, go_backwards=True)
    plain = dataclasses.replace(backwards, go_backwards=False)
    w = weights_for(backwards)
    np.testing.assert_allclose(forward(backwards, w, X)[0], forward(plain, w, X[:, ::-1])[0])


def test_masked_steps_carry_the_state_and_repeat_the_last_output():
    spec = LayerSpec("gru", 4, return_sequences=True, return_state=True)
    mask = np.ones((3, 5), bool)
    mask[0, 2] = False
    sequence, h = forward(spec, weights_for(spec), X, mask=mask)
    np.testing.assert_array_equal(sequence[0, 2], sequence[0, 1])
    unmasked = forward(spec, weights_for(spec), np.delete(X[:1], 2, axis=1))
    np.testing.assert_allclose(h[0], unmasked[1][0])


def test_zero_output_for_mask_zeroes_masked_steps():
    spec = LayerSpec("lstm", 4, return_sequences=True, zero_output_for_mask=True)
    mask = np.ones((3, 5), bool)
    mask[1, 3:] = False
    (sequence,) = forward(spec, weights_for(spec), X, mask=mask)
    assert not sequence[1, 3:].any() and sequence[1, :3].all()


def test_fully_masked_row_outputs_zeros_and_keeps_the_initial_state():
    spec = LayerSpec("lstm", 4, return_state=True)
    mask = np.ones((3, 5), bool)
    mask[1] = False
    initial = [RNG.uniform(-1, 1, (3, 4)), RNG.uniform(-1, 1, (3, 4))]
    output, h, c = forward(spec, weights_for(spec), X, initial_state=initial, mask=mask)
    assert not output[1].any()
    np.testing.assert_array_equal(h[1], initial[0][1])
    np.testing.assert_array_equal(c[1], initial[1][1])


def test_gru_reset_variants_differ():
    after = LayerSpec("gru", 4)
    before = dataclasses.replace(after, reset_after=False)
    w_after = weights_for(after)
    w_before = dict(w_after, bias=w_after["bias"][0])
    assert not np.allclose(forward(after, w_after, X)[0], forward(before, w_before, X)[0], atol=1e-3)


def test_the_two_hard_sigmoids_differ_away_from_zero():
    x = np.array([-2.0, 0.0, 1.0])
    np.testing.assert_allclose(activation("hard_sigmoid")(x), [1 / 6, 0.5, 2 / 3])
    np.testing.assert_allclose(activation("legacy_hard_sigmoid")(x), [0.1, 0.5, 0.7])


@pytest.mark.parametrize("merge_mode, merge", [
    ("concat", lambda a, b: np.concatenate([a, b], -1)), ("sum", np.add),
    ("ave", lambda a, b: (a + b) / 2), ("mul", np.multiply)])
def test_bidirectional_merges_forward_with_the_flipped_backward_sequence(merge_mode, merge):
    layer = LayerSpec("simple_rnn", 4, return_sequences=True)
    spec = BidirectionalSpec(layer, merge_mode)
    w = {"forward": weights_for(layer, seed=1), "backward": weights_for(layer, seed=2)}
    forward_seq = forward(layer, w["forward"], X)[0]
    backward_seq = forward(dataclasses.replace(layer, go_backwards=True), w["backward"], X)[0]
    np.testing.assert_allclose(forward(spec, w, X)[0], merge(forward_seq, backward_seq[:, ::-1]))


def test_bidirectional_lstm_states_are_forward_then_backward():
    layer = LayerSpec("lstm", 4, return_state=True)
    w = {"forward": weights_for(layer, seed=1), "backward": weights_for(layer, seed=2)}
    outputs = forward(BidirectionalSpec(layer, None), w, X)
    _, h_fw, c_fw = forward(layer, w["forward"], X)
    _, h_bw, c_bw = forward(dataclasses.replace(layer, go_backwards=True), w["backward"], X)
    for got, want in zip(outputs[2:], [h_fw, c_fw, h_bw, c_bw]):
        np.testing.assert_array_equal(got, want)


def test_stacking_feeds_the_whole_sequence_to_the_next_layer():
    first, last = LayerSpec("gru", 5, return_sequences=True), LayerSpec("gru", 4)
    w = {"layer_0": weights_for(first), "layer_1": weights_for(last, features=5)}
    hidden = forward(first, w["layer_0"], X)[0]
    np.testing.assert_allclose(forward(StackedSpec((first, last)), w, X)[0],
                               forward(last, w["layer_1"], hidden)[0])


def test_encoder_states_become_the_decoder_initial_state():
    encoder = LayerSpec("lstm", 4, return_state=True)
    decoder = LayerSpec("lstm", 4, return_sequences=True)
    w = {"encoder": weights_for(encoder), "decoder": weights_for(decoder, seed=3)}
    decoder_x = RNG.uniform(-1, 1, (3, 2, 3))
    _, h, c = forward(encoder, w["encoder"], X)
    want = forward(decoder, w["decoder"], decoder_x, initial_state=[h, c])
    got = forward(EncoderDecoderSpec(encoder, decoder), w, (X, decoder_x))
    np.testing.assert_allclose(got[0], want[0])


def test_a_wrong_kernel_shape_is_named_with_expected_and_actual():
    spec = LayerSpec("lstm", 4)
    w = weights_for(spec)
    w["kernel"] = w["kernel"][:, :8]
    with pytest.raises(ValueError, match=r"weights.kernel: expected shape \(3, 16\), got \(3, 8\)"):
        forward(spec, w, X)


def test_a_wrong_initial_state_count_is_named():
    spec = LayerSpec("lstm", 4)
    with pytest.raises(ValueError, match=r"initial_state: expected 2 tensors"):
        forward(spec, weights_for(spec), X, initial_state=[np.zeros((3, 4))])


def test_an_integer_input_is_refused():
    spec = LayerSpec("gru", 4)
    with pytest.raises(ValueError, match="x: expected a floating-point array"):
        forward(spec, weights_for(spec), X.astype(int))


def test_a_mask_must_be_boolean_batch_by_time():
    spec = LayerSpec("gru", 4)
    with pytest.raises(ValueError, match=r"mask: expected shape \(3, 5\)"):
        forward(spec, weights_for(spec), X, mask=np.ones((3, 4), bool))


@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_sets_zero_output_for_mask_to_return_sequences(return_sequences):
    """keras Bidirectional.__init__ force_zero_output_for_mask: on with sequences, *off* without."""
    mask = np.ones((3, 5), bool)
    mask[1, 2:] = False
    w = {"forward": weights_for(LayerSpec("gru", 4), seed=1), "backward": weights_for(LayerSpec("gru", 4), seed=2)}
    outputs = {}
    for own_setting in (False, True):
        layer = LayerSpec("gru", 4, return_sequences=return_sequences, zero_output_for_mask=own_setting)
        outputs[own_setting] = forward(BidirectionalSpec(layer, "concat"), w, X, mask=mask)[0]
    np.testing.assert_array_equal(outputs[False], outputs[True])
    if return_sequences:
        assert not outputs[True][1, 2:, :4].any(), "padded forward steps are zeros"
