"""Keras 3's own ONNX export (``model.export(path, format="onnx")``), run by onnxruntime.

The Keras model is the one the keras-tensorflow adapter builds
(``keras.keras3.keras3_model``: real layers, a real ``Bidirectional``, a
functional model with a bool ``mask`` input passed as ``mask=``), and the
backend is claimed the same way (``claim_keras_backend``): shared functions,
no shared class. What is under test is the exporter plus onnxruntime.

Backend: tensorflow, whose export goes through ``tf2onnx`` (installed as
``pip install tf2onnx``, 1.17.0; works with this numpy 2 / protobuf 7 venv
thanks to Keras's own ``patch_tf2onnx``). It keeps batch and time dynamic,
keeps the bool mask as a graph input, rewrites unmasked LSTMs (tanh, sigmoid,
relu activations) into ONNX ``LSTM`` nodes and everything else (GRU,
SimpleRNN, masked or hard-sigmoid/linear LSTMs) into a ``Loop``;
``last_run_info()["onnx_ops"]`` says which. The torch backend was tried and rejected: Keras's torch export
traces the model with every ``None`` dimension replaced by 1 (documented in
``keras.src.export.onnx``) yet declares the time axis dynamic, so the model
runs one step whatever T is (silently wrong LSTM/GRU results, Split errors
for SimpleRNN, observed with Keras 3.15.1 / torch 2.13). The jax backend needs
``jax2onnx``, not installed (it pulls in ~20 packages).

Speed: an export takes ~2 s here, and nearly every case has its own
structure. So each structure is exported once with *probe* weights (distinct
random values); every initializer holding probe values is located element by
element, turned into a graph input, and each case feeds its own weights there.
Location is checked (every Keras weight found, nothing but zeros beside them);
where it fails the adapter re-exports per case instead. Exports are also kept
on disk (``$CONFORMANCE_CACHE_DIR``, default ``~/.cache/rnn-conformance``; set
it to ``off`` to disable), keyed by structure and library versions, so only
the first run pays for them. ``last_run_info()["compilations"]`` is the number of
exports a run made: 1 for a structure's first export or a per-case re-export, 0
for a structure already exported or read from the disk cache.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from conformance import semantics
from conformance.adapters.caches import cached_file, read_or_make
from conformance.adapters.contract import Adapter, missing_module_reason
from conformance.adapters.keras.common import Structure, input_names, keras_weights, model_inputs
from conformance.adapters.keras.keras3 import claim_keras_backend, keras3_model, loaded_keras_backend
from conformance.adapters.onnx import runtime as onnx_runtime
from conformance.matrix.case import Case, is_floating, is_reduced_precision, numpy_dtype

BACKEND = "tensorflow"
RECURRENT_OPS = ("RNN", "GRU", "LSTM", "Loop", "Scan")
EXPORT_MODULES = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime")
CACHE_FORMAT = 1


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


def export_onnx(structure: Structure, weights: dict[str, list[np.ndarray]],
                case: Case) -> tuple[bytes, list[str]]:
    """Build the Keras model, set ``weights``, call it once (export requires it), export; and the
    warnings the export raised, recorded rather than raised."""
    import keras

    built = keras3_model(keras, structure)
    for name, arrays in weights.items():
        built.layers[name].set_weights(arrays)
    built.model(model_inputs(case), training=False)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(record=True) as caught, \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")
        path = Path(tmp) / "model.onnx"
        built.model.export(str(path), format="onnx", verbose=False)
        data = path.read_bytes()
    return data, sorted({f"{w.category.__name__}: {w.message}".splitlines()[0] for w in caught})


def cache_path(structure: Structure, versions: dict[str, str]) -> Path | None:
    s = structure
    return cached_file("onnx-keras", [CACHE_FORMAT, versions, s.spec.to_dict(), s.features, s.decoder_features,
                                      s.dtype, s.has_mask, s.has_initial_state, s.timesteps, s.decoder_timesteps,
                                      s.mask_source] + ([s.vocabulary] if s.vocabulary else []),
                       ".onnx")


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


def input_feeds(structure: Structure, case: Case) -> dict[str, np.ndarray]:
    """The case's arrays by the names of ``build_model``'s Inputs (kept by the export)."""
    return dict(zip(input_names(structure), model_inputs(case)))


class OnnxKerasAdapter(Adapter):
    """``keras.Model.export(format="onnx")`` (tensorflow backend, tf2onnx) in onnxruntime."""

    name = "onnx-keras"
    declared_devices = ("cpu", "cuda")
    compiles_per_structure = True  # a tf2onnx export per structure (~0.8 s each)
    requires = EXPORT_MODULES

    def __init__(self) -> None:
        self._exports: dict[tuple, Exported] = {}
        self._info: dict = {}
        self._exported_in_run = 0

    def available(self) -> str | None:
        other = claim_keras_backend(BACKEND)
        if other is not None:
            return (f"keras already imported with backend {other} in this process; onnx-keras "
                    f"exports with the {BACKEND} backend (run it in its own process)")
        reason = missing_module_reason(*EXPORT_MODULES)
        if reason:
            return reason
        return None if loaded_keras_backend() == BACKEND else f"keras did not load the {BACKEND} backend"

    def devices(self) -> list[str]:
        return onnx_runtime.devices()

    def device_name(self, device: str) -> str:
        return onnx_runtime.device_name(device)

    def versions(self) -> dict[str, str]:
        import keras
        import tensorflow
        import tf2onnx

        return {"keras": keras.__version__, "keras backend": BACKEND, "tensorflow": tensorflow.__version__,
                "tf2onnx": tf2onnx.__version__, **onnx_runtime.versions()}

    def last_run_info(self) -> dict:
        return dict(self._info)

    def supports(self, case: Case) -> str | None:
        return semantics.stateful_reason(case, "an ONNX graph (what the export gives)")

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        reason = self.available()
        if reason:
            raise RuntimeError(reason)
        structure = Structure.of(case, "cpu")
        self._exported_in_run = 0
        exported = self._exported(structure, case)
        feeds = input_feeds(structure, case)
        if exported.model_bytes is None:
            data, caught = export_onnx(structure, keras_weights(case), case)
            self._exported_in_run += 1
            session, facts = onnx_runtime.open_session(data, device, is_reduced_precision(case.dtype))
            exported.warnings = caught
        else:
            if device not in exported.sessions:
                exported.sessions[device] = onnx_runtime.open_session(exported.model_bytes, device,
                                                                      is_reduced_precision(case.dtype))
            session, facts = exported.sessions[device]
            flat = flat_weights(keras_weights(case))
            feeds.update({slot.name: slot.value(flat) for slot in exported.slots})
        self._info = {"export": exported.how, "compilations": self._exported_in_run, "onnx_ops": exported.recurrent_ops,
                      **exported.stamp,
                      "provider": onnx_runtime.PROVIDERS[device], **onnx_runtime.precision_settings(device), **facts}
        if exported.warnings:
            self._info["export_warnings"] = exported.warnings
        return [np.asarray(a) for a in session.run(None, feeds)]

    def _exported(self, structure: Structure, case: Case) -> Exported:
        key = structure.key()
        if key not in self._exports:
            self._exports[key] = self._export_structure(structure, case)
        return self._exports[key]

    def _export_structure(self, structure: Structure, case: Case) -> Exported:
        """Export with probe weights (or read that export from disk) and locate the weights."""
        import onnx

        probes = probe_weights(case)
        versions = self.versions()
        path = cache_path(structure, {k: versions[k] for k in ("keras", "tensorflow", "tf2onnx", "onnx")})
        start, caught = time.perf_counter(), []

        def export() -> bytes:
            data, warned = export_onnx(structure, probes, case)
            caught.extend(warned)
            return data

        data, from_cache = read_or_make(path, export)
        self._exported_in_run += not from_cache
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
