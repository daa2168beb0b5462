"""``litert-keras``: Keras 3 (TensorFlow backend) exported with ``model.export(path, format="litert")``.

The model is the one the keras-tensorflow adapter builds (``keras.keras3.keras3_model``: real
layers, a real ``Bidirectional``, the mask as an Input passed as ``mask=`` or derived by a
``Masking`` / ``Embedding(mask_zero=True)`` layer), the backend claimed the same way
(``claim_keras_backend``). The export is the documented one: ``model.export(path,
format="litert", input_signature=[...])`` (keras/src/export/litert.py: an ``ExportArchive`` of
``model.__call__(training=False)``, then ``TFLiteConverter.from_saved_model`` with
``supported_ops=[TFLITE_BUILTINS, SELECT_TF_OPS]`` and resource variables enabled), given a
static signature: with a free batch or time axis Keras's RNN loop becomes Flex ``TensorList`` ops
that the ai-edge-litert interpreter cannot run (``litert.common``). A model that still needs
Select TF ops (float64, float16 and bfloat16 layers, here) converts, and the interpreter refuses
it: an error with the interpreter's words (the runtime refusing a converted model), listed as a
known difference.

Stateful layers export as resource variables (``VAR_HANDLE``/``READ_VARIABLE``/``ASSIGN_VARIABLE``
initialized by ``CALL_ONCE``): the state carries from one ``invoke()`` to the next, as the
Keras layer's does from one call to the next.
"""

from __future__ import annotations

import contextlib
import functools
import io
import tempfile
import warnings
from pathlib import Path

import numpy as np

from conformance.adapters.contract import missing_module_reason
from conformance.adapters.keras.common import BuiltModel
from conformance.adapters.keras.keras3 import claim_keras_backend, keras3_model, loaded_keras_backend
from conformance.adapters.litert.common import EARLIER, INTERPRETER_MODULE, REPRO_RUNNER, LiteRTAdapter, StaticStructure
from conformance.matrix.case import Case

BACKEND = "tensorflow"

__all__ = ["LiteRTKerasAdapter", "REPRO_RUNNER"]


def export_two_calls(keras, tf, built: BuiltModel, signature: list, static: StaticStructure, tmp: Path) -> bytes:
    """A stateful model with a second signature (``EARLIER``) at the earlier call's shape: what
    ``export(format="litert")`` does (keras/src/export/litert.py ``_convert_to_tflite``: an
    ExportArchive endpoint of ``model.__call__(training=False)``, ``from_saved_model``, builtins and
    Select TF ops, resource variables), with two endpoints sharing the layer's state variables (an
    unrolled layer's model has a fixed length: the earlier call gets one over the same layers at its own)."""
    model, earlier_model = built.model, built.at_length(static.earlier_shape[1]).model
    archive = keras.export.ExportArchive()
    archive.track(model)
    # Not "serve": from_saved_model keeps only that endpoint (as serving_default) of a model.export
    # artifact given several signature keys (tensorflow/lite/python/lite.py, from_saved_model).
    archive.add_endpoint("main", functools.partial(model.__call__, training=False), input_signature=[signature])
    earlier = [tf.TensorSpec(shape=static.earlier_shape, dtype=model.inputs[0].dtype, name=static.names[0])]
    archive.add_endpoint(EARLIER, functools.partial(earlier_model.__call__, training=False),
                         input_signature=[earlier])
    archive.write_out(str(tmp / "saved"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp / "saved"), signature_keys=["main", EARLIER])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    converter.experimental_enable_resource_variables = True
    return converter.convert()


class LiteRTKerasAdapter(LiteRTAdapter):
    """Keras 3's ``export(format="litert")`` (tensorflow backend) in the ai-edge-litert interpreter."""

    name = "litert-keras"
    requires = ("keras", "tensorflow", "ai_edge_litert")
    cache_kind = "litert-keras"
    converter_name = "keras export(format='litert')"

    def available(self) -> str | None:
        other = claim_keras_backend(BACKEND)
        if other is not None:
            return (f"keras already imported with backend {other} in this process; litert-keras "
                    f"exports with the {BACKEND} backend (run it in its own process)")
        reason = missing_module_reason("tensorflow", "keras", INTERPRETER_MODULE)
        if reason:
            return reason
        return None if loaded_keras_backend() == BACKEND else f"keras did not load the {BACKEND} backend"

    def frontend_versions(self) -> dict[str, str]:
        import keras
        import tensorflow

        return {"keras": keras.__version__, "keras backend": BACKEND, "tensorflow": tensorflow.__version__}

    def convert(self, static: StaticStructure, weights: dict[str, list[np.ndarray]], case: Case
                ) -> tuple[bytes, list[str]]:
        import keras
        import tensorflow as tf

        built = keras3_model(keras, static.structure)
        for name, arrays in weights.items():
            built.layers[name].set_weights(arrays)
        signature = [tf.TensorSpec(shape=shape, dtype=tensor.dtype, name=name)
                     for shape, tensor, name in zip(static.shapes, built.model.inputs, static.names)]
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(record=True) as caught, \
                contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("always")
            if static.earlier_shape is None:
                path = Path(tmp) / "model.tflite"
                built.model.export(str(path), format="litert", verbose=False, input_signature=[signature])
                data = path.read_bytes()
            else:
                data = export_two_calls(keras, tf, built, signature, static, Path(tmp))
        return data, sorted({f"{w.category.__name__}: {w.message}".splitlines()[0] for w in caught})
