"""The torch adapter's modules exported with ``torch.onnx.export`` and run in ONNX Runtime.

Same Keras -> torch plan as the torch adapter, by composition: its
``supports`` (``unsupported_reason``), weight mapping and Keras structure on
modules (``keras_outputs``, ``RecordedCalls``); only the framework call
differs (``prepare`` and ``host_array``): each torch module structure is
exported once and run by ``onnxruntime.InferenceSession``.

Exporter: torch 2.13's default, the dynamo-based one (``dynamo=True``, needs
onnxscript), with ``optimize=False`` because its optimizer folds the gate
reorders of the parameters into anonymous constants (``val_33``...), which
leaves nothing to feed weights into. Observed on torch 2.13: it cannot export
``pack_padded_sequence`` (torch.export raises GuardOnDataDependentSymNode on
the packed ``batch_sizes``); such modules, and anything else the dynamo path
raises on, fall back to the TorchScript exporter (``dynamo=False``). The
exporter used is reported in ``last_run_info``, and ``compilations``: how many
exports the run made (0 when every module's session was reused). Exports are
kept on disk too (``conformance.caches``), keyed by module structure,
export length and the torch/onnx/onnxscript versions: a second run reads them
(``export: read from disk cache``) instead of paying 2-30 s per structure.

Weights: the exported parameters stay initializers named as in the torch
state dict (``rnn.weight_ih_l0``...) and are also declared as graph inputs,
which ONNX Runtime lets a feed override; one session per structure then serves
every case. A runtime that refuses a model raises with its message (an error,
not "unsupported"). Sessions come from ``onnx_runtime.make_session``, like the
other ONNX adapters': a ``cuda`` row runs on the CUDA provider or is refused,
never quietly moved to the CPU.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, replace

import numpy as np

from conformance.adapters.contract import Adapter
from conformance.adapters.onnx import runtime as onnx_runtime
from conformance.adapters.torch.adapter import (
    ModuleCallRow,
    ModuleKey,
    RecordedCalls,
    build_module,
    forward_rnn,
    keras_outputs,
    unsupported_reason,
)
from conformance.caches import cached_file, read_or_make
from conformance.matrix.case import Case, is_reduced_precision

INPUT_NAMES = ["x", "lengths", "h0", "c0"]
CACHE_FORMAT = 1
INFO_KEY = "conformance.export_info"  # the export's facts, kept in the cached model's metadata
RECURRENT_OPS = ("RNN", "LSTM", "GRU")
PARAMETER_PREFIX = "rnn."  # the attribute holding the torch module in the export wrapper


class OnnxTorchAdapter(ModuleCallRow, Adapter):
    """torch.onnx.export -> onnxruntime; see the module docstring."""

    name = "onnx-torch"
    declared_devices = ("cpu", "cuda")
    compiles_per_structure = True  # a dynamo export per structure (2-30 s each)
    requires = ("torch", "onnx", "onnxruntime", "onnxscript")
    export_cache = True  # False: export and open a session on every call (see _session)

    def __init__(self) -> None:
        self._sessions: dict[tuple[ModuleKey, int | None], tuple[object, dict, set[str]]] = {}
        self._info: dict = {}
        self._exports = 0  # torch.onnx.export calls in the current run
        self._calls = RecordedCalls(self)


    def versions(self) -> dict[str, str]:
        import onnx
        import onnxruntime
        import onnxscript
        import torch

        return {"torch": torch.__version__, "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__, "onnxscript": onnxscript.__version__}

    def devices(self) -> list[str]:
        return onnx_runtime.devices()

    def device_name(self, device: str) -> str:
        return onnx_runtime.device_name(device)

    def last_run_info(self) -> dict:
        return dict(self._info)

    def supports(self, case: Case) -> str | None:
        return unsupported_reason(case)  # what torch's modules cannot express

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        self._info, self._exports = {}, 0
        outputs = keras_outputs(case, device, self._run_module)
        self._info["compilations"] = self._exports  # 0: every module's export was reused
        return outputs



    # --- the framework call (torch.adapter.ModuleCall) -------------------------------------

    def prepare(self, key: ModuleKey, params: dict[str, np.ndarray], x: np.ndarray, lengths: np.ndarray | None,
                states: list[np.ndarray] | None, fresh: bool) -> Callable[[], list]:
        """The session and its feeds: a closure of ``session.run`` alone (each closure holds
        its own feeds, weights included, so ``fresh`` needs nothing more)."""
        session, info, wanted = self._session(key, x.shape[1])
        batch = x.shape[0]
        zeros = np.zeros((key.directions, batch, key.units), dtype=key.dtype)
        # The export always takes h0 and c0 (zeros: torch's default); the dynamo export keeps
        # c0 as a required input even where the module ignores it (GRU, RNN).
        h0, c0 = (zeros, zeros) if states is None else (states[0], states[-1])
        feeds = {"x": np.ascontiguousarray(x), "h0": h0, "c0": c0,
                 "lengths": np.full(batch, x.shape[1]) if lengths is None else lengths,
                 **{PARAMETER_PREFIX + name: value for name, value in params.items()}}
        missing = [PARAMETER_PREFIX + name for name in params if PARAMETER_PREFIX + name not in wanted]
        if missing:
            raise RuntimeError(f"the session cannot take weights {missing} as inputs")
        feeds = {name: value for name, value in feeds.items() if name in wanted}
        self._info = dict(info, provider=session.get_providers()[0], **onnx_runtime.precision_settings(key.device))
        return lambda: session.run(None, feeds)

    def host_array(self, raw: np.ndarray) -> np.ndarray:
        return raw

    def _session(self, key: ModuleKey, steps: int):
        """One session per structure (with the names it takes as feeds); per length too
        when the export fixed the time axis.

        With ``export_cache`` off, every call exports and opens a new session (for
        ``conformance bench``, which times the cache's effect).
        """
        cached = [self._sessions[k] for k in ((key, None), (key, steps)) if k in self._sessions]
        if self.export_cache and cached:
            return cached[0]
        model, info = self._export(key, max(steps, 2))  # size 1 would be specialised by torch.export
        if static_steps(model) not in (None, steps):
            model, info = self._export(key, steps)
        session, facts = onnx_runtime.open_session(model.SerializeToString(), key.device,
                                                   is_reduced_precision(key.dtype))
        info = dict(info, **facts)
        # ONNX Runtime lists initializers declared as inputs apart from the other inputs.
        wanted = {i.name for i in session.get_inputs() + session.get_overridable_initializers()}
        entry = (session, info, wanted)
        if self.export_cache:
            self._sessions[(key, static_steps(model))] = entry
        return entry


    def _export(self, key: ModuleKey, steps: int):
        """``export_module``'s model and facts, from the disk cache when an earlier run of these
        library versions made them (``conformance.caches``); counted when exported."""
        import onnx

        def export() -> bytes:
            model, info = export_module(key, steps)
            model.metadata_props.add(key=INFO_KEY, value=json.dumps(info, sort_keys=True))
            return model.SerializeToString()

        versions = {k: v for k, v in self.versions().items() if k != "onnxruntime"}
        path = (cached_file("onnx-torch", [CACHE_FORMAT, versions, asdict(replace(key, device="cpu")), steps], ".onnx")
                if self.export_cache else None)  # off: every call really exports (bench times that)
        data, from_cache = read_or_make(path, export)
        self._exports += not from_cache
        model = onnx.load_from_string(data)
        info = dict(json.loads(next(p.value for p in model.metadata_props if p.key == INFO_KEY)),
                    **onnx_runtime.model_stamp(model))
        return model, (dict(info, export="read from disk cache") if from_cache else info)


# --- export -----------------------------------------------------------------------------------


def export_wrapper(key: ModuleKey):
    """The torch module with a fixed signature ``(x, lengths, h0, c0) -> (output, h_n[, c_n])``.

    Unused inputs (``lengths`` unpacked, ``c0`` without LSTM) are simply ignored,
    so one feed dict serves every export.
    """
    import torch

    class ExportWrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = build_module(replace(key, device="cpu"))

        def forward(self, x, lengths, h0, c0):
            hx = [h0, c0] if key.n_states == 2 else [h0]
            return forward_rnn(self.rnn, x, lengths if key.packed else None, hx)

    return ExportWrapper().eval()


def export_module(key: ModuleKey, steps: int):
    """The ONNX model of ``key``'s module, weights declared as inputs, and how it was exported."""
    import onnx
    import torch

    wrapper = export_wrapper(key)
    dtype = getattr(torch, key.dtype)
    # Distinct h0 and c0 tensors: torch.export binds one input to an object passed twice.
    h0, c0 = (torch.zeros(key.directions, 2, key.units, dtype=dtype) for _ in range(2))
    args = (torch.zeros(2, steps, key.input_size, dtype=dtype), torch.tensor([steps, max(1, steps - 1)]), h0, c0)
    output_names = ["output", "h_n", "c_n"][:1 + key.n_states]
    start = time.perf_counter()
    try:
        model, info = _export_dynamo(wrapper, args, output_names), {"exporter": "dynamo"}
    except Exception as exc:  # noqa: BLE001 - any dynamo failure is a reason to fall back
        model, info = _export_torchscript(wrapper, args, output_names), {
            "exporter": "torchscript", "dynamo_failure": failure_summary(exc)}
    weights_as_inputs(model, [PARAMETER_PREFIX + name for name, _ in wrapper.rnn.named_parameters()])
    ops = sorted({node.op_type for node in model.graph.node if node.op_type in RECURRENT_OPS})
    info["onnx_op"] = ",".join(ops) or "unrolled (no ONNX recurrent op)"
    info["export_s"] = round(time.perf_counter() - start, 2)
    onnx.checker.check_model(model)
    return model, info


def _export_dynamo(wrapper, args, output_names):
    import torch

    # Observed on torch 2.13: the time axis stays dynamic for float32 LSTM/GRU only; nn.RNN is
    # unrolled step by step and float64 LSTM/GRU specialise it, so those exports fix T.
    batch, steps = torch.export.Dim("batch"), torch.export.Dim("time")
    dynamic_shapes = {"x": {0: batch, 1: steps}, "lengths": {0: batch}, "h0": {1: batch}, "c0": {1: batch}}
    with _quiet():
        program = torch.onnx.export(wrapper, args, dynamo=True, optimize=False, verbose=False,
                                    input_names=INPUT_NAMES, output_names=output_names,
                                    dynamic_shapes=dynamic_shapes)
    return program.model_proto


def _export_torchscript(wrapper, args, output_names):
    import onnx
    import torch

    dynamic_axes = {"x": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "h0": {1: "batch"},
                    "c0": {1: "batch"}, **{name: {0: "batch"} for name in output_names[:1]}}
    buffer = io.BytesIO()
    with _quiet():
        torch.onnx.export(wrapper, args, buffer, dynamo=False, input_names=INPUT_NAMES,
                          output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=False)
    return onnx.load_from_string(buffer.getvalue())


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress lines, deprecation notices and torch.export's graph dumps.

    A dynamo failure is not lost: its summary goes to ``last_run_info``.
    """
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def failure_summary(exc: Exception) -> str:
    """The line of an export error that says what went wrong (torch's first line is boilerplate)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line]
    if "## Exception summary" in lines[:-1]:
        return lines[lines.index("## Exception summary") + 1][:300]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def weights_as_inputs(model, names: list[str]) -> None:
    """Declare the named initializers as graph inputs too, so a feed can replace them."""
    import onnx

    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    missing = [name for name in names if name not in initializers]
    if missing:
        raise RuntimeError(f"the exported graph has no initializer named {missing}; "
                           f"it has {sorted(initializers)}")
    declared = {value.name for value in model.graph.input}
    for name in names:
        if name not in declared:
            tensor = initializers[name]
            model.graph.input.append(onnx.helper.make_tensor_value_info(name, tensor.data_type, tensor.dims))


def static_steps(model) -> int | None:
    """The time length the export fixed for ``x``, or None when the axis stayed dynamic."""
    x = next(value for value in model.graph.input if value.name == "x")
    dim = x.type.tensor_type.shape.dim[1]
    return dim.dim_value if dim.HasField("dim_value") else None
