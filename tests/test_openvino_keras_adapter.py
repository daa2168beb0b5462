"""The ``openvino-keras`` adapter (conformance/adapters/openvino/keras_frontend.py) on real cases:
each cell's Keras 3 model converted by OpenVINO's TensorFlow frontend passes under the f32 hint, a
structure is converted once (a second case of it places its weights in the same IR), an injected
porting bug in the conversion step fails on the right tensor, a warm run reads the conversion from
disk, the reproducer is OpenVINO IR that reproduces standalone, and the finding on Keras's own
``export(format="openvino")`` holds with Keras and OpenVINO alone. A conversion costs seconds
here, so the tests share one adapter and a few cases."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from conformance.verdict.check import check_case
from tests.commandline import CONSOLE_SCRIPT
from tests.faulty_adapters import keras_lstm_gates_i_f_swapped

pytest.importorskip("tensorflow")
pytest.importorskip("openvino")
frontend = pytest.importorskip("conformance.adapters.openvino.keras_frontend")

PASSING = ("lstm-seq1-state1-random-b3t5", "gru-seq1-state1-random-b3t5", "simple_rnn-seq1-state1-random-b3t5")


def usable(adapter):
    """The adapter, or a skip where this process already holds keras on another backend."""
    reason = adapter.available()
    if reason:
        pytest.skip(reason)
    return adapter


@pytest.fixture(scope="module")
def adapter():
    return usable(frontend.OpenvinoKerasAdapter())


def test_static_attributes_plan_it_as_a_converting_cpu_row():
    adapter = frontend.OpenvinoKerasAdapter
    assert adapter.name == "openvino-keras"
    assert adapter.declared_devices == ("cpu",)
    assert adapter.compiles_per_structure is True
    assert adapter.requires == ("keras", "tensorflow", "openvino")


@pytest.mark.parametrize("case_id", PASSING)
def test_each_cell_passes_converted_under_the_f32_hint(case_id, cases, adapter, cached):
    outcome = check_case(adapter, cases[case_id].for_dtype("float32"), "cpu")
    assert outcome.status == "pass", outcome.message
    info = outcome.run_info
    assert info["inference_precision_hint"] == "f32"  # the float32 verdict's hint, read back
    assert "TensorIterator" in info["recurrent_kernel_precision"]  # Keras's While loop, run as a loop
    assert "convert_model" in info["converter"] and "placed in its constants" in info["conversion"]


def test_a_second_case_of_a_structure_converts_nothing(cases, adapter, cached):
    """The weights go into the probe conversion's constants: another initializer's case of the same
    structure reuses it, and still passes (its own weights, not the first case's)."""
    case = cases["gru-seq1-state1-random-b3t5"].for_dtype("float32")
    first = check_case(adapter, case, "cpu")
    other = next(c.for_dtype("float32") for c in cases.values() if c.id != case.id and "float32" in c.dtypes
                 and adapter.structure(c.for_dtype("float32")).key() == adapter.structure(case).key())
    again = check_case(adapter, other, "cpu")
    assert first.status == again.status == "pass", (first.message, again.message)
    assert again.run_info["compilations"] == 0


class SwappedGatesAdapter(frontend.OpenvinoKerasAdapter):
    """A porting bug in the conversion step: LSTM gates i and f swapped in the weights converted."""

    name = "openvino-keras-swapped-gates"

    def case_weights(self, case):
        return keras_lstm_gates_i_f_swapped(super().case_weights(case))


def test_a_swapped_gate_bug_in_the_conversion_step_fails_on_the_output(cases, cached):
    case = cases["lstm-seq1-state1-random-b3t5"].for_dtype("float32")
    outcome = check_case(usable(SwappedGatesAdapter()), case, "cpu")
    assert outcome.status == "fail", outcome.message
    blamed = [tensor.name for tensor in outcome.verdict.tensors if tensor.problem]
    assert blamed[0] == case.output_names[0], blamed
    assert outcome.run_info["inference_precision_hint"] == "f32"  # the bug ran in OpenVINO


def test_a_warm_run_reads_the_conversion_from_the_disk_cache(cases, tmp_path, monkeypatch):
    monkeypatch.setenv("CONFORMANCE_CACHE_DIR", str(tmp_path))
    case = cases["simple_rnn-seq1-state1-random-b3t5"].for_dtype("float32")
    first = check_case(usable(frontend.OpenvinoKerasAdapter()), case, "cpu")
    again = check_case(usable(frontend.OpenvinoKerasAdapter()), case, "cpu")  # a fresh process's adapter
    assert first.status == again.status == "pass", (first.message, again.message)
    assert (first.run_info["compilations"], again.run_info["compilations"]) == (1, 0)
    assert "read from disk cache" in again.run_info["conversion"]
    assert list((tmp_path / "openvino-keras").iterdir())


def test_stateful_layers_are_unsupported_with_the_reason(cases, adapter):
    case = next(c for c in cases.values() if c.earlier_x is not None)
    reason = adapter.supports(case.for_dtype(case.dtypes[0]))
    assert "(stateful=True)" in reason and "TensorFlow frontend" in reason, reason


def test_finding_kerass_own_openvino_export_refuses_a_recurrent_layer(adapter, tmp_path):
    """FINDINGS (Deployment rows, openvino-keras): checked with Keras and OpenVINO alone. Keras 3's
    ``export(format="openvino")`` (``ov.convert_model`` of the export's concrete function) leaves the
    TensorFlow frontend's internal TensorList op unconverted; the SavedModel route OpenVINO documents
    converts the same model, and it computes what Keras computes."""
    import keras
    import openvino

    x = keras.Input(shape=(None, 3), name="x")
    model = keras.Model(x, keras.layers.LSTM(4)(x))
    with pytest.raises(Exception, match="No conversion rule found for operations: TensorList"):
        model.export(str(tmp_path / "model.xml"), format="openvino", verbose=False)
    model.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    converted = openvino.Core().compile_model(openvino.convert_model(str(tmp_path / "saved")), "CPU",
                                              {"INFERENCE_PRECISION_HINT": "f32"})
    inputs = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    got = converted.create_infer_request().infer({"x": inputs})[converted.outputs[0]]
    np.testing.assert_allclose(got, np.asarray(model(inputs)), atol=1e-6)


def test_finding_a_converted_stateful_layer_keeps_no_state(adapter, tmp_path):
    """FINDINGS (Deployment rows, openvino-keras): checked with Keras and OpenVINO alone. The frontend
    freezes a stateful layer's state variable with the weights: the converted model has no
    ReadValue/Assign pair, and its second call answers as a fresh layer does, not as the Keras
    layer's second call (why ``supports`` reports stateful cases unsupported)."""
    import keras
    import openvino

    x = keras.Input(shape=(None, 3), batch_size=2, name="x")
    layer = keras.layers.SimpleRNN(4, stateful=True)
    model = keras.Model(x, layer(x))
    model.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    converted = openvino.convert_model(str(tmp_path / "saved"))
    assert not converted.get_variables() and not converted.get_sinks()
    compiled = openvino.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    first, second = np.random.default_rng(0).standard_normal((2, 2, 5, 3)).astype(np.float32)
    request.infer({"x": first})
    got = request.infer({"x": second})[compiled.outputs[0]]
    model(first)
    carried = np.asarray(model(second))  # the Keras layer's second call starts from the first's state
    layer.reset_states()
    fresh = np.asarray(model(second))
    np.testing.assert_allclose(got, fresh, atol=1e-6)
    assert np.abs(got - carried).max() > 1e-2


def test_conformance_run_runs_the_row_through_the_console_script(tmp_path):
    done = subprocess.run([str(CONSOLE_SCRIPT), "run", "--adapter", "openvino-keras", "-k", "gru and tutorial",
                           "--dtype", "float32", "--report-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert '"openvino-keras"' in (tmp_path / "results.json").read_text()
