"""``litert-tf-keras``: tf_keras (Keras 2) converted by ``tf.lite.TFLiteConverter.from_keras_model``.

The layers are the tf-keras adapter's (``keras.common.make_layers`` with
``keras.tf_keras.tf_keras_activation``: activations passed by name as Keras 2 code does, so
the spec's ``hard_sigmoid`` is tf_keras's legacy one, as in tf-keras), in a functional
``tf_keras.Model`` whose Inputs have the case's static shapes (batch and time included: see
``litert.common``). ``from_keras_model`` saves the model as a SavedModel (tf_keras's legacy
serialization traces each layer's call) and converts it; an LSTM whose function carries tf_keras's
``api_implements`` annotation (tanh/sigmoid, no mask, not stateful, not unrolled) becomes the fused
``UNIDIRECTIONAL_SEQUENCE_LSTM`` kernel, everything else a ``WHILE`` loop
(``run_info["recurrence"]``). The signature's outputs, named after Keras's output layers, are
renamed ``output_N`` in Keras output-list order, as Keras 3's export names them.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from conformance.adapters.contract import missing_module_reason
from conformance.adapters.keras.common import apply_layers, make_layers, mask_source_layer, output_list
from conformance.adapters.keras.tf_keras import tf_keras_activation
from conformance.adapters.litert.common import (
    EARLIER,
    INTERPRETER_MODULE,
    REPRO_RUNNER,
    LiteRTAdapter,
    StaticStructure,
    rename_outputs,
)
from conformance.matrix.case import Case

__all__ = ["LiteRTTfKerasAdapter", "REPRO_RUNNER"]


def static_model(tf_keras, static: StaticStructure):
    """The functional tf_keras model of ``static``, every Input at its case's shape; its layers; and the
    model of a stateful case's earlier call: the same one, its time axis left free (the two signatures
    give the lengths), or where a layer unrolls (over a defined length only) one over the same layers
    at the earlier call's length."""
    structure = static.structure
    top, layers = make_layers(tf_keras, structure, tf_keras_activation)
    source = mask_source_layer(tf_keras, structure, layers)
    free_time = static.earlier_shape is not None and structure.timesteps is None

    def model_at(shapes) -> Any:
        inputs = []
        for n, (name, shape) in enumerate(zip(static.names, shapes)):
            if n == 0 and free_time:
                shape = (shape[0], None, *shape[2:])
            dtype = {"mask": "bool", "tokens": "int32"}.get(name, structure.dtype)
            inputs.append(tf_keras.Input(shape=shape[1:], batch_size=shape[0], dtype=dtype, name=name))
        return tf_keras.Model(inputs=inputs, outputs=output_list(apply_layers(structure, top, inputs, source)))

    model = model_at(static.shapes)
    earlier = model if static.earlier_shape is None or free_time else model_at([static.earlier_shape])
    return model, layers, earlier


def convert_two_calls(tf, model, earlier_model, static: StaticStructure) -> bytes:
    """A stateful model with a second signature (``EARLIER``) at the earlier call's shape, sharing the
    layer's state variables: ``from_keras_model`` converts one call signature only, so the model is
    saved with both (``tf.saved_model.save``, as ``from_keras_model`` saves it) and converted by
    ``from_saved_model``, resource variables enabled (``from_keras_model``'s default too)."""
    import tempfile

    def signature(called, shape) -> Any:
        def outputs(x):
            return {f"output_{n}": t for n, t in enumerate(output_list(called(x, training=False)))}

        return tf.function(outputs).get_concrete_function(tf.TensorSpec(shape, model.inputs[0].dtype,
                                                                        name=static.names[0]))

    main, earlier = signature(model, static.shapes[0]), signature(earlier_model, static.earlier_shape)
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(model, tmp, signatures={"serving_default": main, EARLIER: earlier})
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serving_default", EARLIER])
        converter.experimental_enable_resource_variables = True
        return converter.convert()


class LiteRTTfKerasAdapter(LiteRTAdapter):
    """tf_keras's ``TFLiteConverter.from_keras_model`` in the ai-edge-litert interpreter."""

    name = "litert-tf-keras"
    requires = ("tensorflow", "tf_keras", "ai_edge_litert")
    cache_kind = "litert-tf-keras"
    converter_name = "TFLiteConverter.from_keras_model"

    def available(self) -> str | None:
        return missing_module_reason("tensorflow", "tf_keras", INTERPRETER_MODULE)

    def frontend_versions(self) -> dict[str, str]:
        import tensorflow as tf
        import tf_keras

        return {"tf_keras": tf_keras.__version__, "tensorflow": tf.__version__}

    def convert(self, static: StaticStructure, weights: dict[str, list[np.ndarray]], case: Case
                ) -> tuple[bytes, list[str]]:
        import tensorflow as tf
        import tf_keras

        model, layers, earlier_model = static_model(tf_keras, static)
        for name, arrays in weights.items():
            layers[name].set_weights(arrays)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if static.earlier_shape is None:
                data = rename_outputs(tf.lite.TFLiteConverter.from_keras_model(model).convert(),
                                      list(model.output_names))
            else:
                data = convert_two_calls(tf, model, earlier_model, static)
        tf_keras.backend.clear_session()
        return data, sorted({f"{w.category.__name__}: {w.message}".splitlines()[0] for w in caught})
