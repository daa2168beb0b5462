"""The ``openvino-torch`` adapter (conformance/adapters/openvino/torch_frontend.py) on real cases:
each cell converted by OpenVINO's PyTorch frontend passes under the f32 hint in the fused kernel,
an injected porting bug in the conversion step fails on the right tensor, a mask the frontend
cannot convert is unsupported in its words, a warm run reads the converted model from disk, the
reproducer is OpenVINO IR that reproduces standalone, and the findings hold with torch and
OpenVINO alone. Converting costs seconds a call here, so the tests share one adapter."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from conformance.verdict.check import check_case
from tests.commandline import CONSOLE_SCRIPT
from tests.faulty_adapters import torch_lstm_gates_i_f_swapped

torch = pytest.importorskip("torch")
openvino = pytest.importorskip("openvino")
frontend = pytest.importorskip("conformance.adapters.openvino.torch_frontend")

PASSING = ("lstm-seq1-state1-random-b3t5", "gru-seq1-state1-random-b3t5", "simple_rnn-seq1-state1-random-b3t5")
MASKED_LSTM = "lstm-seq0-state1-random-b3t5-mask_right"  # Keras's h and c: each row's state at its last real step
MASKED_GRU = "gru-seq0-state1-random-b3t5-mask_right"


@pytest.fixture(scope="module")
def adapter():
    return frontend.OpenvinoTorchAdapter()


def test_static_attributes_plan_it_as_a_converting_cpu_row():
    adapter = frontend.OpenvinoTorchAdapter
    assert adapter.name == "openvino-torch"
    assert adapter.declared_devices == ("cpu",)
    assert adapter.compiles_per_structure is True
    assert adapter.requires == ("torch", "openvino")


@pytest.mark.parametrize("case_id", PASSING)
def test_each_cell_passes_converted_under_the_f32_hint_in_the_fused_kernel(case_id, cases, adapter):
    outcome = check_case(adapter, cases[case_id].for_dtype("float32"), "cpu")
    assert outcome.status == "pass", outcome.message
    info = outcome.run_info
    assert info["inference_precision_hint"] == "f32"  # the float32 verdict's hint, read back
    assert info["recurrent_kernel_precision"] == {"RNNSeq": "f32"}  # constant weights: the fused kernel
    assert info["compilations"] == 1 and "convert_model" in info["converter"]


class SwappedGatesAdapter(frontend.OpenvinoTorchAdapter):
    """A porting bug in the conversion step: LSTM gates i and f swapped in the weights converted."""

    name = "openvino-torch-swapped-gates"

    def prepare(self, key, params, x, lengths, states, fresh):
        return super().prepare(key, torch_lstm_gates_i_f_swapped(key, params), x, lengths, states, fresh)


def test_a_swapped_gate_bug_in_the_conversion_step_fails_on_the_output(cases, tmp_path, monkeypatch):
    monkeypatch.setenv("CONFORMANCE_CACHE_DIR", str(tmp_path))
    case = cases["lstm-seq1-state1-random-b3t5"].for_dtype("float32")
    outcome = check_case(SwappedGatesAdapter(), case, "cpu")
    assert outcome.status == "fail", outcome.message
    blamed = [tensor.name for tensor in outcome.verdict.tensors if tensor.problem]
    assert blamed[0] == case.output_names[0], blamed
    assert outcome.run_info["recurrent_kernel_precision"] == {"RNNSeq": "f32"}  # the bug ran in OpenVINO


def test_a_second_run_of_a_case_reads_the_converted_model_from_the_disk_cache(cases, tmp_path, monkeypatch):
    monkeypatch.setenv("CONFORMANCE_CACHE_DIR", str(tmp_path))
    case = cases["gru-seq1-state1-random-b3t5"].for_dtype("float32")
    first = check_case(frontend.OpenvinoTorchAdapter(), case, "cpu")
    again = check_case(frontend.OpenvinoTorchAdapter(), case, "cpu")  # a fresh process's adapter
    assert first.status == again.status == "pass", (first.message, again.message)
    assert (first.run_info["converted_from_cache"], again.run_info["converted_from_cache"]) == (0, 1)
    assert list((tmp_path / "openvino-torch").iterdir())


def test_a_masked_gru_is_unsupported_in_the_frontends_words(cases, adapter):
    """GRU and RNN have no packed form in the frontend (op/lstm.cpp translates aten::lstm.data only)."""
    reason = adapter.supports(cases[MASKED_GRU].for_dtype("float32"))
    assert reason.startswith("a right-padded mask runs as a packed sequence, which OpenVINO's PyTorch frontend"), reason
    assert "torch.nn.GRU" in reason and "prim::PackPadded" in reason


def test_a_masked_lstm_converts_and_fails_on_the_final_state(cases, adapter):
    """FINDINGS (Deployment rows, openvino-torch): the CPU plugin's RNNSeq ignores sequence_lens."""
    case = cases[MASKED_LSTM].for_dtype("float32")
    assert adapter.supports(case) is None
    outcome = check_case(adapter, case, "cpu")
    assert outcome.status in ("fail", "known"), outcome.message
    blamed = {tensor.name for tensor in outcome.verdict.tensors if tensor.problem}
    assert blamed == {"h", "c"}, blamed  # the output at each row's last real step is right


def test_float16_rows_are_unsupported_with_what_the_compiled_model_reads_back(cases, adapter):
    case = next(c for c in cases.values() if "float16" in c.dtypes).for_dtype("float16")
    reason = adapter.supports(case)
    compiled_in = reason is None or "INFERENCE_PRECISION_HINT=f16 reads back" in reason
    assert compiled_in, reason


def packed_lstm_call(lstm):
    """torch's masked LSTM call, as the torch adapter makes it: pack, run, pad."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class Packed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = lstm

        def forward(self, x, lengths):
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            y, (h, c) = self.lstm(packed)
            return pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])[0], h, c

    return Packed().eval()


# The frontend traces: torch 2.13 deprecates torch.jit, and its tracer warns of nn.LSTM's shape checks.
@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.", "ignore::torch.jit.TracerWarning")
def test_finding_the_converted_packed_lstm_returns_the_state_after_every_step():
    """FINDINGS (Deployment rows): checked with torch, OpenVINO and numpy alone. The frontend hands
    the lengths to LSTMSequence's sequence_lens, and the CPU plugin's fused kernel ignores them: the
    final state of a row of 3 real steps in 5 is the state after all 5 (torch's packed h is the state
    after 3)."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, batch_first=True).eval()
    x, lengths = torch.randn(2, 5, 3), torch.tensor([5, 3])
    call = packed_lstm_call(lstm)
    model = openvino.convert_model(call, example_input=(x, lengths))
    compiled = openvino.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got_h = compiled.create_infer_request().infer([x.numpy(), lengths.numpy()])[compiled.outputs[1]]
    with torch.no_grad():
        packed_h = call(x, lengths)[1].numpy()
        unpacked_h = lstm(x)[1][0].numpy()
    np.testing.assert_allclose(got_h[0, 0], packed_h[0, 0], atol=1e-6)  # the full-length row is right
    assert np.abs(got_h[0, 1] - packed_h[0, 1]).max() > 1e-2  # the short row is not torch's
    np.testing.assert_allclose(got_h[0, 1], unpacked_h[0, 1], atol=1e-6)  # it is the state after all 5 steps


def test_conformance_run_runs_the_row_through_the_console_script(tmp_path):
    done = subprocess.run([str(CONSOLE_SCRIPT), "run", "--adapter", "openvino-torch", "-k", "gru and tutorial",
                           "--dtype", "float32", "--report-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "results.json").is_file()
    assert '"openvino-torch"' in (tmp_path / "results.json").read_text()
