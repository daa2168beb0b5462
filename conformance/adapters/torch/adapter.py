"""PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (``batch_first=True``) as a conformance adapter.

Each Keras layer (or Bidirectional pair) runs as one one-layer torch module;
stacks and encoder-decoders chain such modules the way a torch user would.
The module is built once per structure (``ModuleKey``) and the case's weights
are copied in under ``torch.no_grad()``.

Conventions converted here (never values): weights via ``torch_mapping``;
``go_backwards`` as a time flip of the input (per row within its length under
a mask, which is how packed sequences run a backward pass); right-padded masks
as ``pack_padded_sequence`` lengths; the final state at each row's last real
step (``h_n`` of a packed run); the Keras list built from ``output, h_n``.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from conformance.adapters.contract import Adapter, missing_module_reason, tf32_allowed
from conformance.adapters.torch.mapping import (
    RNN_NONLINEARITY,
    flip_valid_prefix,
    right_padded_lengths,
    torch_initial_states,
    torch_module_params,
)
from conformance.matrix.case import Case
from conformance.matrix.spec import BidirectionalSpec, EncoderDecoderSpec, LayerSpec, StackedSpec

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


# --- what torch cannot express ---------------------------------------------------------------


def layer_reason(layer: LayerSpec) -> str | None:
    """Why torch's module for ``layer.cell`` cannot compute this layer, or None."""
    name = layer.keras_class
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


def _returned_sequences(case: Case) -> list[LayerSpec]:
    """The masked layers whose whole sequence lands in the output list, as Keras runs them."""
    spec = case.spec
    if isinstance(spec, BidirectionalSpec):
        return []  # Keras forces zero_output_for_mask there, which packed sequences match
    if isinstance(spec, StackedSpec):
        return [spec.layers[-1]] if spec.layers[-1].return_sequences else []
    if isinstance(spec, EncoderDecoderSpec):
        return []  # the mask belongs to the encoder, whose sequence is dropped
    return [spec] if spec.return_sequences else []


def mask_reason(case: Case) -> str | None:
    """Why packed sequences cannot reproduce Keras under ``case.mask``, or None."""
    lengths = right_padded_lengths(case.mask)
    if lengths is None:
        return "mask with holes: torch packed sequences express only right-padded masks"
    if np.any(lengths == 0):
        return "fully masked row: pack_padded_sequence rejects a length of 0"
    padded = np.any(lengths < case.timesteps)
    for layer in _returned_sequences(case):
        # go_backwards puts Keras's padded steps first, where its repeated "last output" is still zeros.
        if padded and not layer.zero_output_for_mask and not layer.go_backwards:
            return ("return_sequences with a right-padded mask and zero_output_for_mask=False: Keras "
                    "repeats the last output at padded steps, packed sequences give zeros")
    return None


def unsupported_reason(case: Case) -> str | None:
    for layer in case.spec.sublayers().values():
        reason = layer_reason(layer)
        if reason:
            return reason
    return None if case.mask is None else mask_reason(case)


# --- the Keras list from torch's outputs ------------------------------------------------------


def last_output(layer: LayerSpec, sequence: np.ndarray, final_h: np.ndarray, masked: bool) -> np.ndarray:
    """Keras's last output: the last processed step, or under a mask the last *real* one.

    Keras repeats the last real output at padded steps unless zero_output_for_mask
    zeroes them; the packed run's ``h_n`` is the output at each row's last real step,
    its padded ``output`` rows are zeros.
    """
    if masked and not layer.zero_output_for_mask:
        return final_h
    return sequence[:, -1]


def layer_list(layer: LayerSpec, sequence: np.ndarray, states: list[np.ndarray], masked: bool) -> list[np.ndarray]:
    output = sequence if layer.return_sequences else last_output(layer, sequence, states[0], masked)
    return [output, *states] if layer.return_state else [output]


MERGES = {
    "concat": lambda a, b: np.concatenate([a, b], axis=-1),
    "sum": lambda a, b: a + b,
    "ave": lambda a, b: (a + b) / 2,
    "mul": lambda a, b: a * b,
}


class TorchAdapter(Adapter):
    """``torch.nn`` recurrent modules; see the module docstring."""

    name = "torch"

    def __init__(self) -> None:
        self._modules: dict[ModuleKey, object] = {}
        self._info: dict = {}
        self._recording: list[Callable[[], tuple]] | None = None

    # --- contract ------------------------------------------------------------------------

    def available(self) -> str | None:
        return missing_module_reason("torch")

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
        lengths = None if case.mask is None else right_padded_lengths(case.mask)
        spec = case.spec
        if isinstance(spec, BidirectionalSpec):
            outputs = self._bidirectional(spec, case, lengths, device)
        elif isinstance(spec, StackedSpec):
            outputs = self._stacked(spec, case, lengths, device)
        elif isinstance(spec, EncoderDecoderSpec):
            outputs = self._encoder_decoder(spec, case, lengths, device)
        else:
            sequence, states = self._layer(spec, case.weights["layer"], case.x, lengths,
                                           case.initial_state, case.dtype, device)
            outputs = layer_list(spec, sequence, states, lengths is not None)
        return outputs  # never cast: a dtype other than case.dtype is torch's, and is reported

    def bare_forward(self, case: Case, device: str) -> Callable[[], Any]:
        """The framework's forward pass alone, for ``conformance bench``.

        Runs ``run`` once, recording each module call prepared (weights set, inputs
        already tensors); the closure replays only those calls and returns torch's
        raw results (one call's ``(output, h_n[, c_n])``, or a list of them for
        stacks and encoder-decoders, each layer on the input the recorded run gave it).
        """
        self._recording = []
        try:
            self.run(case, device)
            calls = self._recording
        finally:
            self._recording = None
        return calls[0] if len(calls) == 1 else (lambda: [call() for call in calls])

    # --- Keras structures as torch modules ------------------------------------------------

    def _layer(self, layer: LayerSpec, weights: dict, x: np.ndarray, lengths: np.ndarray | None,
               states: tuple | None, dtype: str, device: str) -> tuple[np.ndarray, list[np.ndarray]]:
        """One Keras layer: its sequence in Keras *processing* order, and its final states."""
        key = self._key(layer, x.shape[2], False, lengths is not None, dtype, device)
        full = np.full(x.shape[0], x.shape[1]) if lengths is None else lengths
        if layer.go_backwards:
            x = flip_valid_prefix(x, full)
        y, finals = self._run_module(key, torch_module_params([(layer, weights)]), x, lengths,
                                     torch_initial_states(states, key.n_states, 1))
        if layer.go_backwards:
            # Packed output is in the order the reversed prefix was fed; Keras's processing
            # order reverses the whole padded row, so its padded steps come first.
            y = flip_valid_prefix(y, full)[:, ::-1]
        return y, [f[0] for f in finals]

    def _bidirectional(self, spec: BidirectionalSpec, case: Case, lengths, device) -> list[np.ndarray]:
        """torch ``bidirectional=True``; the Keras merge is done here on torch's split output.

        Merging is list assembly: torch returns both directions side by side in
        one tensor (reverse direction aligned with the input positions), Keras
        merges them with ``merge_mode``.
        """
        # Keras's Bidirectional sets zero_output_for_mask = return_sequences on both copies.
        layer = replace(spec.layer, zero_output_for_mask=spec.layer.return_sequences)
        key = self._key(layer, case.features, True, lengths is not None, case.dtype, device)
        layers = spec.sublayers()
        params = torch_module_params([(layers[name], case.weights[name]) for name in ("forward", "backward")])
        y, finals = self._run_module(key, params, case.x, lengths,
                                     torch_initial_states(case.initial_state, key.n_states, 2))
        units, masked = layer.units, lengths is not None
        sequences = (y[..., :units], y[..., units:][:, ::-1])  # processing order, as Keras runs them
        if layer.return_sequences:
            outputs = [sequences[0], sequences[1][:, ::-1]]
        else:
            outputs = [last_output(layer, sequences[d], finals[0][d], masked) for d in (0, 1)]
        merged = outputs if spec.merge_mode is None else [MERGES[spec.merge_mode](*outputs)]
        if not layer.return_state:
            return merged
        return merged + [f[0] for f in finals] + [f[1] for f in finals]

    def _stacked(self, spec: StackedSpec, case: Case, lengths, device) -> list[np.ndarray]:
        """Modules chained on the padded sequence; the mask (lengths) reaches every layer."""
        hidden, states = case.x, case.initial_state
        for name, layer in spec.sublayers().items():
            hidden, final = self._layer(layer, case.weights[name], hidden, lengths, states, case.dtype, device)
            states = None
        return layer_list(spec.layers[-1], hidden, final, lengths is not None)

    def _encoder_decoder(self, spec: EncoderDecoderSpec, case: Case, lengths, device) -> list[np.ndarray]:
        """The encoder's ``h_n`` (and ``c_n``) become the decoder's ``h0`` (and ``c0``)."""
        _, encoder_states = self._layer(spec.encoder, case.weights["encoder"], case.x, lengths,
                                        case.initial_state, case.dtype, device)
        sequence, states = self._layer(spec.decoder, case.weights["decoder"], case.decoder_x, None,
                                       tuple(encoder_states), case.dtype, device)
        return layer_list(spec.decoder, sequence, states, False)

    @staticmethod
    def _key(layer: LayerSpec, input_size: int, bidirectional: bool, packed: bool,
             dtype: str, device: str) -> ModuleKey:
        nonlinearity = RNN_NONLINEARITY[layer.activation] if layer.cell == "simple_rnn" else ""
        return ModuleKey(layer.cell, input_size, layer.units, layer.use_bias, nonlinearity,
                         bidirectional, packed, dtype, device)

    # --- the framework call ----------------------------------------------------------------

    def _run_module(self, key: ModuleKey, params: dict[str, np.ndarray], x: np.ndarray,
                    lengths: np.ndarray | None,
                    states: list[np.ndarray] | None) -> tuple[np.ndarray, list[np.ndarray]]:
        """torch's ``output`` (batch, T, dirs*units) and ``[h_n]`` / ``[h_n, c_n]`` (dirs, batch, units)."""
        forward = self._forward(key, params, x, lengths, states)
        if self._recording is not None:
            self._recording.append(forward)
        outputs = [self._host_array(tensor) for tensor in forward()]
        return outputs[0], outputs[1:]

    def _forward(self, key: ModuleKey, params: dict[str, np.ndarray], x: np.ndarray,
                 lengths: np.ndarray | None, states: list[np.ndarray] | None) -> Callable[[], tuple]:
        """The module with these weights in and the inputs as tensors: a closure of the forward pass alone."""
        import torch

        module = self._module(key)
        device = torch.device(key.device)
        with torch.no_grad():
            for name, parameter in module.named_parameters():
                parameter.copy_(torch.from_numpy(params[name]))
        hx = None if states is None else [torch.from_numpy(s).to(device) for s in states]
        lengths_t = None if lengths is None else torch.from_numpy(lengths)
        x_t = torch.from_numpy(np.ascontiguousarray(x)).to(device)
        self._info = {"kernel": self._kernel(key)}

        def forward() -> tuple:
            with torch.no_grad():
                outputs = forward_rnn(module, x_t, lengths_t, hx)
            if key.device == "cuda":
                torch.cuda.synchronize()
            return outputs

        return forward

    @staticmethod
    def _host_array(tensor) -> np.ndarray:
        return tensor.cpu().numpy()

    def _module(self, key: ModuleKey):
        module_key = replace(key, packed=False)  # one torch module serves packed and plain calls
        if self._recording is not None:
            return build_module(module_key)  # bare_forward: each recorded call keeps its own weights
        if module_key not in self._modules:
            self._modules[module_key] = build_module(module_key)
        return self._modules[module_key]

    @staticmethod
    def _kernel(key: ModuleKey) -> str:
        """The implementation torch dispatches to (aten/src/ATen/native/RNN.cpp).

        Observed with torch.profiler on torch 2.13 CPU: float32 LSTM without
        packing runs ``aten::mkldnn_rnn_layer`` (oneDNN); float64, packed input,
        GRU and RNN run the native ATen cell loop.
        """
        import torch

        if key.device == "cuda":
            return "cudnn" if torch.backends.cudnn.enabled and torch.backends.cudnn.is_available() else "native"
        if (key.cell == "lstm" and key.dtype == "float32" and not key.packed
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
        torch.backends.cuda.matmul.allow_tf32 = tf32_allowed()
        torch.backends.cudnn.allow_tf32 = tf32_allowed()
    return module.to(device=key.device, dtype=getattr(torch, key.dtype)).eval()


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
