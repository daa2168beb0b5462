"""The ``torch-compile`` adapter (conformance/adapters/torch/compiled.py) on real cases: each cell
passes with its capture proven in ``run_info``, a second case of a structure reuses its compiled
graph, an injected porting bug fails on the right tensor, masks are unsupported in torch's words,
and the standalone reproducer reproduces. Compiling is slow (seconds per structure on a CPU), so
every test shares one adapter and few structures."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conformance.verdict.check import check_case
from tests.faulty_adapters import torch_lstm_gates_i_f_swapped

torch = pytest.importorskip("torch")
compiled = pytest.importorskip("conformance.adapters.torch.compiled")

PASSING = ("lstm-seq1-state1-random-b3t5", "gru-seq1-state1-random-b3t5", "simple_rnn-seq1-state1-random-b3t5")
CAPTURED_OP = {"lstm": "torch.lstm", "gru": "torch.gru", "simple_rnn": "torch.rnn_tanh"}


@pytest.fixture(scope="module")
def adapter():
    return compiled.TorchCompileAdapter()


def test_static_attributes_plan_it_like_the_torch_adapter():
    adapter = compiled.TorchCompileAdapter
    assert adapter.name == "torch-compile"
    assert adapter.declared_devices == ("cpu", "cuda")
    assert adapter.compiles_per_structure is True


@pytest.mark.parametrize("case_id", PASSING)
def test_each_cell_passes_with_its_capture_proven(case_id, cases, adapter):
    outcome = check_case(adapter, cases[case_id].for_dtype("float32"), "cpu")
    assert outcome.status == "pass", outcome.message
    info = outcome.run_info
    assert info["capture"] == [CAPTURED_OP[case_id.split("-")[0]]]  # the recurrent op is in Dynamo's graph
    assert info["graph_runs"] == 1  # the one module call ran inside that compiled graph
    assert info["graph_breaks"] == 0
    assert "fullgraph=True" in info["compiler"] and "allow_rnn=True" in info["compiler"]
    assert info["compilations"] >= 1  # the first case of its structure in this process
    assert "fp_contract=off" in info["precision"]


def test_a_second_case_of_the_structure_compiles_nothing(cases, adapter):
    """LSTM float32 on the CPU lowers to oneDNN's mkldnn_rnn_layer: one graph for every batch and
    length. (GRU and RNN unroll the cell over time: a new length is a new graph, a new batch not.)"""
    first = check_case(adapter, cases["lstm-seq1-state1-random-b3t5"].for_dtype("float32"), "cpu")
    other = check_case(adapter, cases["lstm-seq1-state1-random-b4t48"].for_dtype("float32"), "cpu")
    assert first.status == other.status == "pass", (first.message, other.message)
    assert other.run_info["compilations"] == 0
    assert other.run_info["graph_runs"] == 1 and other.run_info["capture"] == ["torch.lstm"]


def test_an_unrolled_structure_reuses_its_graph_for_another_batch(cases, adapter):
    """GRU unrolls over time (one graph per length, the batch dynamic): the same structure and
    length with another batch, weights and inputs compiles nothing."""
    check_case(adapter, cases["gru-seq1-state1-random-b3t5"].for_dtype("float32"), "cpu")
    again = check_case(adapter, cases["gru-seq1-state1-per_gate-b2t5"].for_dtype("float32"), "cpu")
    assert again.status == "pass", again.message
    assert again.run_info["compilations"] == 0 and again.run_info["graph_runs"] == 1


class SwappedGatesAdapter(compiled.TorchCompileAdapter):
    """A porting bug in the weights handed to the compiled module: LSTM gates i and f swapped."""

    name = "torch-compile-swapped-gates"

    def prepare(self, key, params, x, lengths, states, fresh):
        return super().prepare(key, torch_lstm_gates_i_f_swapped(key, params), x, lengths, states, fresh)


def test_a_swapped_gate_bug_in_the_compiled_step_fails_on_the_output(cases):
    case = cases["lstm-seq1-state1-random-b3t5"].for_dtype("float32")
    outcome = check_case(SwappedGatesAdapter(), case, "cpu")
    assert outcome.status == "fail", outcome.message
    blamed = [tensor.name for tensor in outcome.verdict.tensors if tensor.problem]
    assert blamed[0] == case.output_names[0], blamed
    assert outcome.run_info["capture"] == ["torch.lstm"]  # the bug ran compiled, not eagerly


class ReversedTimeAdapter(compiled.TorchCompileAdapter):
    """A porting bug inside the compiled function itself: the time axis reversed before the module."""

    name = "torch-compile-reversed-time"

    def compile_structure(self, key):
        from conformance.adapters.torch.adapter import build_module

        module, graphs = build_module(key), []
        step = compiled.structure_forward(module, key.n_states, f"reversed_{key.cell}")

        def forward(x, h0, c0):
            return step(x.flip(1), h0, c0)

        function = torch.compile(forward, backend=compiled.CaptureBackend(graphs), **compiled.COMPILE_OPTIONS)
        return compiled.CompiledStructure(module, function, graphs)


def test_a_reversed_time_axis_in_the_compiled_function_fails_on_the_output(cases):
    case = cases["simple_rnn-seq1-state1-random-b3t5"].for_dtype("float32")
    outcome = check_case(ReversedTimeAdapter(), case, "cpu")
    assert outcome.status == "fail", outcome.message
    blamed = [tensor.name for tensor in outcome.verdict.tensors if tensor.problem]
    assert blamed[0] == case.output_names[0], blamed
    assert outcome.run_info["capture"] == ["torch.rnn_tanh"] and outcome.run_info["graph_runs"] == 1


def test_a_masked_case_is_unsupported_in_dynamos_words(cases, adapter):
    case = cases["gru-seq0-state0-random-b3t5-zero_output_for_mask"].for_dtype("float32")
    reason = adapter.supports(case)
    assert reason.startswith("a right-padded mask runs as a packed sequence"), reason
    assert "pack_padded_sequence" in reason and "should not be traced" in reason


def test_bfloat16_lstm_without_onednn_bfloat16_is_an_error_eager_torch_does_not_have(cases, adapter):
    """The lstm decomposition picks oneDNN's mkldnn_rnn_layer for bfloat16 without the CPU check
    eager torch makes (FINDINGS: torch-compile)."""
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has oneDNN bfloat16: eager and compiled both take oneDNN")
    case = cases["lstm-seq1-state1-random-b3t5-reduced_precision"].for_dtype("bfloat16")
    outcome = check_case(adapter, case, "cpu")
    assert outcome.status == "error"
    assert "could not create a primitive descriptor for the LSTM forward propagation primitive" in outcome.message
    from conformance.adapters.torch.adapter import TorchAdapter

    assert check_case(TorchAdapter(), case, "cpu").status == "pass"  # eager torch runs it


def test_finding_a_compiled_bfloat16_lstm_needs_onednn_bfloat16_where_eager_does_not():
    """FINDINGS.md 20, checked with torch alone (no adapter, no fixture): the same bfloat16
    nn.LSTM runs eagerly and raises once compiled with RNN capture on, on a CPU without oneDNN
    bfloat16; on one with it, both run and agree."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(4, 3, batch_first=True).to(torch.bfloat16).eval()
    x = torch.randn(3, 5, 4).to(torch.bfloat16)
    with torch.no_grad():
        eager = lstm(x)[0]
    assert eager.shape == (3, 5, 3)
    forward = torch.compile(lambda x: lstm(x)[0], backend="inductor", fullgraph=True)
    with torch._dynamo.config.patch(allow_rnn=True), torch.no_grad():
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
            assert (forward(x).float() - eager.float()).abs().max() < 0.05  # both run oneDNN bfloat16
            return
        with pytest.raises(RuntimeError, match="could not create a primitive descriptor for the LSTM forward"):
            forward(x)


def test_repro_script_runs_standalone_and_reproduces_the_keras_outputs(cases, adapter, tmp_path):
    case = cases["simple_rnn-seq1-state1-random-b3t5-go_backwards_initial_state"].for_dtype("float32")
    arrays = adapter.repro_arrays(case)
    assert {"call0.x", "call0.h0", "call0.weight_ih_l0", "call0.weight_hh_l0"} <= set(arrays)
    np.savez(tmp_path / "inputs.npz", **arrays)
    (tmp_path / "repro.py").write_text(adapter.repro_script(case, "cpu"))
    namespace: dict = {}
    exec(compile(adapter.repro_script(case, "cpu"), "repro.py", "exec"), namespace)  # the script's run_model
    compiled.inductor_entry_points()  # Inductor imported with its DeprecationWarning caught, as the adapter does
    with compiled.capture_config():
        outputs = namespace["run_model"](None, dict(np.load(tmp_path / "inputs.npz")), "cpu")
    assert len(outputs) == len(case.output_names)
    for got, want in zip(outputs, case.expected):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    result = subprocess.run([sys.executable, str(tmp_path / "repro.py")], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "compiled vs eager max abs difference" in result.stdout
