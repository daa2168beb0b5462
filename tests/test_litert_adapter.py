"""The ``litert-keras`` and ``litert-tf-keras`` adapters on real cases: a pass per row, one
conversion per static structure (a second case of it converts nothing), weights placed into the
flatbuffer give the bits a conversion of the case itself gives, the fused-LSTM state carried from
one ``invoke()`` to the next (tensorflow/tensorflow#47813) as a fail of its size, the interpreter's
refusal of a converted model an error and the converter's refusal unsupported, each in its own
words, a porting bug injected into the weights placed is caught on the right tensor, and the
standalone repro runner gives the adapter's bits. Conversions are slow (~1 s Keras 3, ~10 s
tf_keras): each test uses a few cases only."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from conformance.verdict.check import check_case

pytest.importorskip("ai_edge_litert")
pytest.importorskip("tensorflow")

from conformance.adapters.litert.common import REPRO_RUNNER  # noqa: E402
from conformance.adapters.litert.keras3 import LiteRTKerasAdapter  # noqa: E402
from conformance.adapters.litert.tf_keras import LiteRTTfKerasAdapter  # noqa: E402


def usable(adapter):
    reason = adapter.available()
    if reason:
        pytest.skip(reason)
    return adapter


def keras3_adapter(cls=LiteRTKerasAdapter):
    return usable(cls())


def tf_keras_adapter(cls=LiteRTTfKerasAdapter):
    pytest.importorskip("tf_keras")
    return usable(cls())


def test_keras3_gru_with_states_passes(cached, cases):
    outcome = check_case(keras3_adapter(), cases["gru-seq1-state1-random-b3t5"].for_dtype("float32"), "cpu")
    assert outcome.status == "pass", outcome.message
    assert outcome.run_info["recurrence"] == ["WHILE"]
    assert outcome.run_info["calls_agree"] is True
    assert "optimizations=[]" in outcome.run_info["precision"]


def test_tf_keras_masked_lstm_passes(cached, cases):
    """A masked LSTM is not fused (a WHILE loop), and its answer does not drift between calls."""
    case = cases["lstm-seq0-state0-random-b3t5-mask_holes"].for_dtype("float32")
    outcome = check_case(tf_keras_adapter(), case, "cpu")
    assert outcome.status == "pass", outcome.message
    assert "WHILE" in outcome.run_info["recurrence"]
    assert outcome.run_info["calls_agree"] is True


def test_stateful_layer_carries_state_across_two_invokes(cached, cases):
    case = cases["gru-seq1-state1-random-b3t5-stateful"].for_dtype("float32")
    outcome = check_case(keras3_adapter(), case, "cpu")
    assert outcome.status == "pass", outcome.message
    assert "VAR_HANDLE" in outcome.run_info["recurrence"]
    assert outcome.run_info["invokes"] == 2


@pytest.mark.parametrize("make_adapter", [keras3_adapter, tf_keras_adapter], ids=["litert-keras", "litert-tf-keras"])
def test_an_unrolled_stateful_layers_earlier_call_has_its_own_length_and_its_state_carries(cached, make_adapter):
    """Keras unrolls over a defined length only: the earlier call's signature (4 steps) comes from a
    model over the same layers at that length, and the case's call (3 steps) starts from its state."""
    from conformance.matrix.drawn import Draw, drawn_case
    from conformance.reference import expected_outputs

    draw = Draw(cell="lstm", unroll=True, stateful="carry", steps=3, batch=2, features=2, units=2, scheme="random")
    case = drawn_case(draw.normalized())
    case = dataclasses.replace(case, expected=tuple(expected_outputs(case))).for_dtype("float32")
    outcome = check_case(make_adapter(), case, "cpu")
    assert outcome.status == "pass", outcome.message
    assert outcome.run_info["invokes"] == 2


def test_second_case_of_a_structure_converts_nothing(monkeypatch, tmp_path, cases):
    monkeypatch.setenv("CONFORMANCE_CACHE_DIR", str(tmp_path))  # cold: nothing on disk
    adapter = keras3_adapter()
    first = check_case(adapter, cases["simple_rnn-seq0-state0-random-b3t5"].for_dtype("float32"), "cpu")
    second = check_case(adapter, cases["simple_rnn-seq0-state0-constant-b3t5"].for_dtype("float32"), "cpu")
    assert (first.status, second.status) == ("pass", "pass"), (first.message, second.message)
    assert first.run_info["compilations"] == 1
    assert second.run_info["compilations"] == 0
    assert "case weights placed" in second.run_info["conversion"]
    again = check_case(keras3_adapter(), cases["simple_rnn-seq0-state0-constant-b3t5"].for_dtype("float32"), "cpu")
    assert again.run_info["compilations"] == 0  # a new adapter (process): read from the disk cache
    assert again.run_info["conversion"] == "probe conversion read from disk cache"


@pytest.mark.parametrize("case_id", ["lstm-seq1-state1-random-b3t5-bidi_concat_zero_output_for_mask",
                                     "gru-seq0-state0-random-b3t5-bidi_concat_embedding_right",
                                     "lstm-seq1-state1-random-b3t5-sigmoid_activation"])
def test_placed_weights_give_the_bits_of_converting_the_case_itself(cached, cases, case_id):
    case = cases[case_id].for_dtype("float32")
    placed = keras3_adapter()
    per_case = keras3_adapter()
    per_case.export_cache = False  # a conversion with the case's own weights
    first, second = placed.run(case, "cpu"), per_case.run(case, "cpu")
    assert "placed" in placed.last_run_info()["conversion"] or "disk cache" in placed.last_run_info()["conversion"]
    assert per_case.last_run_info()["conversion"].startswith("converted per case")
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_placed_weights_into_the_fused_lstm_give_the_bits_of_converting_it(cached, cases):
    case = cases["lstm-seq1-state0-random-b3t5-bidi_sum"].for_dtype("float32")
    placed, per_case = tf_keras_adapter(), tf_keras_adapter()
    per_case.export_cache = False
    first, second = placed.run(case, "cpu"), per_case.run(case, "cpu")
    assert placed.last_run_info()["recurrence"] == ["UNIDIRECTIONAL_SEQUENCE_LSTM"]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


class FirstCallOnly(LiteRTTfKerasAdapter):
    CALLS = 1


def test_fused_lstm_keeps_its_state_between_invokes(cached, cases):
    """tensorflow/tensorflow#47813: UNIDIRECTIONAL_SEQUENCE_LSTM's state inputs are variable tensors
    that the kernel overwrites with the final state, so a non-stateful LSTM's second invoke() starts
    from the first one's final state. The first call is right; the second is off by ~5e-2."""
    case = cases["lstm-seq1-state0-per_gate-b2t5"].for_dtype("float32")
    outcome = check_case(tf_keras_adapter(), case, "cpu")
    assert outcome.status == "fail"
    assert outcome.run_info["recurrence"] == ["UNIDIRECTIONAL_SEQUENCE_LSTM"]
    assert outcome.run_info["calls_agree"] is False
    assert 1e-2 < outcome.verdict.max_abs < 0.2, outcome.message
    assert 1e-2 < outcome.run_info["first_call_max_abs_diff"] < 0.2
    first = check_case(tf_keras_adapter(FirstCallOnly), case, "cpu")
    assert first.status == "pass", first.message


def test_finding_the_fused_lstm_kernel_carries_its_state_into_the_next_invoke():
    """FINDINGS.md 21, checked with tf_keras, TensorFlow's converter and ai-edge-litert alone (no
    adapter, no fixture): a non-stateful tf_keras LSTM becomes UNIDIRECTIONAL_SEQUENCE_LSTM, whose
    state inputs are variable tensors the kernel overwrites; the second invoke() on the same input
    starts from the first one's final state. reset_all_variables() restores the first answer."""
    import tensorflow as tf
    import tf_keras
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(7)
    inputs = tf_keras.Input(shape=(5, 3), batch_size=2, name="x")
    layer = tf_keras.layers.LSTM(4, return_sequences=True)
    model = tf_keras.Model(inputs, layer(inputs))
    layer.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    want = model(x).numpy()
    data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    tf_keras.backend.clear_session()
    interpreter = Interpreter(model_content=data)
    runner = interpreter.get_signature_runner()
    first, second = (next(iter(runner(x=x).values())) for _ in range(2))
    interpreter.reset_all_variables()
    after_reset = next(iter(runner(x=x).values()))
    assert np.abs(first - want).max() < 1e-5 and np.abs(after_reset - want).max() < 1e-5
    assert np.abs(second - want).max() > 1e-2  # the same input, a different answer


class CountedConversions(LiteRTKerasAdapter):
    """The Keras 3 row, counting its conversions."""

    conversions = 0

    def convert(self, static, weights, case):
        self.conversions += 1
        return super().convert(static, weights, case)


def test_the_interpreter_refusing_a_converted_model_is_an_error_in_its_words(cached, cases):
    """The rule every built-in follows: the runtime refusing a model the converter produced is an
    error with the runtime's message. The float64 Keras 3 model converts with Select TF ops, which
    the ai-edge-litert interpreter refuses; the conversion is kept, not made again by run."""
    case = cases["simple_rnn-seq0-state1-per_gate-b2t5"].for_dtype("float64")
    adapter = keras3_adapter(CountedConversions)
    assert adapter.supports(case) is None
    outcome = check_case(adapter, case, "cpu")
    assert outcome.status == "error", outcome.message
    assert ("ai-edge-litert interpreter: Select TensorFlow op(s), included in the given model, "
            "is(are) not supported by this interpreter") in outcome.message, outcome.message
    assert "FlexMatMul" in outcome.message
    with pytest.raises(RuntimeError, match="not supported by this interpreter"):
        adapter.run(case, "cpu")
    assert adapter.conversions <= 1  # none where the disk cache held it


def test_the_converter_refusing_a_model_is_unsupported_in_its_words(cached, cases):
    case = cases["simple_rnn-seq0-state1-per_gate-b2t5"].for_dtype("float64")
    reason = tf_keras_adapter().supports(case)
    # The converter's first complaint depends on which float64 op its legalization meets first (it
    # differed between a process that exported a Keras 3 model before and one that did not).
    assert re.match(r"TFLiteConverter.from_keras_model: (type of return operand .* doesn't match function "
                    r"result type|'tf\.\w+' op is neither a custom op nor a flex op)", reason), reason


def first_two_gates_swapped(weights: dict, case) -> dict:
    """The layer's kernel with its first two gate blocks swapped (LSTM i/f, GRU z/r)."""
    kernel, *rest = weights["layer"]
    units = kernel.shape[1] // {"lstm": 4, "gru": 3}[case.cell]
    swapped = np.concatenate([kernel[:, units:2 * units], kernel[:, :units], kernel[:, 2 * units:]], axis=1)
    return {**weights, "layer": [swapped, *rest]}


class SwappedGates(LiteRTKerasAdapter):
    """A porting bug in the conversion step: LSTM gates i and f swapped in the kernel placed into the
    flatbuffer (the probe conversion and its location are untouched)."""

    def _weights(self, case, given=None):
        weights = super()._weights(case, given)
        return weights if given is not None else first_two_gates_swapped(weights, case)


class SwappedGatesTfKeras(LiteRTTfKerasAdapter):
    """The same bug on the tf_keras row: GRU gates z and r swapped in the kernel placed."""

    def _weights(self, case, given=None):
        weights = super()._weights(case, given)
        return weights if given is not None else first_two_gates_swapped(weights, case)


@pytest.mark.parametrize("make, faulty, case_id", [
    (keras3_adapter, SwappedGates, "lstm-seq1-state1-random-b3t5-relu"),
    (tf_keras_adapter, SwappedGatesTfKeras, "gru-seq1-state1-random-b3t5"),
])
def test_a_gate_swap_in_the_placed_weights_is_caught(cached, cases, make, faulty, case_id):
    case = cases[case_id].for_dtype("float32")
    assert check_case(make(), case, "cpu").status == "pass"
    outcome = check_case(make(faulty), case, "cpu")
    assert outcome.status == "fail"
    failing = {t.name for t in outcome.verdict.tensors if t.problem}
    assert {"output", "h"} <= failing, outcome.message


def test_repro_model_and_runner_give_the_adapters_bits(cached, cases, tmp_path):
    case = cases["gru-seq0-state1-random-b3t5-reset_before_mask_right"].for_dtype("float32")
    adapter = keras3_adapter()
    outputs = adapter.run(case, "cpu")
    data, feeds = adapter.repro_model(case, "cpu")
    assert list(feeds)[:2] == ["x", "mask"]
    (tmp_path / "model.tflite").write_bytes(data)
    namespace: dict = {}
    exec(REPRO_RUNNER, namespace)  # noqa: S102 - the snippet the repro command writes out
    again = namespace["run_model"](tmp_path / "model.tflite", feeds, "cpu")
    assert len(again) == len(case.output_names)
    assert all(np.array_equal(a, b) for a, b in zip(outputs, again))
