"""The keras-tensorflow adapter's Keras 3 model converted by OpenVINO's TensorFlow frontend and run
by its CPU plugin: ``openvino-keras``.

The model is the one the keras-tensorflow adapter builds (``keras.keras3.keras3_model``: real
layers, a real ``Bidirectional``, the mask as an Input passed as ``mask=`` or derived by a
``Masking`` / ``Embedding(mask_zero=True)`` layer), the backend claimed the same way. The
conversion is the one OpenVINO documents for a Keras 3 model ("Converting a Keras Model"): export
a TensorFlow SavedModel (``model.export(path, format="tf_saved_model")``, batch and time left
free), then ``openvino.convert_model(path)``. Keras's RNN loop becomes a TF ``While`` over
``TensorList`` ops, which the frontend turns into an OpenVINO ``Loop`` (a ``TensorIterator`` in
the CPU plugin). Keras's other documented path, ``model.export(path, format="openvino")``
(``ov.convert_model`` of the export's concrete function), refuses every recurrent layer here
(FINDINGS.md, Deployment rows): the row takes the path that converts.

Weights: the frontend folds the layers' variables into constants (inside the loop's body), so
each structure is converted once with *probe* weights (``onnx.keras_export.probe_weights``:
distinct values), every IR constant holding them is located element by element (``locate``:
each probe value found verbatim, nothing but zeros beside them), and each case's own weights are
written into those bytes of the IR's weights file before it is read and compiled: the compiled
model holds the case's weights as constants, as a user's converted model does. Where location
fails the case is converted with its own weights. Conversions (and refusals) are kept on disk
(``conformance.caches``, ``openvino-keras/``), keyed by structure and the keras,
tensorflow and openvino versions: a warm run reads them and only compiles.

Precision: the shared OpenVINO settings (``conformance.adapters.openvino.runtime``): the f32 hint
for the float32 verdict, recorded with what the compiled model reads back. float16 / bfloat16
rows (Keras's mixed policies) run only where the model compiled with the row's own hint computes
in that dtype. Stateful layers: the frontend freezes every variable, the layer's state among
them, so the converted model keeps no state between calls (``supports``).

Devices: ``cpu`` only (OpenVINO's "GPU" is an Intel GPU).
"""

from __future__ import annotations

import contextlib
import functools
import io
import tempfile
import time
import warnings
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conformance import semantics
from conformance.adapters.contract import Adapter, Reproducer, missing_module_reason, reduced_precision_allowed
from conformance.adapters.keras.common import Structure, input_names, keras_weights, model_inputs, widened
from conformance.adapters.keras.keras3 import claim_keras_backend, keras3_model, loaded_keras_backend
from conformance.adapters.openvino import runtime
from conformance.caches import cached_file, read_or_make
from conformance.matrix.case import Case

HOW = ("keras Model.export(format='tf_saved_model'), then openvino.convert_model(saved model), "
       "TensorFlow frontend; CPU plugin")
CACHE_KIND = "openvino-keras"
CACHE_FORMAT = 1
REFUSED = b"refused by the converter: "  # a cached refusal (an IR blob starts with its xml's length)
BACKEND = "tensorflow"
POLICIES = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}  # as the keras adapters run them
IR_FLOATS = {"f32": np.dtype("float32"), "f64": np.dtype("float64"), "f16": np.dtype("float16")}


class LocateError(RuntimeError):
    """The probe weights could not be located unambiguously in the converted model's constants."""


# --- conversion ---------------------------------------------------------------------------


def convert(structure: Structure, weights: dict[str, list[np.ndarray]]) -> bytes:
    """The IR blob (``runtime.ir_bytes``) of ``structure`` holding ``weights``: the Keras
    model exported as a SavedModel (batch and time free, inputs named by ``input_names``), then
    converted by ``openvino.convert_model``."""
    import keras
    import tensorflow as tf

    openvino = runtime.openvino_module()
    built = keras3_model(keras, structure)
    for name, arrays in weights.items():
        built.layers[name].set_weights(arrays)
    signature = [[tf.TensorSpec(tensor.shape, tensor.dtype, name=name)
                  for tensor, name in zip(built.model.inputs, input_names(structure))]]
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # TensorFlow's SavedModel writer warns of untraced functions
        built.model.export(str(Path(tmp) / "saved"), format="tf_saved_model", verbose=False,
                           input_signature=signature)
        return runtime.ir_bytes(openvino.convert_model(str(Path(tmp) / "saved")))


def cache_key(structure: Structure, versions: dict[str, str]) -> list:
    s = structure
    return [CACHE_FORMAT, versions, s.spec.to_dict(), s.features, s.decoder_features, s.dtype, s.policy, s.has_mask,
            s.has_initial_state, s.timesteps, s.decoder_timesteps, s.mask_source, s.vocabulary, s.batch]


# --- the case's weights in the IR's constants ------------------------------------------------


@dataclass
class Slot:
    """One IR constant holding probe values: where its bytes lie in the weights file, its element
    dtype, and for each element the index into the flat Keras weight vector (-1: keep ``base``)."""

    offset: int
    dtype: np.dtype
    index: np.ndarray
    base: np.ndarray

    def value(self, flat: np.ndarray) -> np.ndarray:
        placed = self.index >= 0
        value = np.where(placed, flat[np.maximum(self.index, 0)], self.base).astype(self.dtype)
        if not np.array_equal(value[placed].astype(np.float64), flat[self.index[placed]].astype(np.float64)):
            raise LocateError(f"the constant at {self.offset} ({self.dtype}) cannot hold the weights exactly")
        return value


def float_constants(xml: bytes) -> list[tuple[int, np.dtype, int]]:
    """(offset, dtype, count) of every floating-point ``Const`` layer of the IR, loop bodies included."""
    found = set()
    for layer in ElementTree.fromstring(xml).iter("layer"):
        data = layer.find("data")
        if layer.get("type") == "Const" and data is not None and data.get("element_type") in IR_FLOATS:
            dtype = IR_FLOATS[data.get("element_type")]
            found.add((int(data.get("offset")), dtype, int(data.get("size")) // dtype.itemsize))
    return sorted(found, key=lambda item: item[0])


def locate(blob: bytes, probe: np.ndarray) -> list[Slot]:
    """Every constant made of probe values (and zeros); LocateError where that is not clean: a
    constant mixing them with other non-zero values, or a probe value found in none."""
    xml, weights = runtime.split_ir(blob)
    wide = probe.astype(np.float64)
    order = np.argsort(wide, kind="stable")
    ordered = wide[order]
    slots, seen = [], np.zeros(probe.size, dtype=bool)
    for offset, dtype, count in float_constants(xml):
        values = np.frombuffer(weights, dtype=dtype, count=count, offset=offset)
        position = np.clip(np.searchsorted(ordered, values.astype(np.float64)), 0, ordered.size - 1)
        found = ordered[position] == values.astype(np.float64)
        if not found.any():
            continue
        if np.any(values[~found] != 0):
            raise LocateError(f"the constant at {offset} mixes {int(found.sum())} weight values with other values")
        index = np.where(found, order[position], -1).astype(np.int64)
        seen[index[found]] = True
        slots.append(Slot(offset, dtype, index, values.copy()))
    if not seen.all():
        raise LocateError(f"{int((~seen).sum())} of {probe.size} Keras weight values appear in no constant verbatim")
    return slots


def place(blob: bytes, slots: list[Slot], flat: np.ndarray) -> bytes:
    """``blob`` with each slot's constant rewritten to hold ``flat``'s values (same size, same place)."""
    xml, weights = runtime.split_ir(blob)
    patched = bytearray(weights)
    for slot in slots:
        raw = slot.value(flat).tobytes()
        patched[slot.offset:slot.offset + len(raw)] = raw
    return blob[:len(blob) - len(weights)] + bytes(patched)


def flat_weights(weights: dict[str, list[np.ndarray]]) -> np.ndarray:
    return np.concatenate([a.ravel() for arrays in weights.values() for a in arrays])


# --- the adapter ----------------------------------------------------------------------------


@dataclass
class Converted:
    """One structure's probe conversion: the IR blob and its weight slots (None: convert per case)."""

    blob: bytes | None
    slots: list[Slot] | None
    how: str
    refusal: str | None = None  # the converter's own words where it refused the structure
    fresh: int = 0  # conversions made for it not yet counted by a run


def output_position(port, default: int) -> int:
    """A converted output's place in the Keras output list: the SavedModel names them ``output_N``."""
    name = next(iter(sorted(port.get_names())), "")
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if name.startswith("output_") and tail.isdigit() else default


class OpenvinoKerasAdapter(runtime.FrontendRow, Adapter):
    """OpenVINO's TensorFlow frontend on the keras-tensorflow adapter's model; see the module docstring."""

    name = "openvino-keras"
    requires = ("keras", "tensorflow", "openvino")
    compiles_per_structure = True  # a SavedModel export and a conversion per structure (~5-10 s here)

    def __init__(self) -> None:
        self._converted: dict[tuple, Converted] = {}
        self._info: dict = {}
        self._precision_refusals: dict[tuple[str, str], str | None] = {}
        self.export_cache = True

    def available(self) -> str | None:
        other = claim_keras_backend(BACKEND)
        if other is not None:
            return (f"keras already imported with backend {other} in this process; {self.name} "
                    f"exports with the {BACKEND} backend (run it in its own process)")
        reason = missing_module_reason("tensorflow", "keras", "openvino")
        if reason:
            return reason
        return None if loaded_keras_backend() == BACKEND else f"keras did not load the {BACKEND} backend"

    def versions(self) -> dict[str, str]:
        return versions()

    def structure(self, case: Case) -> Structure:
        return Structure.of(case, "cpu", POLICIES.get(case.dtype))

    def supports(self, case: Case) -> str | None:
        """Stateful layers; whatever the converter refuses, in its words (the probe conversion made
        here is the one ``run`` uses); a reduced-precision row the CPU plugin would compute in f32."""
        reason = semantics.stateful_reason(
            case, "the model OpenVINO's TensorFlow frontend converts (every variable frozen into a constant)")
        if reason or self.available():
            return reason  # an unavailable framework: run() reports it
        reason = self._conversion(case).refusal
        if reason or case.dtype not in runtime.DTYPE_HINTS or reduced_precision_allowed():
            return reason
        return self.precision_refusal(case)

    def precision_refusal(self, case: Case) -> str | None:
        """Why the case's model compiled with its dtype's hint would not compute in that dtype (read
        back from the compiled model; once per cell and dtype)."""
        key = (case.cell, case.dtype)
        if key not in self._precision_refusals:
            compiled = runtime.core().compile_model(runtime.read_ir(self._model_for(case)[0]), "CPU",
                                                    runtime.compile_config(runtime.DTYPE_HINTS[case.dtype]))
            self._precision_refusals[key] = runtime.precision_refusal(compiled, case.dtype, "cpu")
        return self._precision_refusals[key]

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        reason = self.available()
        if reason:
            raise RuntimeError(reason)
        blob, how, conversions = self._model_for(case)
        compiled = runtime.core().compile_model(runtime.read_ir(blob), runtime.OPENVINO_DEVICES[device],
                                                runtime.compile_config(runtime.DTYPE_HINTS.get(case.dtype, "f32")))
        self._info = {"converter": HOW, "conversion": how, "compilations": conversions,
                      "default_inference_precision_hint": runtime.default_precision_hint(device),
                      **runtime.compiled_info(compiled)}
        results = compiled.create_infer_request().infer(self.feeds(case))
        ports = sorted(enumerate(compiled.outputs), key=lambda item: output_position(item[1], item[0]))
        return [results[port] for _, port in ports]  # never cast: a wrong dtype is OpenVINO's

    def feeds(self, case: Case) -> dict[str, np.ndarray]:
        """The case's arrays by the converted model's input names (the SavedModel keeps ``input_names``);
        tokens as the int32 the Embedding's Input declares."""
        names = input_names(self.structure(case))
        return {name: array.astype(np.int32) if name == "tokens" else runtime.feed_array(array)
                for name, array in zip(names, model_inputs(case))}

    def case_weights(self, case: Case) -> dict[str, list[np.ndarray]]:
        """The case's weights as the model's layers take them (the conversion step a porting bug
        would be in: the sensitivity test injects one here), in the variables' dtype (float32
        under a mixed policy, into which the case's values go exactly)."""
        return self._held(case, keras_weights(case))

    def _held(self, case: Case, weights: dict[str, list[np.ndarray]]) -> dict[str, list[np.ndarray]]:
        if case.dtype not in POLICIES:
            return weights
        return {name: [widened(a, "float32") for a in arrays] for name, arrays in weights.items()}

    # --- inside ---------------------------------------------------------------------------------

    def _model_for(self, case: Case) -> tuple[bytes, str, int]:
        """The IR holding the case's weights, how it was made, and the conversions that cost."""
        converted = self._conversion(case)
        if converted.refusal:
            raise RuntimeError(converted.refusal)
        conversions, converted.fresh = converted.fresh, 0
        if converted.slots is None or not self.export_cache:
            why = converted.how if converted.slots is None else "export_cache off"
            return convert(self.structure(case), self.case_weights(case)), f"converted per case ({why})", \
                conversions + 1
        return place(converted.blob, converted.slots, flat_weights(self.case_weights(case))), converted.how, \
            conversions

    def _conversion(self, case: Case) -> Converted:
        structure = self.structure(case)
        if structure.key() not in self._converted:
            self._converted[structure.key()] = self._convert_structure(structure, case)
        return self._converted[structure.key()]

    def _convert_structure(self, structure: Structure, case: Case) -> Converted:
        """Convert with probe weights (or read that conversion, or the refusal, from disk) and locate them."""
        from conformance.adapters.onnx.keras_export import probe_weights

        probes = self._held(case, probe_weights(case))
        path = cached_file(CACHE_KIND, cache_key(structure, versions()), ".ir") if self.export_cache else None
        started = time.perf_counter()

        def make() -> bytes:
            try:
                return convert(structure, probes)
            except Exception as exc:  # noqa: BLE001 - the converter's refusal, whatever its type, is the reason
                return REFUSED + f"openvino.convert_model: {runtime.conversion_failure(exc)}".encode()

        blob, from_cache = read_or_make(path, make)
        fresh = 0 if from_cache else 1
        if blob.startswith(REFUSED):
            return Converted(None, None, "refused", blob[len(REFUSED):].decode(), fresh)
        made = "read from disk cache" if from_cache else f"({time.perf_counter() - started:.1f}s)"
        how = f"probe conversion {made}, the case's weights placed in its constants"
        try:
            return Converted(blob, locate(blob, flat_weights(probes)), how, fresh=fresh)
        except LocateError as exc:
            return Converted(None, None, f"weights not located ({exc})", fresh=fresh)

    # --- conformance repro ----------------------------------------------------------------------

    def reproducer(self, case: Case, device: str) -> Reproducer:
        """The converted model as OpenVINO IR (model.xml, model.bin) holding the case's weights, its
        inputs by name, and a runner needing only openvino and numpy."""
        if case.earlier_x is not None:
            raise ValueError(f"{case.id}: {self.name} runs no stateful case")
        blob, how, _ = self._model_for(case)
        xml, weights = runtime.split_ir(blob)
        runner = REPRO_RUNNER.format(hint=runtime.DTYPE_HINTS.get(case.dtype, "f32"))
        return Reproducer("model.xml", xml, self.feeds(case), list(case.output_names), runner, "openvino",
                          f"{HOW}: {how}", side_files={"model.bin": weights})


@functools.cache
def versions() -> dict[str, str]:
    import keras
    import tensorflow

    openvino = runtime.openvino_module()
    return {"keras": keras.__version__, "keras backend": BACKEND, "tensorflow": tensorflow.__version__,
            "openvino": openvino.__version__}


REPRO_RUNNER = '''
def run_model(model_path, feeds, device):
    """The converted model (OpenVINO IR, model.xml + model.bin) compiled as the suite compiles it:
    the CPU plugin, INFERENCE_PRECISION_HINT {hint}, one inference thread. Returns the outputs in
    Keras's output-list order (the SavedModel names them output_0, output_1, ...)."""
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(core.read_model(model_path), {{"cpu": "CPU"}}[device],
                                  {{"INFERENCE_PRECISION_HINT": "{hint}", "INFERENCE_NUM_THREADS": 1}})
    results = compiled.create_infer_request().infer(feeds)
    ports = sorted(compiled.outputs, key=lambda port: int(port.get_any_name().rsplit("_", 1)[1]))
    return [results[port] for port in ports]
'''
