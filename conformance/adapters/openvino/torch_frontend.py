"""The torch adapter's ``nn.RNN/LSTM/GRU`` modules converted by OpenVINO's PyTorch frontend
(``openvino.convert_model(module, example_input=...)``) and run by its CPU plugin.

Same Keras -> torch plan as the torch adapter, by composition (like torch-compile): its
``supports`` (``unsupported_reason``), weight mapping, Keras structure on modules
(``keras_outputs``), ``build_module`` and ``forward_rnn``; only the framework call differs
(``prepare``): each module call is one ``ModuleCall`` (an ``nn.Module`` whose forward is the
torch adapter's ``forward_rnn``, the case's weights copied in) converted with the call's tensors
as ``example_input``, compiled by the CPU plugin and inferred. Right-padded masks are converted
as torch runs them, ``pack_padded_sequence`` around the module: for LSTM the frontend hands the
lengths to ``LSTMSequence``'s ``sequence_lens`` (``op/lstm.cpp``, ``transforms/remove_packing_ops.cpp``
``MovePackThroughLstm``), which the CPU plugin's fused kernel ignores (FINDINGS.md 24: known
differences); GRU and RNN have no packed form in the frontend, so ``supports`` reports its refusal
(``packed_refusal``).

Conversion per call: the frontend folds the module's parameters into the graph as constants
(and the CPU plugin takes its fused ``RNNSeq`` kernel only for constant weights), so a case's
weights need a conversion of their own; the converted model has dynamic batch and time
(``convert_model`` leaves every example dimension dynamic). A converted model is kept on disk
(``conformance.caches``, ``openvino-torch/``), as the frontend wrote it (IR xml and
weights), keyed by the module structure, the call's weights and input shapes, and the torch and
openvino versions: a warm run reads it and only compiles.

Precision: the shared OpenVINO settings (``conformance.adapters.openvino.runtime``): the f32 hint
for the float32 verdict, recorded with what the compiled model reads back. float16 / bfloat16
rows run only where the model compiled with the row's own hint computes in that dtype (read back,
as the ONNX openvino row does); float64 runs, and the CPU plugin computes it in f32 (FINDINGS).

Devices: ``cpu`` only (OpenVINO's "GPU" is an Intel GPU).
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import asdict, replace

import numpy as np

from conformance.adapters.contract import Adapter, Reproducer, reduced_precision_allowed
from conformance.adapters.openvino import runtime
from conformance.adapters.torch.adapter import (
    TORCH_CLASS,
    ModuleCallRow,
    ModuleKey,
    RecordedCalls,
    build_module,
    forward_rnn,
    keras_outputs,
    to_tensor,
    unsupported_reason,
)
from conformance.caches import cached_file, read_or_make
from conformance.matrix.case import Case
from conformance.matrix.spec import BidirectionalSpec

HOW = "openvino.convert_model(torch nn module, example_input=the call's tensors), PyTorch frontend; CPU plugin"
CACHE_KIND = "openvino-torch"
TRACE_DEPRECATED = r"`torch\.jit\.[\w.]+` is deprecated"


def call_module(key: ModuleKey):
    """An ``nn.Module`` whose forward is the torch adapter's module call for ``key``: ``x``, then
    ``lengths`` when packed, then ``h0`` (and ``c0``) when the call has initial states."""
    import torch

    class ModuleCall(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = build_module(replace(key, packed=False))

        def forward(self, x, *rest):
            lengths = rest[0] if key.packed else None
            states = list(rest[1:] if key.packed else rest) or None
            return forward_rnn(self.rnn, x, lengths, states)

    return ModuleCall().eval()


def example_inputs(x: np.ndarray, lengths: np.ndarray | None, states: list[np.ndarray] | None) -> list[np.ndarray]:
    """The call's inputs in ``ModuleCall.forward``'s order (what the converted model's inputs are)."""
    return [x, *([] if lengths is None else [np.asarray(lengths, dtype=np.int64)]), *(states or [])]


def convert(key: ModuleKey, params: dict[str, np.ndarray], inputs: list[np.ndarray]):
    """``openvino.convert_model`` of the module call with ``params`` in, traced on ``inputs``."""
    openvino = runtime.openvino_module()
    import torch

    module = call_module(key)
    with torch.no_grad():
        for name, parameter in module.rnn.named_parameters():
            parameter.copy_(to_tensor(params[name]))
    with warnings.catch_warnings():
        # The frontend traces with torch.jit (trace, trace_method...), which torch 2.13 deprecates with warnings;
        # the tracer warns of the shape checks in nn/modules/rnn.py that it bakes in, harmless here: each
        # converted model runs on the very shapes it was traced with.
        warnings.filterwarnings("ignore", message=TRACE_DEPRECATED)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        return openvino.convert_model(module, example_input=tuple(to_tensor(array) for array in inputs))


@functools.cache
def packed_refusal(cell: str, bidirectional: bool) -> str | None:
    """The frontend's own refusal to convert a ``cell`` module fed a packed sequence (how the torch
    adapter runs a right-padded mask), asked once per process on a tiny module; None if it converts.
    (OpenVINO 2026.4 converts LSTM's packed form, ``aten::lstm.data``, and no other: ``translate_gru``
    and ``translate_rnn`` in ``op/lstm.cpp`` take the unpacked form only, so ``prim::PackPadded`` stays
    unconverted.)"""
    key = ModuleKey(cell, 2, 2, True, "tanh" if cell == "simple_rnn" else "", bidirectional, True, "float32", "cpu")
    params = {name: p.detach().numpy() for name, p in call_module(key).rnn.named_parameters()}
    try:
        convert(key, params, [np.zeros((2, 3, 2), dtype=np.float32), np.array([3, 2])])
    except Exception as exc:  # noqa: BLE001 - the converter's refusal, whatever its type, is the reason
        return ("a right-padded mask runs as a packed sequence, which OpenVINO's PyTorch frontend does not "
                f"convert for torch.nn.{TORCH_CLASS[cell]}: {runtime.conversion_failure(exc)}")
    return None


def call_digest(key: ModuleKey, params: dict[str, np.ndarray], inputs: list[np.ndarray]) -> str:
    """What makes a converted model: the module structure, its weights, the traced inputs' shapes and types."""
    digest = hashlib.sha256(json.dumps(asdict(key), sort_keys=True).encode())
    for name in sorted(params):
        digest.update(name.encode() + np.ascontiguousarray(params[name]).tobytes())
    digest.update(repr([(a.shape, a.dtype.name) for a in inputs]).encode())
    return digest.hexdigest()


@functools.cache
def versions() -> dict[str, str]:
    openvino = runtime.openvino_module()
    import torch

    return {"openvino": openvino.__version__, "torch": torch.__version__}


class OpenvinoTorchAdapter(runtime.FrontendRow, ModuleCallRow, Adapter):
    """OpenVINO's PyTorch frontend on the torch adapter's modules; see the module docstring."""

    name = "openvino-torch"
    requires = ("torch", "openvino")
    compiles_per_structure = True  # a conversion and a CPU-plugin compilation per module call

    def __init__(self) -> None:
        self._info: dict = {}
        self._calls = RecordedCalls(self)
        self._precision_refusals: dict[tuple[str, str], str | None] = {}
        self.export_cache = True

    def versions(self) -> dict[str, str]:
        return versions()

    def supports(self, case: Case) -> str | None:
        reason = unsupported_reason(case)  # what torch's modules cannot express
        if reason is None and case.mask is not None:
            reason = packed_refusal(case.cell, isinstance(case.spec, BidirectionalSpec))
        if reason or case.dtype not in runtime.DTYPE_HINTS or reduced_precision_allowed():
            return reason
        return self.precision_refusal(case.cell, case.dtype)

    def precision_refusal(self, cell: str, dtype: str) -> str | None:
        """Why a ``dtype`` module of ``cell``, converted and compiled with that dtype's hint, would
        not compute in ``dtype`` (read back from the compiled model; once per cell and dtype)."""
        if (cell, dtype) not in self._precision_refusals:
            key = ModuleKey(cell, 2, 2, True, "tanh" if cell == "simple_rnn" else "", False, False, dtype, "cpu")
            module = call_module(key)
            params = {name: p.detach().float().numpy() for name, p in module.rnn.named_parameters()}
            model = convert(key, params, [np.zeros((1, 2, 2), dtype=np.float32).astype(_numpy_dtype(dtype))])
            compiled = runtime.core().compile_model(model, "CPU", runtime.compile_config(runtime.DTYPE_HINTS[dtype]))
            self._precision_refusals[(cell, dtype)] = runtime.precision_refusal(compiled, dtype, "cpu")
        return self._precision_refusals[(cell, dtype)]

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        self._info = {"converter": HOW, "compilations": 0, "converted_from_cache": 0,
                      "default_inference_precision_hint": runtime.default_precision_hint(device)}
        return keras_outputs(case, device, self._run_module)  # never cast: a wrong dtype is OpenVINO's



    # --- the framework call (torch.adapter.ModuleCall) -------------------------------------

    def prepare(self, key: ModuleKey, params: dict[str, np.ndarray], x: np.ndarray, lengths: np.ndarray | None,
                states: list[np.ndarray] | None, fresh: bool) -> Callable[[], list]:
        inputs = example_inputs(x, lengths, states)
        model = self.converted(key, params, inputs)
        hint = runtime.DTYPE_HINTS.get(key.dtype, "f32")
        compiled = runtime.core().compile_model(model, runtime.OPENVINO_DEVICES[key.device],
                                                runtime.compile_config(hint))
        self._info["compilations"] += 1
        self._info.update(runtime.compiled_info(compiled))
        feeds = [runtime.feed_array(array) for array in inputs]
        request = compiled.create_infer_request()

        def infer() -> list:
            results = request.infer(feeds)
            return [results[output] for output in compiled.outputs]

        return infer

    def host_array(self, raw: np.ndarray) -> np.ndarray:
        return raw

    def converted(self, key: ModuleKey, params: dict[str, np.ndarray], inputs: list[np.ndarray]):
        """The converted model of this call: from the disk cache, or converted now (and stored)."""
        path = None
        if self.export_cache:
            path = cached_file(CACHE_KIND, [versions(), call_digest(key, params, inputs)], ".ir")
        blob, from_cache = read_or_make(path, lambda: runtime.ir_bytes(convert(key, params, inputs)))
        self._info["converted_from_cache"] = self._info.get("converted_from_cache", 0) + int(from_cache)
        return runtime.read_ir(blob)

    # --- conformance repro ----------------------------------------------------------------------

    def reproducer(self, case: Case, device: str) -> Reproducer:
        """The converted model as OpenVINO IR (model.xml, model.bin), the call's inputs, and a runner
        needing only openvino and numpy (single-call, unmasked cases: ``torch.repro``)."""
        from conformance.adapters.torch.repro import keras_list_source, repro_calls

        ((key, params, x, states),) = repro_calls(case, keras_outputs)
        inputs = example_inputs(x, None, states)
        xml, weights = runtime.split_ir(runtime.ir_bytes(self.converted(key, params, inputs)))
        names = ["x", *(["h0", "c0"][:len(states)] if states else [])]
        runner = REPRO_RUNNER.format(hint=runtime.DTYPE_HINTS.get(key.dtype, "f32"), names=names,
                                     keras=keras_list_source(case, key, keras_outputs))
        return Reproducer("model.xml", xml, dict(zip(names, (runtime.feed_array(a) for a in inputs))),
                          list(case.output_names), runner, "openvino", HOW, side_files={"model.bin": weights})


def _numpy_dtype(dtype: str):
    import ml_dtypes

    return ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)


REPRO_RUNNER = '''
def run_model(model_path, feeds, device):
    """The converted model (OpenVINO IR, model.xml + model.bin) compiled as the suite compiles it:
    the CPU plugin, INFERENCE_PRECISION_HINT {hint}, one inference thread. Returns the Keras layer's
    outputs (the module's output, h_n[, c_n] rearranged by index gathers)."""
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(core.read_model(model_path), {{"cpu": "CPU"}}[device],
                                  {{"INFERENCE_PRECISION_HINT": "{hint}", "INFERENCE_NUM_THREADS": 1}})
    results = compiled.create_infer_request().infer([feeds[name] for name in {names!r}])
    output, h_n, c_n = [results[port] for port in compiled.outputs] + [None] * (3 - len(compiled.outputs))

    def take(source, index):
        return source.ravel()[np.asarray(index, dtype=np.int64)]

    return {keras}
'''
