"""PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (``batch_first=True``) as a conformance adapter.

Each Keras layer (or Bidirectional pair) runs as one one-layer torch module;
stacks and encoder-decoders chain such modules as ``semantics.route`` says, and
the Keras list is ``semantics.output_list`` of what the modules returned. The
module is built once per structure (``ModuleKey``) and the case's weights are
copied in under ``torch.no_grad()``.

Conventions converted here (never values): weights via ``torch_mapping``;
``go_backwards`` as a time flip of the input (per row within its length under
a mask, which is how packed sequences run a backward pass); right-padded masks
as ``pack_padded_sequence`` lengths; torch's ``output, h_n`` as one
``semantics.LayerRun`` per Keras sub-layer.

float16 and bfloat16 modules are ``module.to(dtype)``, on the CPU as on the GPU;
numpy has no bfloat16, so those arrays cross into and out of torch through
float32, which holds every bfloat16 value (``to_tensor``, ``host_array``).

The adapter is ``supports``, the weight mapping and the framework call
(``prepare`` and ``host_array``, a ``ModuleCall``); the Keras structure on
modules (``keras_outputs``) and the recording for ``bare_forward``
(``RecordedCalls``) are shared with onnx-torch, which runs the same modules
exported to ONNX.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from conformance import semantics
from conformance.adapters.contract import Adapter, Reproducer, reduced_precision_allowed
from conformance.adapters.torch.mapping import RNN_NONLINEARITY, torch_initial_states, torch_module_params
from conformance.matrix.case import Case, is_reduced_precision
from conformance.matrix.spec import BidirectionalSpec, LayerSpec

TORCH_CLASS = {"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


@dataclass(frozen=True)
class ModuleKey:
    """What makes two torch modules different; weights and batch/time sizes do not."""

    cell: str
    input_size: int
    units: int
    bias: bool
    nonlinearity: str
    bidirectional: bool
    packed: bool
    dtype: str
    device: str

    @property
    def n_states(self) -> int:
        return 2 if self.cell == "lstm" else 1

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1


def module_key(layer: LayerSpec, input_size: int, bidirectional: bool, packed: bool,
               dtype: str, device: str) -> ModuleKey:
    nonlinearity = RNN_NONLINEARITY[layer.activation] if layer.cell == "simple_rnn" else ""
    return ModuleKey(layer.cell, input_size, layer.units, layer.use_bias, nonlinearity,
                     bidirectional, packed, dtype, device)


# --- what torch cannot express ---------------------------------------------------------------


def layer_reason(layer: LayerSpec) -> str | None:
    """Why torch's module for ``layer.cell`` cannot compute this layer, or None."""
    name = layer.keras_class
    if layer.unroll:
        return (f"{name}(unroll=True): torch.nn.{TORCH_CLASS[layer.cell]} has no unroll (its kernel "
                "always loops over time)")
    if layer.dropout or layer.recurrent_dropout:
        return (f"{name}(dropout={layer.dropout}, recurrent_dropout={layer.recurrent_dropout}): "
                f"torch.nn.{TORCH_CLASS[layer.cell]} has no dropout on a layer's inputs or recurrent "
                "state (its dropout= acts between stacked layers)")
    if layer.cell == "gru" and not layer.reset_after:
        return ("GRU(reset_after=False): torch.nn.GRU always applies the reset gate after the "
                "recurrent matmul (b_hn inside r*(W_hn h + b_hn)), i.e. Keras reset_after=True")
    if layer.cell == "simple_rnn":
        if layer.activation not in RNN_NONLINEARITY:
            return (f"SimpleRNN(activation={layer.activation!r}): torch.nn.RNN's nonlinearity is "
                    "'tanh' or 'relu' only")
        return None
    if layer.activation != "tanh":
        return f"{name}(activation={layer.activation!r}): torch.nn.{TORCH_CLASS[layer.cell]} fixes it to tanh"
    if layer.recurrent_activation != "sigmoid":
        return (f"{name}(recurrent_activation={layer.recurrent_activation!r}): "
                f"torch.nn.{TORCH_CLASS[layer.cell]} fixes it to sigmoid")
    return None


def mask_reason(case: Case) -> str | None:
    """Why packed sequences cannot reproduce Keras under ``case.mask``, or None."""
    lengths = semantics.right_padded_lengths(case.mask)
    if lengths is None:
        return "mask with holes: torch packed sequences express only right-padded masks"
    if np.any(lengths == 0):
        return "fully masked row: pack_padded_sequence rejects a length of 0"
    padded = np.any(lengths < case.timesteps)
    for layer in semantics.masked_output_layers(case.spec):
        # go_backwards puts Keras's padded steps first, where its repeated "last output" is still zeros.
        if padded and layer.return_sequences and not layer.zero_output_for_mask and not layer.go_backwards:
            return ("return_sequences with a right-padded mask and zero_output_for_mask=False: Keras "
                    "repeats the last output at padded steps, packed sequences give zeros")
    return None


def unsupported_reason(case: Case) -> str | None:
    reason = semantics.stateful_reason(case, f"torch.nn.{TORCH_CLASS[case.cell]}")
    if reason:
        return reason
    for layer in case.spec.sublayers().values():
        reason = layer_reason(layer)
        if reason:
            return reason
    return None if case.mask is None else mask_reason(case)


# --- Keras structures as torch modules (shared with onnx-torch) ----------------------------------

# One module call: (key, state dict, x, lengths or None, [h0] / [h0, c0] or None)
# -> torch's ``output`` (batch, T, dirs*units) and ``[h_n]`` / ``[h_n, c_n]`` (dirs, batch, units).
RunModule = Callable[[ModuleKey, dict, np.ndarray, np.ndarray | None, list[np.ndarray] | None],
                     tuple[np.ndarray, list[np.ndarray]]]


def layer_run(run_module: RunModule, layer: LayerSpec, weights: dict, x: np.ndarray,
              lengths: np.ndarray | None, states: list | None, dtype: str, device: str) -> semantics.LayerRun:
    """One Keras layer as a one-direction module: its sequence in Keras *processing* order."""
    key = module_key(layer, x.shape[2], False, lengths is not None, dtype, device)
    if layer.go_backwards:  # unmasked, the valid prefix is the whole row
        x = x[:, ::-1] if lengths is None else semantics.flip_valid_prefix(x, lengths)
    y, finals = run_module(key, torch_module_params([(layer, weights)]), x, lengths,
                           torch_initial_states(states, key.n_states, 1))
    if layer.go_backwards:
        y = semantics.processing_order(y, lengths)  # packed output is in the order the prefix was fed
    return semantics.LayerRun(y, [final[0] for final in finals])


def bidirectional_runs(run_module: RunModule, spec: BidirectionalSpec, case: Case,
                       lengths: np.ndarray | None, device: str) -> dict[str, semantics.LayerRun]:
    """Both copies as one ``bidirectional=True`` module call, split into the two runs.

    torch returns the directions side by side, the reverse one aligned with the
    input positions; its processing order is that sequence flipped in time.
    """
    key = module_key(spec.layer, case.features, True, lengths is not None, case.dtype, device)
    layers = spec.sublayers()
    params = torch_module_params([(layers[name], case.weights[name]) for name in ("forward", "backward")])
    y, finals = run_module(key, params, case.x, lengths, torch_initial_states(case.initial_state, key.n_states, 2))
    units = spec.layer.units
    return {"forward": semantics.LayerRun(y[..., :units], [final[0] for final in finals]),
            "backward": semantics.LayerRun(y[..., units:][:, ::-1], [final[1] for final in finals])}


def keras_outputs(case: Case, device: str, run_module: RunModule) -> list[np.ndarray]:
    """The Keras list for ``case``, each sub-layer one ``run_module`` call (a Bidirectional pair one)."""
    lengths = None if case.mask is None else semantics.right_padded_lengths(case.mask)
    if isinstance(case.spec, BidirectionalSpec):
        runs = bidirectional_runs(run_module, case.spec, case, lengths, device)
    else:
        def run(name: str, layer: LayerSpec, inputs: np.ndarray, states, masked: bool) -> semantics.LayerRun:
            return layer_run(run_module, layer, case.weights[name], inputs, lengths if masked else None,
                             states, case.dtype, device)

        runs = semantics.route(case.spec, run, case.x, case.initial_state, case.decoder_x)
    # The packed runs hold torch's values at real steps only: the last output is picked by length.
    return semantics.output_list(case.spec, runs, lengths)


class ModuleCall(Protocol):
    """The framework call of an adapter that runs Keras layers as one-layer torch modules."""

    def prepare(self, key: ModuleKey, params: dict[str, np.ndarray], x: np.ndarray, lengths: np.ndarray | None,
                states: list[np.ndarray] | None, fresh: bool) -> Callable[[], Sequence[Any]]:
        """The module with these weights in and these inputs: a closure of the call alone,
        returning ``(output, h_n[, c_n])``. ``fresh``: the call keeps a module of its own."""

    def host_array(self, raw: Any) -> np.ndarray:
        """One of the call's results as a numpy array, never cast."""


class RecordedCalls:
    """Runs a ``ModuleCall``; while ``replay`` records (``bare_forward``), keeps each prepared call."""

    def __init__(self, call: ModuleCall) -> None:
        self._call = call
        self._recording: list[Callable[[], Sequence[Any]]] | None = None

    def run(self, key: ModuleKey, params: dict[str, np.ndarray], x: np.ndarray, lengths: np.ndarray | None,
            states: list[np.ndarray] | None) -> tuple[np.ndarray, list[np.ndarray]]:
        recording = self._recording is not None
        forward = self._call.prepare(key, params, x, lengths, states, fresh=recording)
        if recording:
            self._recording.append(forward)
        outputs = [self._call.host_array(raw) for raw in forward()]
        return outputs[0], outputs[1:]

    def replay(self, run_once: Callable[[], object]) -> Callable[[], Any]:
        """The framework's forward pass alone, for ``conformance bench``.

        Runs ``run_once`` (the adapter's ``run``), recording each module call
        prepared (weights set, inputs already the framework's); the closure
        replays only those calls and returns the framework's raw results (one
        call's, or a list of them for stacks and encoder-decoders, each layer on
        the input the recorded run gave it).
        """
        self._recording = []
        try:
            run_once()
            calls = self._recording
        finally:
            self._recording = None
        return calls[0] if len(calls) == 1 else (lambda: [call() for call in calls])


# --- the adapter -----------------------------------------------------------------------------



class ModuleCallRow:
    """What every row built on the torch adapter's module calls shares (torch, torch-compile,
    onnx-torch, executorch, openvino-torch): ``keras_outputs`` calls ``_run_module`` for each module
    call, which ``self._calls`` (a ``RecordedCalls`` over the row's own ``prepare``) runs, and
    ``bare_forward`` replays those calls alone for ``conformance bench``."""

    _calls: RecordedCalls

    def bare_forward(self, case: Case, device: str) -> Callable[[], Any]:
        """``RecordedCalls.replay`` of ``run``: the row's raw results per module call."""
        return self._calls.replay(lambda: self.run(case, device))

    def _run_module(self, key: ModuleKey, params: dict[str, np.ndarray], x: np.ndarray,
                    lengths: np.ndarray | None, states: list[np.ndarray] | None) -> tuple[np.ndarray, list[np.ndarray]]:
        return self._calls.run(key, params, x, lengths, states)


class TorchAdapter(ModuleCallRow, Adapter):
    """``torch.nn`` recurrent modules; see the module docstring."""

    name = "torch"
    declared_devices = ("cpu", "cuda")
    requires = ("torch",)

    def __init__(self) -> None:
        self._modules: dict[ModuleKey, object] = {}
        self._info: dict = {}
        self._calls = RecordedCalls(self)

    def versions(self) -> dict[str, str]:
        import torch

        return {"torch": torch.__version__}

    def devices(self) -> list[str]:
        import torch

        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]

    def device_name(self, device: str) -> str:
        if device == "cuda":
            import torch

            return torch.cuda.get_device_name(0)
        return platform.processor() or platform.machine() or "cpu"

    def last_run_info(self) -> dict:
        return dict(self._info)

    def supports(self, case: Case) -> str | None:
        return unsupported_reason(case)

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        self._info = {}
        return keras_outputs(case, device, self._run_module)  # never cast: a wrong dtype is torch's

    def reproducer(self, case: Case, device: str) -> Reproducer:
        """No model file: the script builds the ``nn`` module as ``run`` does and calls it eagerly
        (``conformance.adapters.torch.repro``; single-call, unmasked cases)."""
        from conformance.adapters.torch.repro import repro_arrays, repro_runner

        return Reproducer(None, None, repro_arrays(case, keras_outputs), list(case.output_names),
                          repro_runner(case, keras_outputs, compiled=False), "torch",
                          "torch.nn module, eager, batch_first=True, the case's weights copied in")

    # --- the framework call (ModuleCall) ---------------------------------------------------

    def prepare(self, key: ModuleKey, params: dict[str, np.ndarray], x: np.ndarray, lengths: np.ndarray | None,
                states: list[np.ndarray] | None, fresh: bool) -> Callable[[], tuple]:
        import torch

        module = self._module(key, fresh)
        device = torch.device(key.device)
        with torch.no_grad():
            for name, parameter in module.named_parameters():
                parameter.copy_(to_tensor(params[name]))
        hx = None if states is None else [to_tensor(s).to(device) for s in states]
        lengths_t = None if lengths is None else torch.from_numpy(lengths)
        x_t = to_tensor(x).to(device)
        self._info = {"kernel": self._kernel(key), **precision_info(key.device)}
        if is_reduced_precision(key.dtype):  # what the module holds and computes in, read back
            self._info["module_dtype"] = str(next(module.parameters()).dtype).removeprefix("torch.")

        def forward() -> tuple:
            with torch.no_grad():
                outputs = forward_rnn(module, x_t, lengths_t, hx)
            if key.device == "cuda":
                torch.cuda.synchronize()
            return outputs

        return forward

    def host_array(self, raw) -> np.ndarray:
        return host_array(raw)

    def _module(self, key: ModuleKey, fresh: bool):
        module_key = replace(key, packed=False)  # one torch module serves packed and plain calls
        if fresh:
            return build_module(module_key)  # bare_forward: each recorded call keeps its own weights
        if module_key not in self._modules:
            self._modules[module_key] = build_module(module_key)
        return self._modules[module_key]

    @staticmethod
    def _kernel(key: ModuleKey) -> str:
        """The implementation torch dispatches to (aten/src/ATen/native/RNN.cpp).

        Observed with torch.profiler on torch 2.13 CPU: LSTM without packing
        runs ``aten::mkldnn_rnn_layer`` (oneDNN) in float32, and in bfloat16 /
        float16 where oneDNN has that type on this CPU (``use_mkldnn`` asks
        ``mkldnn_bf16_device_check`` / ``mkldnn_fp16_device_check``, exposed as
        ``torch.ops.mkldnn._is_mkldnn_bf16_supported`` / ``_fp16_``: on an AMD
        EPYC with avx512_bf16, bfloat16 yes, float16 no); float64, packed
        input, GRU and RNN run the native ATen cell loop.
        """
        import torch

        if key.device == "cuda":
            return "cudnn" if torch.backends.cudnn.enabled and torch.backends.cudnn.is_available() else "native"
        if (key.cell == "lstm" and not key.packed and mkldnn_has(key.dtype)
                and torch.backends.mkldnn.enabled and torch.backends.mkldnn.is_available()):
            return "mkldnn"
        return "native"


# --- torch objects (import torch only when called) ----------------------------------------------


def build_module(key: ModuleKey):
    """A one-layer ``nn.RNN/LSTM/GRU`` for ``key``, in eval mode, on its device and dtype."""
    import torch

    kwargs = {"batch_first": True, "bias": key.bias, "bidirectional": key.bidirectional}
    if key.cell == "simple_rnn":
        kwargs["nonlinearity"] = key.nonlinearity
    module = getattr(torch.nn, TORCH_CLASS[key.cell])(key.input_size, key.units, **kwargs)
    if key.device == "cuda":
        # The float32 verdict needs true float32 matmuls (SEMANTICS.md §6).
        torch.backends.cuda.matmul.allow_tf32 = reduced_precision_allowed()
        torch.backends.cudnn.allow_tf32 = reduced_precision_allowed()
    return module.to(device=key.device, dtype=getattr(torch, key.dtype)).eval()


def mkldnn_has(dtype: str) -> bool:
    """Whether oneDNN's RNN takes ``dtype`` on this CPU (RNN.cpp ``use_mkldnn``; float64 never)."""
    import torch

    if dtype == "float32":
        return True
    check = {"bfloat16": "_is_mkldnn_bf16_supported", "float16": "_is_mkldnn_fp16_supported"}.get(dtype)
    return check is not None and bool(getattr(torch.ops.mkldnn, check)())


def to_tensor(array: np.ndarray):
    """A numpy array as a CPU tensor of its dtype. ``torch.from_numpy`` takes no ``ml_dtypes``
    bfloat16: that goes through float32, which holds every bfloat16 value exactly."""
    import torch

    array = np.ascontiguousarray(array)
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(array)


def host_array(tensor) -> np.ndarray:
    """A tensor as a numpy array of its dtype, never cast: numpy has no bfloat16, so a
    bfloat16 tensor becomes an ``ml_dtypes.bfloat16`` array (through float32, exactly)."""
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.float().numpy().astype(ml_dtypes.bfloat16)
    return tensor.numpy()


def precision_info(device: str) -> dict[str, str]:
    """What ``build_module`` switches, for ``last_run_info``: on the GPU only (TF32 is a GPU format)."""
    return {"precision": f"allow_tf32={reduced_precision_allowed()}"} if device == "cuda" else {}


def forward_rnn(module, x, lengths, hx: list | None) -> tuple:
    """``module`` on ``x`` (packed by ``lengths`` when given): ``(output, h_n[, c_n])``.

    Packed output rows past a row's length are zeros (pad_packed_sequence).
    """
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    if hx is not None:
        hx = tuple(hx) if isinstance(module, torch.nn.LSTM) else hx[0]
    if lengths is None:
        output, final = module(x, hx)
    else:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        output, final = module(packed, hx)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=x.shape[1])
    finals = tuple(final) if isinstance(module, torch.nn.LSTM) else (final,)
    return (output, *finals)
