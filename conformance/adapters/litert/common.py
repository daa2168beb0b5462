"""What the two LiteRT adapters share: static shapes, the flatbuffer, the weights, the interpreter.

Conversion: each adapter converts its Keras model with a *static* input signature, the
case's batch and time lengths included. Both converters (Keras 3's ``export(format="litert")``
and ``TFLiteConverter.from_keras_model``, TensorFlow 2.21) lower a Keras RNN with a free
batch or time axis to ``TensorList`` ops that only the Flex (Select TF ops) delegate runs,
and ``ai-edge-litert`` ships no Flex delegate: "Select TensorFlow op(s), included in the given
model, is(are) not supported by this interpreter"; with TFLITE_BUILTINS alone the converter
refuses ("'tf.TensorListReserve' op requires element_shape to be static during TF Lite
transformation pass"). The Keras docs say the same: pass a fixed ``input_signature``. So one
conversion serves one structure at one (batch, time) shape; ``StaticStructure`` is that key.

Speed: a conversion costs ~1 s (Keras 3) to ~10 s (tf_keras, whose SavedModel step traces
every layer function) on this machine. Each static structure is converted once, with *probe*
weights (``onnx.keras_export.probe_weights``: distinct random values); every flatbuffer buffer
holding probe values is located element by element (``locate``: every Keras weight value found
verbatim, nothing but zeros beside them in any buffer that holds one), and each case's own
weights are written into those bytes (``place``) before the interpreter is made. Where location
fails the adapter converts per case with the case's weights instead. Conversions are kept on disk
(``conformance.caches``), keyed by static structure and library versions.

Interpreter: ``ai_edge_litert.interpreter.Interpreter`` with its defaults (op resolver AUTO,
which applies the XNNPACK delegate to the ops it takes, in float32: XNNPACK computes in float16
only when forced, which nothing here does). No converter optimizations are set (no float16 or
int8 quantization; the default ``optimizations`` is empty), so the float32 rows are float32.

Calls: every non-stateful case is invoked twice on the same interpreter and the *second*
answer is returned: a deployed interpreter answers many calls, and a non-stateful Keras layer
gives the same answer to each. ``run_info["calls_agree"]`` says whether the first call gave the
same bits (``first_call_max_abs_diff``). A stateful case is ``earlier_x`` then ``x``, two
``invoke()`` calls carrying the state in the model's resource variables (``VAR_HANDLE``,
``ASSIGN_VARIABLE``); ``reset_states`` between them is a fresh interpreter (see ``run``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np

from conformance.adapters.contract import Adapter, Reproducer, reduced_precision_allowed
from conformance.adapters.keras.common import (
    Structure,
    input_names,
    keras_weights,
    model_inputs,
    variable_dtype,
    widened,
)
from conformance.caches import cached_file, read_or_make
from conformance.matrix.case import Case, is_reduced_precision

CACHE_FORMAT = 2  # a cache file: a JSON line (warnings, or the refusal), then the flatbuffer; 2: a stateful
# unrolled layer's earlier call has a model of its own length (format 1 cached the suite's own refusals of it)
# The tflite ops that hold a recurrence (run_info["recurrence"]): a WHILE loop over steps, a fused
# sequence kernel, or the resource variables that carry a stateful layer's state between calls.
RECURRENT_OPS = ("WHILE", "UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM",
                 "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN", "LSTM", "RNN", "VAR_HANDLE")
PRECISION = ("float32: converter optimizations=[] (no float16/int8 quantization); interpreter op "
             "resolver AUTO (XNNPACK delegate, float32 kernels, FORCE_FP16 not set)")
INTERPRETER_MODULE = "ai_edge_litert.interpreter"
EARLIER = "earlier"  # the signature of a stateful case's earlier call


class LocateError(RuntimeError):
    """The probe weights could not be located unambiguously in a converted model."""


# --- the static structure ----------------------------------------------------------------


@dataclass
class StaticStructure:
    """A ``Structure`` at one shape: what one conversion serves."""

    structure: Structure
    shapes: tuple[tuple[int, ...], ...]  # model_inputs' shapes, in input_names order
    # A stateful case's earlier call's x shape: the model then has a second signature, EARLIER,
    # at that shape, sharing the layer's state variables with the main one.
    earlier_shape: tuple[int, ...] | None = None

    @classmethod
    def of(cls, case: Case, policy: str | None = None) -> StaticStructure:
        earlier = None if case.earlier_x is None else tuple(case.earlier_x.shape)
        return cls(Structure.of(case, "cpu", policy), tuple(tuple(a.shape) for a in model_inputs(case)), earlier)

    def key(self) -> tuple:
        return self.structure.key() + (self.shapes, self.earlier_shape)

    def cache_key(self, kind: str, versions: dict[str, str]) -> list:
        s = self.structure
        return [CACHE_FORMAT, kind, versions, s.spec.to_dict(), s.features, s.decoder_features, s.dtype, s.policy,
                s.has_mask, s.has_initial_state, s.mask_source, s.vocabulary, s.batch, [list(x) for x in self.shapes],
                None if self.earlier_shape is None else list(self.earlier_shape)]

    @property
    def names(self) -> list[str]:
        return input_names(self.structure)


def is_stateful(case: Case) -> bool:
    return any(layer.stateful for layer in case.spec.sublayers().values())


# --- the flatbuffer ----------------------------------------------------------------------


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _float_dtypes() -> dict[int, np.dtype]:
    import ml_dtypes

    t = _schema().TensorType
    return {t.FLOAT32: np.dtype("float32"), t.FLOAT64: np.dtype("float64"), t.FLOAT16: np.dtype("float16"),
            t.BFLOAT16: np.dtype(ml_dtypes.bfloat16)}


def op_names(data: bytes) -> list[str]:
    """The model's operator codes by name (``FlexFoo`` for a Select TF op, ``CUSTOM:x`` otherwise)."""
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAsModel(data, 0)
    found = set()
    for n in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(n)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.CustomCode().decode()
            found.add(custom if custom.startswith("Flex") else f"CUSTOM:{custom}")
        else:
            found.add(names.get(builtin, str(builtin)))
    return sorted(found)


@dataclass
class BufferView:
    """One constant buffer: where its bytes lie in the flatbuffer and the dtype of its tensors."""

    index: int
    offset: int
    dtype: np.dtype
    count: int

    def values(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype=self.dtype, count=self.count, offset=self.offset)


def float_buffers(data: bytes) -> list[BufferView]:
    """Every non-empty buffer that a floating-point tensor of any subgraph reads."""
    schema = _schema()
    floats = _float_dtypes()
    model = schema.Model.GetRootAsModel(data, 0)
    dtype_of: dict[int, np.dtype] = {}
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            if tensor.Type() in floats and tensor.Buffer() > 0:
                dtype_of[tensor.Buffer()] = floats[tensor.Type()]
    views = []
    for index, dtype in sorted(dtype_of.items()):
        buffer = model.Buffers(index)
        if buffer.Offset() != 0:
            raise LocateError(f"buffer {index} lies outside the flatbuffer (offset {buffer.Offset()})")
        field_offset = buffer._tab.Offset(4)
        if not field_offset:
            continue
        start, length = buffer._tab.Vector(field_offset), buffer._tab.VectorLen(field_offset)
        if length:
            views.append(BufferView(index, start, dtype, length // dtype.itemsize))
    return views


@dataclass
class Slot:
    """A buffer holding Keras weights: ``index`` into the flat Keras weight vector, -1 keeps ``base``."""

    view: BufferView
    index: np.ndarray
    base: np.ndarray

    def value(self, flat: np.ndarray) -> np.ndarray:
        value = np.where(self.index >= 0, flat[np.maximum(self.index, 0)].astype(self.view.dtype), self.base)
        value = value.astype(self.view.dtype)
        placed = self.index >= 0
        if not np.array_equal(value[placed].astype(np.float64), flat[self.index[placed]].astype(np.float64),
                              equal_nan=True):
            raise LocateError(f"buffer {self.view.index} ({self.view.dtype}) cannot hold the weights exactly")
        return value


def locate(data: bytes, probe: np.ndarray) -> list[Slot]:
    """Every buffer made of probe values (and zeros), as slots; LocateError where that is not clean:
    a buffer mixing weights with other non-zero values, or a weight value found nowhere."""
    wide = probe.astype(np.float64)
    order = np.argsort(wide, kind="stable")
    ordered = wide[order]
    slots, seen = [], np.zeros(probe.size, dtype=bool)
    for view in float_buffers(data):
        values = view.values(data)
        v = values.astype(np.float64)
        pos = np.clip(np.searchsorted(ordered, v), 0, ordered.size - 1)
        found = ordered[pos] == v
        if not found.any():
            continue
        index = np.where(found, order[pos], -1).astype(np.int64)
        if np.any(values[~found] != 0):
            raise LocateError(f"buffer {view.index} mixes {int(found.sum())} weight values with other non-zero values")
        seen[index[found]] = True
        slots.append(Slot(view, index, values.copy()))
    if not seen.all():
        raise LocateError(f"{int((~seen).sum())} of {probe.size} Keras weight values appear in no buffer verbatim")
    return slots


def place(data: bytes, slots: list[Slot], flat: np.ndarray) -> bytes:
    """``data`` with each slot's buffer rewritten to hold ``flat``'s values (same size, same place)."""
    patched = bytearray(data)
    for slot in slots:
        raw = slot.value(flat).tobytes()
        patched[slot.view.offset:slot.view.offset + len(raw)] = raw
    return bytes(patched)


def rename_outputs(data: bytes, order: list[str]) -> bytes:
    """The model with its first signature's outputs renamed ``output_N``, N the name's position in
    ``order`` (the Keras output list): what Keras 3's export writes, so one runner reads both."""
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    position = {name: n for n, name in enumerate(order)}
    for tensor_map in model.signatureDefs[0].outputs:
        name = tensor_map.name.decode() if isinstance(tensor_map.name, bytes) else tensor_map.name
        tensor_map.name = f"output_{position[name]}"
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def pack(data: bytes, meta: dict) -> bytes:
    """A cache file: a JSON line of facts, then the flatbuffer."""
    return json.dumps(meta, sort_keys=True).encode() + b"\n" + data


def unpack(blob: bytes) -> tuple[bytes, dict]:
    head, _, data = blob.partition(b"\n")
    return data, json.loads(head)


# --- the interpreter -----------------------------------------------------------------------


def output_position(name: str) -> int:
    return int(name.rsplit("_", 1)[1])


def interpreter(data: bytes):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=data)


def feeds_for(runner, names: list[str], arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays by signature input name; integer and bool inputs in the dtype the model declares
    (int64 tokens into an int32 Input), floating ones untouched."""
    details = runner.get_input_details()
    feeds = {}
    for name, array in zip(names, arrays):
        want = np.dtype(details[name]["dtype"])
        feeds[name] = array if np.issubdtype(array.dtype, np.floating) or array.dtype == want else array.astype(want)
    missing = set(details) - set(feeds)
    if missing:
        raise RuntimeError(f"the converted model asks for inputs {sorted(missing)} the case does not have")
    return feeds


def runners(it) -> tuple[Any, Any]:
    """The main signature's runner and the EARLIER one's (None where the model has none)."""
    keys = list(it.get_signature_list())
    main = [key for key in keys if key != EARLIER]
    if len(main) != 1:
        raise RuntimeError(f"the converted model has signatures {keys}; expected one besides {EARLIER!r}")
    return it.get_signature_runner(main[0]), (it.get_signature_runner(EARLIER) if EARLIER in keys else None)


def call(runner, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    result = runner(**feeds)
    return [np.array(result[key], copy=True) for key in sorted(result, key=output_position)]


def first_error_line(text: str) -> str:
    """The converter's own words: its first ``error:`` line without the MLIR location, else the first line."""
    for line in text.splitlines():
        if "error:" in line:
            return line.split("error:", 1)[1].strip()
    return text.strip().splitlines()[0] if text.strip() else text


REPRO_RUNNER = '''
import numpy as np
from ai_edge_litert.interpreter import Interpreter


def run_model(model_path, feeds, device="cpu"):
    """The outputs of the model's signature in Keras output-list order (output_0, output_1, ...).
    As the conformance adapter does: two invoke() calls on one interpreter, the second returned."""
    runner = Interpreter(model_path=str(model_path)).get_signature_runner()
    runner(**feeds)
    result = runner(**feeds)
    return [result[key] for key in sorted(result, key=lambda name: int(name.rsplit("_", 1)[1]))]
'''


# --- the adapter -------------------------------------------------------------------------


@dataclass
class Converted:
    """One static structure's conversion with probe weights."""

    model: bytes | None  # None: conversion failed (``reason``)
    slots: list[Slot] | None  # None: weights not located, convert per case
    how: str
    ops: list[str] = field(default_factory=list)
    reason: str | None = None  # the converter's refusal, in its words: the case is unsupported
    fresh: int = 0  # conversions made for it not yet counted by a run
    warnings: list[str] = field(default_factory=list)
    # The interpreter's refusal of the converted model, in its words: run raises it (an error).
    refused: str | None = None


class LiteRTAdapter(Adapter):
    """A Keras model converted to .tflite, run by ai-edge-litert. Subclasses convert."""

    declared_devices = ("cpu",)
    compiles_per_structure = True  # a .tflite conversion per structure and shape (~1-10 s)
    cache_kind = "litert"
    converter_name = ""
    CALLS = 2  # invoke() calls per non-stateful case; the last one's answer is returned

    def __init__(self) -> None:
        self._converted: dict[tuple, Converted] = {}
        self._info: dict = {}
        self.export_cache = True

    # -- what a subclass provides --

    def frontend_versions(self) -> dict[str, str]:
        raise NotImplementedError

    def policy(self, case: Case) -> str | None:
        return {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}.get(case.dtype)

    def convert(self, static: StaticStructure, weights: dict[str, list[np.ndarray]], case: Case
                ) -> tuple[bytes, list[str]]:
        """The .tflite bytes of ``static`` holding ``weights`` (outputs named output_N), and warnings."""
        raise NotImplementedError

    # -- the contract --

    def devices(self) -> list[str]:
        return ["cpu"]

    def versions(self) -> dict[str, str]:
        return {**self.frontend_versions(), "ai-edge-litert": metadata.version("ai-edge-litert")}

    def last_run_info(self) -> dict:
        return dict(self._info)

    def supports(self, case: Case) -> str | None:
        """The converter's refusal (its words); an interpreter refusing the model is ``run``'s error."""
        if self.available():
            return None  # run() reports it
        return self._conversion(case).reason

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        reason = self.available()
        if reason:
            raise RuntimeError(reason)
        converted = self._runnable(case)
        conversions, converted.fresh = converted.fresh, 0
        data, how, extra = self._model_for(case, converted)
        conversions += extra
        outputs, facts = self._invoke(case, data)
        self._info = {"conversion": how, "converter": self.converter_name, "compilations": conversions,
                      "recurrence": [op for op in converted.ops if op in RECURRENT_OPS], "tflite_ops": converted.ops,
                      "precision": PRECISION, "reduced_precision_defaults": reduced_precision_allowed(), **facts}
        if converted.warnings:
            self._info["converter_warnings"] = converted.warnings
        return outputs

    def repro_model(self, case: Case, device: str) -> tuple[bytes, dict[str, np.ndarray]]:
        """The .tflite bytes with the case's weights placed, and the feeds by input name (``REPRO_RUNNER``
        returns the outputs in ``case.output_names`` order). A stateful case's earlier call is not in it."""
        converted = self._runnable(case)
        data, _, _ = self._model_for(case, converted)
        runner, _ = runners(interpreter(data))
        static = StaticStructure.of(case, self.policy(case))
        return data, feeds_for(runner, static.names, model_inputs(case))

    def reproducer(self, case: Case, device: str) -> Reproducer:
        """``repro_model`` packed for ``conformance repro``: the .tflite file and a runner that
        invokes it twice on one interpreter and reports the second answer, as ``run`` does."""
        if case.earlier_x is not None:
            raise ValueError(f"{case.id}: the litert reproducer covers one call; a stateful case's earlier "
                             "call runs through a second signature it does not write")
        data, feeds = self.repro_model(case, device)
        how = (f"{self.converter_name} at a static shape {tuple(case.x.shape)}, the case's weights placed in "
               "the flatbuffer's buffers; ai-edge-litert Interpreter with its default op resolver (XNNPACK)")
        return Reproducer("model.tflite", data, feeds, list(case.output_names), REPRO_RUNNER, "ai-edge-litert", how)

    # -- inside --

    def _weights(self, case: Case, given: dict[str, list[np.ndarray]] | None = None) -> dict[str, list[np.ndarray]]:
        """``given`` (``keras_weights`` layout, in ``case.dtype``; default the case's own) in the dtype the
        layers' variables hold (float32 under a mixed policy, into which the values go exactly)."""
        weights = keras_weights(case) if given is None else given
        held = variable_dtype(self.policy(case) or case.dtype)
        if held == case.dtype:
            return weights
        return {name: [widened(a, held) for a in arrays] for name, arrays in weights.items()}

    def _model_for(self, case: Case, converted: Converted) -> tuple[bytes, str, int]:
        """The model holding ``case``'s weights, how it was made, and the conversions that cost."""
        from conformance.adapters.onnx.keras_export import flat_weights

        if converted.slots is None or not self.export_cache:
            data, _ = self.convert(StaticStructure.of(case, self.policy(case)), self._weights(case), case)
            why = converted.how if converted.slots is None else "export_cache off"
            return data, f"converted per case ({why})", 1
        return place(converted.model, converted.slots, flat_weights(self._weights(case))), converted.how, 0

    def _runnable(self, case: Case) -> Converted:
        """The case's conversion; RuntimeError with the converter's or the interpreter's refusal."""
        converted = self._conversion(case)
        if converted.reason or converted.refused:
            raise RuntimeError(converted.reason or converted.refused)
        return converted

    def _conversion(self, case: Case) -> Converted:
        static = StaticStructure.of(case, self.policy(case))
        key = static.key()
        if key not in self._converted:
            self._converted[key] = self._convert_structure(static, case)
        return self._converted[key]

    def _convert_structure(self, static: StaticStructure, case: Case) -> Converted:
        from conformance.adapters.onnx.keras_export import LocateError as ProbeError
        from conformance.adapters.onnx.keras_export import flat_weights, probe_weights

        try:
            probes = probe_weights(case)
        except ProbeError as exc:
            probes = None
            probe_problem = str(exc)
        versions = self.versions()
        path = cached_file(self.cache_kind, static.cache_key(self.cache_kind, versions), ".tflite.cache")
        if probes is None:
            path = None
        started, caught = time.perf_counter(), []

        def make() -> bytes:
            """The conversion, or its refusal (kept too: the same versions refuse the same way)."""
            try:
                data, warned = self.convert(static, self._weights(case, probes), case)
            except Exception as exc:  # noqa: BLE001 - the converter's refusal is the reason
                return pack(b"", {"refusal": first_error_line(f"{type(exc).__name__}: {exc}")})
            caught.extend(warned)
            return pack(data, {"warnings": warned})

        if probes is None:
            data, meta, from_cache = None, {}, False
        else:
            blob, from_cache = read_or_make(path, make)
            data, meta = unpack(blob)
        if "refusal" in meta:
            return Converted(None, None, "conversion failed" + (" (read from disk cache)" if from_cache else ""),
                             reason=f"{self.converter_name}: {meta['refusal']}", fresh=0 if from_cache else 1)
        if data is None:  # no probes (too many weights for the dtype's grid): per case from the start
            data, caught = self.convert(static, self._weights(case), case)
            ops = op_names(data)
            return Converted(None, None, f"converted per case ({probe_problem})", ops, fresh=0, warnings=caught,
                             refused=self._refusal(data, ops))
        ops = op_names(data)
        refusal = self._refusal(data, ops)
        how = ("probe conversion read from disk cache" if from_cache
               else f"probe conversion ({time.perf_counter() - started:.1f}s), case weights placed in its buffers")
        fresh = 0 if from_cache else 1
        warnings = meta.get("warnings", caught)
        if refusal:
            return Converted(data, None, how, ops, None, fresh, warnings, refused=refusal)
        try:
            slots = locate(data, flat_weights(self._weights(case, probes)))
        except LocateError as exc:
            return Converted(data, None, f"weights not located ({exc})", ops, None, fresh, warnings)
        return Converted(data, slots, how, ops, None, fresh, warnings)

    def _refusal(self, data: bytes, ops: list[str]) -> str | None:
        """The interpreter's own words where it will not prepare the model (e.g. Select TF ops): kept
        with the conversion, raised by ``run`` (the runtime refusing a converted model is an error)."""
        try:
            it = interpreter(data)
            it.allocate_tensors()
            runners(it)
        except Exception as exc:  # noqa: BLE001 - its refusal is the reason
            flex = [op for op in ops if op.startswith("Flex")]
            text = str(exc).split(" See instructions")[0].strip()
            held = f" (the {self.converter_name} model holds Select TF ops: {', '.join(flex)})" if flex else ""
            return f"ai-edge-litert interpreter: {text}{held}"
        return None

    def _invoke(self, case: Case, data: bytes) -> tuple[list[np.ndarray], dict[str, Any]]:
        static = StaticStructure.of(case, self.policy(case))
        runner, earlier = runners(interpreter(data))
        feeds = feeds_for(runner, static.names, model_inputs(case))
        if case.earlier_x is not None:
            call(earlier, feeds_for(earlier, static.names[:1], [case.earlier_x]))
            if case.reset_states:
                # The .tflite model has no reset_states signature, and reset_all_variables() resets
                # only variable tensors, not the resource variables a stateful layer's state lives in:
                # a new interpreter starts from the variables' initial (zero) values.
                runner, _ = runners(interpreter(data))
            return call(runner, feeds), {"invokes": 2, "stateful": f"signature {EARLIER!r} on earlier_x, then the "
                                         "main one on x, one interpreter (state in resource variables)"
                                         + ("; reset_states() as a new interpreter" if case.reset_states else "")}
        answers = [call(runner, feeds) for _ in range(self.CALLS)]
        first, last = answers[0], answers[-1]
        agree = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(first, last))
        facts: dict[str, Any] = {"invokes": self.CALLS, "calls_agree": agree}
        if not agree:
            facts["first_call_max_abs_diff"] = max(float(np.max(np.abs(a.astype(np.float64) - b)))
                                                   for a, b in zip(first, last))
        return last, facts


__all__ = ["LiteRTAdapter", "StaticStructure", "REPRO_RUNNER", "locate", "place", "op_names", "is_stateful",
           "is_reduced_precision"]
