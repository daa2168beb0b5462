"""Keras 3's own ONNX export (``model.export(path, format="onnx")``), run by onnxruntime.

The Keras model is the one the keras-tensorflow adapter builds
(``keras.keras3.keras3_model``: real layers, a real ``Bidirectional``, a
functional model with a bool ``mask`` input passed as ``mask=``), and the
backend is claimed the same way (``claim_keras_backend``): shared functions,
no shared class. What is under test is the exporter plus onnxruntime.

Three rows, one per Keras backend (``KerasExportPath``), because ``export(format="onnx")`` goes
through a different exporter on each: the exporter a Keras user actually gets.

``onnx-keras``: tensorflow, through ``tf2onnx`` (installed as ``pip install tf2onnx``, 1.17.0;
works with this numpy 2 / protobuf 7 venv thanks to Keras's own ``patch_tf2onnx``). It keeps
batch and time dynamic, keeps the bool mask as a graph input, rewrites unmasked LSTMs (tanh,
sigmoid, relu activations) into ONNX ``LSTM`` nodes and everything else (GRU, SimpleRNN, masked
or hard-sigmoid/linear LSTMs) into a ``Loop``; ``last_run_info()["onnx_ops"]`` says which.

``onnx-keras-jax``: jax, through ``jax2onnx`` (0.17.1 with jax 0.10.2), each free axis a symbolic
dimension of its own name; float64 exports under ``jax.enable_x64(True)`` (``export_scope``).
It refuses a mask input (x's and the mask's time axes have different names), ``go_backwards``
and ``Bidirectional`` (a reverse ``lax.scan``), and dropout: ``supports`` reports its words.

``onnx-keras-torch``: torch, at each case's own shapes (``input_signature`` of concrete
``keras.InputSpec``s, ``concrete_signature``: Keras then uses torch's dynamo exporter), one export
per structure and shape. Not the default export: with no signature Keras traces the model with
every ``None`` dimension replaced by 1 (documented in ``keras.src.export.onnx``) yet declares the
axes dynamic, so the graph runs one step whatever T is (silently wrong LSTM/GRU results, Split
errors once a mask is an input; Keras 3.15.1 / torch 2.13; FINDINGS.md 22,
``tests/test_keras_onnx_backends.py``). A careful user gives the shapes; the row tests the rest.

What an exporter refuses is ``unsupported`` with its own first words (``refusal_line``).

Speed: an export takes ~2 s here (tf2onnx, jax2onnx; torch's dynamo ~15 s), and nearly every
case has its own structure. So each structure is exported once with *probe* weights (distinct
random values); every initializer holding probe values is located element by
element, turned into a graph input, and each case feeds its own weights there.
Location is checked (every Keras weight found, nothing but zeros beside them);
where it fails the adapter re-exports per case instead. Exports are also kept
on disk (``$CONFORMANCE_CACHE_DIR``, default ``~/.cache/rnn-conformance``; set
it to ``off`` to disable), keyed by structure and library versions, so only
the first run pays for them. ``last_run_info()["compilations"]`` is the number of
exports made since the previous run (``supports`` makes a structure's first export): 1 for a
structure's first export or a per-case re-export, 0 for a structure already exported or read
from the disk cache.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from conformance import semantics
from conformance.adapters.contract import Adapter, Reproducer, missing_module_reason
from conformance.adapters.keras.common import Structure, input_names, keras_weights, model_inputs
from conformance.adapters.keras.keras3 import claim_keras_backend, keras3_model, loaded_keras_backend
from conformance.adapters.onnx import runtime as onnx_runtime
from conformance.caches import cached_file, read_or_make
from conformance.matrix.case import Case, is_floating, is_reduced_precision, numpy_dtype

RECURRENT_OPS = ("RNN", "GRU", "LSTM", "Loop", "Scan")
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Keras wraps a layer's exception with bold escapes
CACHE_FORMAT = 1
REFUSED = b"refused by the exporter: "  # a cached refusal (an ONNX model never starts so: protobuf tags)


@dataclass(frozen=True)
class KerasExportPath:
    """The exporter ``model.export(format="onnx")`` goes through on one Keras backend.

    ``exporter``: the module that writes the ONNX graph (its version keys the disk cache).
    ``static_shapes``: export once per concrete input shape, through ``input_signature``,
    instead of once per structure with the dynamic (None) dims Keras gives.
    """

    backend: str
    exporter: str
    modules: tuple[str, ...]
    static_shapes: bool = False


TENSORFLOW = KerasExportPath("tensorflow", "tf2onnx", ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime"))
JAX = KerasExportPath("jax", "jax2onnx", ("jax", "keras", "jax2onnx", "onnx", "onnxruntime"))
# torch: Keras traces with every None dim replaced by 1 yet declares them dynamic (module docstring).
TORCH = KerasExportPath("torch", "torch", ("torch", "keras", "onnx", "onnxscript", "onnxruntime"), static_shapes=True)


class LocateError(RuntimeError):
    """The probe weights could not be located unambiguously in an exported model."""


# --- weights ------------------------------------------------------------------------------


def probe_weights(case: Case) -> dict[str, list[np.ndarray]]:
    """Distinct random values in each weight's shape (Keras order), from a fixed seed.

    float16 and bfloat16: drawn without replacement from the magnitudes in [0.05, 0.45] that
    ``case.dtype`` holds, with random signs; independent draws would collide there (bfloat16
    has a few hundred such values), and a repeated value could not be located.
    """
    rng = np.random.default_rng(20240229)
    if not is_reduced_precision(case.dtype):  # float32 / float64: independent draws, as exported and cached
        probes = {}
        for name, arrays in keras_weights(case).items():
            shapes = [w.shape for w in arrays]
            probes[name] = [(rng.uniform(0.05, 0.45, size=s) * rng.choice([-1.0, 1.0], size=s)).astype(case.dtype)
                            for s in shapes]
        flat = np.concatenate([a.ravel() for arrays in probes.values() for a in arrays])
        if len(np.unique(flat)) != flat.size:
            raise LocateError("probe weights are not distinct")
        return probes
    dtype = numpy_dtype(case.dtype)
    grid = np.unique(np.linspace(0.05, 0.45, 1 << 16).astype(dtype))
    shapes = {name: [w.shape for w in arrays] for name, arrays in keras_weights(case).items()}
    total = sum(int(np.prod(s)) for arrays in shapes.values() for s in arrays)
    if total > grid.size:
        raise LocateError(f"{total} weights, and {case.dtype} holds only {grid.size} probe magnitudes")
    flat = rng.permutation(grid)[:total] * rng.choice(np.array([-1.0, 1.0], dtype=dtype), size=total)
    probes, start = {}, 0
    for name, arrays in shapes.items():
        probes[name] = []
        for shape in arrays:
            size = int(np.prod(shape))
            probes[name].append(flat[start:start + size].reshape(shape).astype(dtype))
            start += size
    if len(np.unique(flat)) != flat.size:
        raise LocateError("probe weights are not distinct")
    return probes


def flat_weights(weights: dict[str, list[np.ndarray]]) -> np.ndarray:
    return np.concatenate([a.ravel() for arrays in weights.values() for a in arrays])


@dataclass
class WeightSlot:
    """An exported initializer holding Keras weights.

    ``index`` points into the flat Keras weight vector; -1 keeps ``base`` (the zeros beside them).
    """

    name: str
    index: np.ndarray
    base: np.ndarray

    def value(self, flat: np.ndarray) -> np.ndarray:
        return np.where(self.index >= 0, flat[np.maximum(self.index, 0)], self.base).astype(self.base.dtype)


def _subgraph_tensors(graph) -> list:
    """Tensors held anywhere but the main graph's initializers (Constant nodes, Loop bodies)."""
    import onnx

    found = []
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR:
                found.append(attribute.t)
            subgraphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else []
            for sub in subgraphs + list(attribute.graphs):
                found += list(sub.initializer) + _subgraph_tensors(sub)
    return found


def locate_weights(model, probe: np.ndarray) -> list[WeightSlot]:
    """Every main-graph initializer made of probe values (and zeros), as slots; else LocateError."""
    from onnx import numpy_helper

    lookup = {float(v): n for n, v in enumerate(probe)}
    slots, seen = [], np.zeros(probe.size, dtype=bool)
    for tensor in model.graph.initializer:
        values = numpy_helper.to_array(tensor)
        if not is_floating(values.dtype):
            continue
        index = np.asarray([lookup.get(float(v), -1) for v in values.ravel()], dtype=np.int64)
        if not (index >= 0).any():
            continue
        if np.any(values.ravel()[index < 0] != 0):
            raise LocateError(f"initializer {tensor.name} mixes weights with other non-zero values")
        seen[index[index >= 0]] = True
        slots.append(WeightSlot(tensor.name, index.reshape(values.shape), values.copy()))
    for tensor in _subgraph_tensors(model.graph):
        values = numpy_helper.to_array(tensor)
        if is_floating(values.dtype) and any(float(v) in lookup for v in values.ravel()):
            raise LocateError(f"weights inside a subgraph or Constant node ({tensor.name})")
    if not seen.all():
        raise LocateError(f"{int((~seen).sum())} Keras weight values appear nowhere verbatim")
    return slots


def weights_as_inputs(model, slots: list[WeightSlot]) -> bytes:
    """The model with each slot also a graph input (an overridable initializer in onnxruntime)."""
    from onnx import helper

    for slot in slots:
        tensor = next(t for t in model.graph.initializer if t.name == slot.name)
        value_info = helper.make_tensor_value_info(slot.name, tensor.data_type, list(tensor.dims))
        model.graph.input.append(value_info)
    return model.SerializeToString()


# --- export -------------------------------------------------------------------------------


def concrete_signature(structure: Structure, case: Case) -> list:
    """``input_signature`` at the case's own shapes, in ``model_inputs`` order and by ``input_names``
    (a functional model takes its inputs as one list: the signature wraps it in another)."""
    import keras

    arrays = model_inputs(case)
    return [[keras.InputSpec(shape=a.shape, dtype=str(a.dtype), name=name)
             for name, a in zip(input_names(structure), arrays)]]


def export_scope(path: KerasExportPath, dtype: str) -> contextlib.AbstractContextManager:
    """Where float64 needs it, JAX's x64 switch (else JAX traces float64 as float32), as a
    Keras user on JAX sets it; scoped like the keras-jax adapter's."""
    if path.backend == "jax" and dtype == "float64":
        import jax

        return jax.enable_x64(True)
    return contextlib.nullcontext()


def export_onnx(structure: Structure, weights: dict[str, list[np.ndarray]],
                case: Case, path: KerasExportPath = TENSORFLOW) -> tuple[bytes, list[str]]:
    """Build the Keras model, set ``weights``, call it once (export requires it), export (at the
    case's shapes where ``path.static_shapes``); and the warnings the export raised, recorded rather than raised."""
    with export_scope(path, case.dtype):
        return _export_onnx(structure, weights, case, path.static_shapes)


def _export_onnx(structure: Structure, weights: dict[str, list[np.ndarray]],
                 case: Case, static_shapes: bool) -> tuple[bytes, list[str]]:
    import keras

    built = keras3_model(keras, structure)
    for name, arrays in weights.items():
        built.layers[name].set_weights(arrays)
    built.model(model_inputs(case), training=False)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(record=True) as caught, \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")
        target = Path(tmp) / "model.onnx"
        signature = concrete_signature(structure, case) if static_shapes else None
        built.model.export(str(target), format="onnx", verbose=False, input_signature=signature)
        data = target.read_bytes()
    return data, sorted({f"{w.category.__name__}: {w.message}".splitlines()[0] for w in caught})


def cache_path(kind: str, structure: Structure, versions: dict[str, str], shapes: tuple = ()) -> Path | None:
    """The disk cache's file for ``structure`` exported by adapter ``kind`` (at ``shapes``, where
    the export is per shape)."""
    s = structure
    return cached_file(kind, [CACHE_FORMAT, versions, s.spec.to_dict(), s.features, s.decoder_features,
                              s.dtype, s.has_mask, s.has_initial_state, s.timesteps, s.decoder_timesteps,
                              s.mask_source] + ([s.vocabulary] if s.vocabulary else []) + ([shapes] if shapes else []),
                       ".onnx")


def input_shapes(case: Case) -> tuple:
    """The shapes of ``model_inputs(case)``: what a per-shape export is keyed by."""
    return tuple(tuple(int(n) for n in a.shape) for a in model_inputs(case))


# --- the adapter --------------------------------------------------------------------------


@dataclass
class Exported:
    """One structure's export: the model with weights as inputs, or None when they can't be located."""

    model_bytes: bytes | None
    slots: list[WeightSlot]
    how: str
    recurrent_ops: list[str]
    stamp: dict[str, int] = field(default_factory=dict)  # onnx_runtime.model_stamp: the opset tf2onnx chose
    sessions: dict[str, tuple[object, dict]] = field(default_factory=dict)  # onnx_runtime.open_session's
    warnings: list[str] = field(default_factory=list)
    refusal: str | None = None  # the exporter's own words where it refused the structure


def refusal_line(exc: BaseException, exporter: str) -> str:
    """An exporter's exception as one ``unsupported`` line: ``exporter: Type: message``, whitespace
    folded, at most 400 characters (jax2onnx's messages quote whole traced expressions)."""
    text = ANSI.sub("", f"{type(exc).__name__}: {exc}").split("Arguments received by", 1)[0]
    text = " ".join(text.replace("Exception encountered when calling ", "in ").split())
    return f"{exporter}: {text[:400]}"


def weight_feeds(exported: Exported, weights: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """Each located initializer's value for ``weights`` (``keras_weights`` layout), by its name."""
    flat = flat_weights(weights)
    return {slot.name: slot.value(flat) for slot in exported.slots}


def input_feeds(structure: Structure, case: Case) -> dict[str, np.ndarray]:
    """The case's arrays by the names of ``build_model``'s Inputs (kept by the export)."""
    return dict(zip(input_names(structure), model_inputs(case)))


class OnnxKerasAdapter(Adapter):
    """``keras.Model.export(format="onnx")`` (tensorflow backend, tf2onnx) in onnxruntime."""

    name = "onnx-keras"
    path = TENSORFLOW
    declared_devices = ("cpu", "cuda")
    compiles_per_structure = True  # an export per structure (tf2onnx: ~0.8 s each)
    requires = TENSORFLOW.modules

    def __init__(self) -> None:
        self._exports: dict[tuple, Exported] = {}
        self._info: dict = {}
        self._exported_in_run = 0

    def available(self) -> str | None:
        backend = self.path.backend
        other = claim_keras_backend(backend)
        if other is not None:
            return (f"keras already imported with backend {other} in this process; {self.name} "
                    f"exports with the {backend} backend (run it in its own process)")
        reason = missing_module_reason(*self.path.modules)
        if reason:
            return reason
        return None if loaded_keras_backend() == backend else f"keras did not load the {backend} backend"

    def devices(self) -> list[str]:
        return onnx_runtime.devices()

    def device_name(self, device: str) -> str:
        return onnx_runtime.device_name(device)

    def versions(self) -> dict[str, str]:
        import importlib
        from importlib import metadata

        import keras

        found = {"keras": keras.__version__, "keras backend": self.path.backend}
        for module in dict.fromkeys((self.path.backend, self.path.exporter)):
            # jax2onnx has no __version__: its distribution's is the same
            found[module] = getattr(importlib.import_module(module), "__version__", None) or metadata.version(module)
        return {**found, **onnx_runtime.versions()}

    def last_run_info(self) -> dict:
        return dict(self._info)

    def supports(self, case: Case) -> str | None:
        """Stateful cases, and whatever structure the exporter refuses, in its own words (the probe
        export it makes here is the one ``run`` then uses)."""
        reason = semantics.stateful_reason(case, "an ONNX graph (what the export gives)")
        if reason or self.available():
            return reason  # an unavailable exporter: run() reports it
        return self._exported(Structure.of(case, "cpu"), case).refusal

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        reason = self.available()
        if reason:
            raise RuntimeError(reason)
        structure, exported, feeds = self._prepared(case)
        if exported.model_bytes is None:
            data, caught = export_onnx(structure, self.case_weights(case), case, self.path)
            self._exported_in_run += 1
            session, facts = onnx_runtime.open_session(data, device, is_reduced_precision(case.dtype))
            exported.warnings = caught
        else:
            if device not in exported.sessions:
                exported.sessions[device] = onnx_runtime.open_session(exported.model_bytes, device,
                                                                      is_reduced_precision(case.dtype))
            session, facts = exported.sessions[device]
        # exports since the previous run: supports() makes a structure's probe export
        exports, self._exported_in_run = self._exported_in_run, 0
        self._info = {"export": exported.how, "compilations": exports, "onnx_ops": exported.recurrent_ops,
                      **exported.stamp,
                      "provider": onnx_runtime.PROVIDERS[device], **onnx_runtime.precision_settings(device), **facts}
        if exported.warnings:
            self._info["export_warnings"] = exported.warnings
        return [np.asarray(a) for a in session.run(None, feeds)]

    def _prepared(self, case: Case) -> tuple[Structure, Exported, dict[str, np.ndarray]]:
        """The case's structure, its export (RuntimeError with the exporter's words where it refused)
        and the feeds: the inputs, and the case's weights where the export takes them as graph inputs
        (a per-case export, ``model_bytes`` None, holds them itself)."""
        structure = Structure.of(case, "cpu")
        exported = self._exported(structure, case)
        if exported.refusal:
            raise RuntimeError(exported.refusal)
        feeds = input_feeds(structure, case)
        if exported.model_bytes is not None:
            feeds.update(weight_feeds(exported, self.case_weights(case)))
        return structure, exported, feeds

    def case_weights(self, case: Case) -> dict[str, list[np.ndarray]]:
        """The case's weights as the export's layers take them (the conversion step a porting
        bug would be in: tests.faulty_adapters injects one here)."""
        return keras_weights(case)

    def reproducer(self, case: Case, device: str) -> Reproducer:
        """The exported model as ``run`` feeds it (the probe export, weights as graph inputs; a
        per-case export where they could not be located) and its feeds, for ``conformance repro``."""
        from conformance.adapters.onnx.native import OnnxNativeAdapter

        structure, exported, feeds = self._prepared(case)
        if exported.model_bytes is None:
            data, _ = export_onnx(structure, self.case_weights(case), case, self.path)
        else:
            data = exported.model_bytes
        how = (f"keras.Model.export(format='onnx') on the {self.path.backend} backend ({self.path.exporter}"
               f"{', at the case shapes' if self.path.static_shapes else ''}): {exported.how}")
        # onnx-native's runner: exactly the row's provider, as onnx_runtime.open_session opens it
        return Reproducer("model.onnx", data, feeds, list(case.output_names), OnnxNativeAdapter.repro_runner,
                          "onnxruntime", how)

    def _exported(self, structure: Structure, case: Case) -> Exported:
        key = (structure.key(), input_shapes(case) if self.path.static_shapes else ())
        if key not in self._exports:
            self._exports[key] = self._export_structure(structure, case)
        return self._exports[key]

    def _export_structure(self, structure: Structure, case: Case) -> Exported:
        """Export with probe weights (or read that export from disk) and locate the weights."""
        import onnx

        probes = probe_weights(case)
        versions = self.versions()
        keyed = ("keras", self.path.backend, self.path.exporter, "onnx")
        path = cache_path(self.name, structure, {k: versions[k] for k in dict.fromkeys(keyed)},
                          input_shapes(case) if self.path.static_shapes else ())
        start, caught = time.perf_counter(), []

        def export() -> bytes:
            """The export, or its refusal (kept on disk too: the same versions refuse the same way)."""
            try:
                data, warned = export_onnx(structure, probes, case, self.path)
            except Exception as exc:  # noqa: BLE001 - the exporter's refusal is the reason
                return REFUSED + refusal_line(exc, self.path.exporter).encode()
            caught.extend(warned)
            return data

        data, from_cache = read_or_make(path, export)
        self._exported_in_run += not from_cache
        if data.startswith(REFUSED):
            return Exported(None, [], "refused", [], refusal=data[len(REFUSED):].decode(), warnings=caught)
        how = ("probe export read from disk cache" if from_cache
               else f"probe export ({time.perf_counter() - start:.1f}s), weights fed as inputs")
        model = onnx.load_from_string(data)
        ops = sorted({node.op_type for node in model.graph.node if node.op_type in RECURRENT_OPS})
        try:
            slots = locate_weights(model, flat_weights(probes))
        except LocateError as exc:
            return Exported(None, [], f"re-exported per case ({exc})", ops, onnx_runtime.model_stamp(model),
                            warnings=caught)
        return Exported(weights_as_inputs(model, slots), slots, how, ops, onnx_runtime.model_stamp(model),
                        warnings=caught)


class OnnxKerasJaxAdapter(OnnxKerasAdapter):
    """``keras.Model.export(format="onnx")`` on the jax backend (jax2onnx) in onnxruntime."""

    name = "onnx-keras-jax"
    path = JAX
    requires = JAX.modules


class OnnxKerasTorchAdapter(OnnxKerasAdapter):
    """``keras.Model.export(format="onnx")`` on the torch backend, at each case's shapes
    (``input_signature``), in onnxruntime."""

    name = "onnx-keras-torch"
    path = TORCH
    requires = TORCH.modules
