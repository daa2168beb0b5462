"""The ``executorch`` adapter (conformance/adapters/torch/executorch.py) on real cases: LSTM and GRU
pass with XNNPACK proven in ``run_info``, a second case of a structure reuses its program, an
injected porting bug fails on the right tensor, a packed sequence is unsupported in torch.export's
words, and the standalone runner reproduces the Keras outputs. Lowering is slow (5-30 s per
structure and length on a CPU), so every test shares one adapter, a fresh disk cache and the
one-step cases."""

from __future__ import annotations

import numpy as np
import pytest

from conformance.verdict.check import check_case
from tests.faulty_adapters import torch_lstm_gates_i_f_swapped

pytest.importorskip("torch")
pytest.importorskip("executorch")
et = pytest.importorskip("conformance.adapters.torch.executorch")

LSTM = "lstm-seq1-state1-random-b1t1"
GRU = "gru-seq1-state1-random-b1t1"


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:  # a cache the machine may hold stays out
        patch.setenv("CONFORMANCE_CACHE_DIR", str(tmp_path_factory.mktemp("executorch-cache")))
        yield et.ExecutorchAdapter()


def test_static_attributes_plan_it_as_a_per_structure_cpu_adapter():
    adapter = et.ExecutorchAdapter
    assert adapter.name == "executorch"
    assert adapter.declared_devices == ("cpu",)
    assert adapter.compiles_per_structure is True


@pytest.mark.parametrize("case_id", [LSTM, GRU])
def test_lstm_and_gru_pass_on_xnnpack_in_float32(case_id, cases, adapter):
    outcome = check_case(adapter, cases[case_id].for_dtype("float32"), "cpu")
    assert outcome.status == "pass", outcome.message
    info = outcome.run_info
    assert info["delegate"] == "XnnpackBackend" and info["xnnpack_nodes"] > 0 and info["xnnpack_partitions"] > 0
    assert "FP32" in info["precision"]
    assert info["compilations"] == 2 and info["lowerings"] == 1  # its structure's lowering and load
    assert info["program"] == "lowered"
    assert all(output.dtype == np.float32 for output in adapter.run(cases[case_id].for_dtype("float32"), "cpu"))


def test_a_second_case_of_the_structure_lowers_nothing(cases, adapter):
    """Weights are program inputs: another weight scheme of the same structure reuses the program."""
    check_case(adapter, cases[LSTM].for_dtype("float32"), "cpu")
    other = check_case(adapter, cases["lstm-seq1-state1-per_gate-b1t1"].for_dtype("float32"), "cpu")
    assert other.status == "pass", other.message
    assert other.run_info["compilations"] == 0 and other.run_info["lowerings"] == 0


def test_a_new_adapter_reads_the_program_from_the_disk_cache(cases, adapter):
    check_case(adapter, cases[GRU].for_dtype("float32"), "cpu")  # lowered (or already there)
    fresh = check_case(et.ExecutorchAdapter(), cases[GRU].for_dtype("float32"), "cpu")
    assert fresh.status == "pass", fresh.message
    assert fresh.run_info["program"] == "read from disk cache"
    assert fresh.run_info["lowerings"] == 0 and fresh.run_info["compilations"] == 1  # the runtime load


class SwappedGatesAdapter(et.ExecutorchAdapter):
    """A porting bug in the weights fed to the program: LSTM gates i and f swapped."""

    name = "executorch-swapped-gates"

    def prepare(self, key, params, x, lengths, states, fresh):
        return super().prepare(key, torch_lstm_gates_i_f_swapped(key, params), x, lengths, states, fresh)


def test_a_swapped_gate_bug_in_the_program_inputs_fails_on_the_output(cases, adapter):
    check_case(adapter, cases[LSTM].for_dtype("float32"), "cpu")  # the program, in the shared cache
    case = cases[LSTM].for_dtype("float32")
    outcome = check_case(SwappedGatesAdapter(), case, "cpu")
    assert outcome.status == "fail", outcome.message
    blamed = [tensor.name for tensor in outcome.verdict.tensors if tensor.problem]
    assert blamed[0] == case.output_names[0], blamed
    assert "c" in blamed  # c = f*c0 + i*g with c0 = 0: i and f swapped changes the cell state itself
    assert outcome.run_info["delegate"] == "XnnpackBackend"  # the bug ran in the program


def test_a_masked_case_is_unsupported_in_torch_exports_words(cases, adapter):
    """A right-padded mask runs as a packed sequence, which torch.export cannot trace (export only: cheap)."""
    case = cases["simple_rnn-seq0-state0-random-b3t5-mask_right"].for_dtype("float32")
    reason = adapter.supports(case)
    assert reason.startswith("torch.export.export refuses the packed module (pack_padded_sequence"), reason
    assert "GuardOnDataDependentSymNode" in reason
    assert check_case(adapter, case, "cpu").status == "unsupported"


def test_the_repro_runner_reproduces_the_keras_outputs(cases, adapter, tmp_path):
    case = cases[LSTM].for_dtype("float32")
    pte, inputs = adapter.repro_model(case, "cpu")
    assert pte[4:8] == b"ET12" and [a.shape for a in inputs[:3]] == [(1, 1, 3), (1, 1, 4), (1, 1, 4)]
    namespace: dict = {}
    made = adapter.reproducer(case, "cpu")
    exec(compile(made.runner, "repro.py", "exec"), namespace)
    (tmp_path / "model.pte").write_bytes(made.model_bytes)
    outputs = namespace["run_model"](str(tmp_path / "model.pte"), made.feeds, "cpu")
    assert made.output_names == case.output_names and len(outputs) == len(case.expected)
    for got, want in zip(outputs, case.expected):
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-5)



def test_finding_a_gru_program_lowered_with_a_dynamic_batch_fails_at_another_batch():
    """FINDINGS.md 19, checked with torch and executorch alone: with ``Dim("batch")`` an LSTM program runs at
    any batch, a GRU program only at the batch it was exported with (torch's run_decompositions turns the
    input's batch static while an aten.full keeps the symbol), so the adapter lowers static shapes."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
        from executorch.runtime import Runtime

        torch.manual_seed(0)
        outcome = {}
        for module_class in (torch.nn.LSTM, torch.nn.GRU):
            module = module_class(3, 4, batch_first=True).eval()
            batch = torch.export.Dim("batch", min=1, max=64)
            program = torch.export.export(module, (torch.randn(3, 5, 3),), dynamic_shapes=({0: batch},))
            pte = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
            method = Runtime.get().load_program(pte).load_method("forward")
            x = torch.randn(1, 5, 3)
            try:
                outcome[module_class.__name__] = float((method.execute([x])[0] - module(x)[0]).abs().max())
            except RuntimeError as exc:
                outcome[module_class.__name__] = str(exc)
    assert isinstance(outcome["LSTM"], float) and outcome["LSTM"] < 1e-5
    assert outcome["GRU"] == "method->execute() failed with error 0x12", outcome
