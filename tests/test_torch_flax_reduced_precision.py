"""The torch and flax adapters' float16 and bfloat16 rows: computed in that dtype, returned in it.

torch: ``module.to(torch.float16 / torch.bfloat16)`` on the CPU; bfloat16 arrays cross into and
out of torch through float32 (``to_tensor``, ``host_array``), which is exact. flax: cells with
``dtype=param_dtype=`` the row's dtype. Each checks the verdict passes, the outputs' dtype is the
row's, and that the framework really computed in the reduced dtype (not float32 rounded at the end).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from conformance.matrix.case import numpy_dtype
from conformance.matrix.cases import build_cases
from conformance.reference import expected_outputs
from conformance.verdict.check import check_case

REDUCED = ("float16", "bfloat16")
PROBE_CASES = ("lstm-seq1-state1-random-b3t5-reduced_precision", "gru-seq0-state0-random-b4t48-reduced_precision",
               "simple_rnn-seq1-state0-saturating-b3t5-reduced_precision",
               "simple_rnn-seq1-state1-random-b4t48-reduced_precision")
LONG_CASES = ("lstm-seq1-state1-random-b4t48-reduced_precision",
              "simple_rnn-seq1-state1-random-b4t48-reduced_precision")


def _case(case_id: str, dtype: str):
    base = next(c for c in build_cases() if c.id == case_id).for_dtype("float32")
    return dataclasses.replace(base, expected=tuple(expected_outputs(base))).for_dtype(dtype)


def _torch():
    pytest.importorskip("torch")
    from conformance.adapters.torch import adapter

    return adapter


def _flax():
    pytest.importorskip("flax.nnx")
    from conformance.adapters.flax.adapter import FlaxAdapter

    return FlaxAdapter


# --- torch ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", REDUCED)
@pytest.mark.parametrize("case_id", PROBE_CASES)
def test_torch_passes_in_the_rows_dtype(case_id, dtype):
    adapter = _torch().TorchAdapter()
    case = _case(case_id, dtype)
    outcome = check_case(adapter, case, "cpu")
    assert outcome.status == "pass", outcome.message
    assert [t.actual_dtype for t in outcome.verdict.tensors] == [dtype] * len(case.output_names)
    assert outcome.run_info["module_dtype"] == dtype
    import torch

    (module,) = adapter._modules.values()
    assert {p.dtype for p in module.parameters()} == {getattr(torch, dtype)}


def test_bfloat16_crosses_into_and_out_of_torch_exactly():
    import ml_dtypes

    torch_adapter = _torch()
    import torch

    every = np.arange(2**16, dtype=np.uint16).view(ml_dtypes.bfloat16)
    every = every[np.isfinite(every.astype(np.float32))]
    tensor = torch_adapter.to_tensor(every)
    assert tensor.dtype == torch.bfloat16
    back = torch_adapter.host_array(tensor)
    assert back.dtype == np.dtype(ml_dtypes.bfloat16)
    assert np.array_equal(back.view(np.uint16), every.view(np.uint16))
    half = np.arange(8, dtype=np.float16)
    assert torch_adapter.to_tensor(half).dtype == torch.float16 and torch_adapter.host_array(
        torch_adapter.to_tensor(half)).dtype == np.float16


@pytest.mark.parametrize("dtype", REDUCED)
@pytest.mark.parametrize("case_id", LONG_CASES)
def test_torch_computes_in_the_reduced_dtype_not_in_float32(case_id, dtype):
    """float32's answer rounded to the row's dtype is not what the reduced module gives."""
    adapter = _torch().TorchAdapter()
    reduced = adapter.run(_case(case_id, dtype), "cpu")
    wide = adapter.run(_case(case_id, "float32"), "cpu")
    assert any(not np.array_equal(r, w.astype(numpy_dtype(dtype))) for r, w in zip(reduced, wide))


def test_a_bfloat16_answer_in_float32_fails_the_dtype_check(monkeypatch):
    torch_adapter = _torch()
    monkeypatch.setattr(torch_adapter.TorchAdapter, "host_array", lambda self, tensor: tensor.float().numpy())
    outcome = check_case(torch_adapter.TorchAdapter(), _case(PROBE_CASES[0], "bfloat16"), "cpu")
    assert outcome.status == "fail"
    assert outcome.verdict.tensors[0].problem == "output: dtype float32, expected bfloat16"


@pytest.mark.parametrize("dtype", ("float32", "float64") + REDUCED)
@pytest.mark.parametrize("cell", ("lstm", "gru"))
def test_torch_kernel_is_the_one_the_profiler_sees(cell, dtype):
    torch_adapter = _torch()
    import torch
    from torch.profiler import profile

    case = _case(f"{cell}-seq1-state1-random-b3t5-reduced_precision", "float32")
    layer = case.spec.sublayers()["layer"]
    key = torch_adapter.module_key(layer, case.features, False, False, dtype, "cpu")
    module = torch_adapter.build_module(key)
    x = torch.zeros(2, 5, case.features, dtype=getattr(torch, dtype))
    with torch.no_grad(), profile() as prof:
        module(x)
    seen = "mkldnn" if any(e.name == "aten::mkldnn_rnn_layer" for e in prof.events()) else "native"
    assert torch_adapter.TorchAdapter._kernel(key) == seen


# --- flax ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", REDUCED)
@pytest.mark.parametrize("case_id", PROBE_CASES)
def test_flax_passes_in_the_rows_dtype_or_says_why_not(case_id, dtype):
    adapter = _flax()()
    case = _case(case_id, dtype)
    outcome = check_case(adapter, case, "cpu")
    if case.cell == "gru":  # these rows' candidate recurrent bias is non-zero, in float32 as well
        assert outcome.status == "unsupported" and "candidate" in outcome.message
        assert adapter.supports(_case(case_id, "float32")) == outcome.message
        return
    assert outcome.status == "pass", outcome.message
    assert [t.actual_dtype for t in outcome.verdict.tensors] == [dtype] * len(case.output_names)
    assert outcome.run_info["param_dtype"] == dtype and outcome.run_info["dtype"] == dtype


@pytest.mark.parametrize("dtype", REDUCED)
@pytest.mark.parametrize("case_id", LONG_CASES)
def test_flax_computes_in_the_reduced_dtype_not_in_float32(case_id, dtype):
    from conformance.adapters import xla

    adapter = _flax()()
    case = _case(case_id, dtype)
    reduced = adapter.run(case, "cpu")
    wide = adapter.run(_case(case_id, "float32"), "cpu")
    assert any(not np.array_equal(r, w.astype(numpy_dtype(dtype))) for r, w in zip(reduced, wide))
    # The jitted forward's matmuls are in the row's dtype, none in float32.
    compiled = adapter._compiled_for(case, "cpu")
    optional = [list(case.initial_state or ()), [] if case.decoder_x is None else [case.decoder_x]]
    packed, layout = xla.pack([adapter._params(compiled, case), [case.x], *optional], case.dtype)
    assert packed.dtype == numpy_dtype(dtype)
    text = compiled.forward.lower(packed, compiled.rest, None, layout, case.initial_state is not None).as_text()
    dots = re.findall(r"stablehlo\.dot_general[^\n]*->\s*tensor<[^>]*x(\w+)>", text)
    assert dots and set(dots) == {"f16" if dtype == "float16" else "bf16"}
