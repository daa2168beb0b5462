"""The standalone reproducer of a Keras result (``conformance repro``), shared by the Keras 3
adapters (every backend) and tf-keras: the functional model of the case's structure, built as
``build_model`` builds it, the case's weights set, saved as ``model.keras``; the script loads it
with that Keras alone (on the adapter's backend), calls it on the case's inputs (a stateful
case's earlier call first, its states reset as the adapter resets them) and returns the output
list. What a Keras user attaches to a bug report: the layer's own saved form, not this suite's
code. The model file is the layers' config and weights, so a difference that lives in how the
adapter calls the model (tf-keras runs eager layer calls, keras-jax a jitted ``stateless_call``)
is reproduced by the plain ``model(inputs)`` a user writes, which is the call the script shows.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from conformance.adapters.contract import Reproducer
from conformance.adapters.keras.common import (
    Structure,
    build_model,
    earlier_inputs,
    input_names,
    model_inputs,
    set_case_weights,
    variable_dtype,
)
from conformance.matrix.case import Case


def keras_reproducer(module: Any, library: str, backend: str | None, case: Case, device: str, policy: str,
                     activation: Callable[[str], Any]) -> Reproducer:
    """``case`` as ``model.keras`` of ``module`` (``keras`` on ``backend``, or ``tf_keras``), built with the
    layers' dtype ``policy``, and the script that loads and calls it."""
    structure = Structure.of(case, device, policy)
    built = build_model(module, structure, activation)
    held = variable_dtype(policy)
    built.variable_dtype = None if held == case.dtype else held
    set_case_weights(built, case)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        built.model.save(path)
        model_bytes = path.read_bytes()
    feeds = dict(zip(input_names(structure), model_inputs(case)))
    if case.earlier_x is not None:
        feeds["earlier.x"] = earlier_inputs(case)[0]
    runner = RUNNER.format(library=library, backend=repr(backend), reset=bool(case.reset_states),
                           names=input_names(structure), x64=case.dtype == "float64")
    how = (f"the {library} functional model of the case (the layers the adapter builds, the case's weights), "
           f"saved with model.save{'' if backend is None else f'; KERAS_BACKEND={backend}'}")
    return Reproducer("model.keras", model_bytes, {k: float32_if_bfloat16(v) for k, v in feeds.items()},
                      list(case.output_names), runner, library, how)


def float32_if_bfloat16(array: np.ndarray) -> np.ndarray:
    """npz holds no ml_dtypes bfloat16: such arrays travel as float32 (exact); the script casts each
    feed to its Input's dtype."""
    return array.astype(np.float32) if array.dtype.name == "bfloat16" else array


RUNNER = '''
def run_model(model_path, feeds, device):
    """The saved model, loaded by {library} alone and called as a user calls it: model(inputs).
    A stateful case is called twice, as the suite does: on earlier.x from zero states, then
    (its states reset where the case says so) on the case's inputs."""
    import os

    backend = {backend}  # Keras 3's backend as the adapter ran it (None: tf_keras)
    if backend is not None:
        os.environ["KERAS_BACKEND"] = backend
    if backend == "jax" and {x64}:
        import jax

        jax.config.update("jax_enable_x64", True)  # as the adapter: else JAX computes float64 in float32
    import {library} as keras

    def legacy_hard_sigmoid(x):  # the suite's Keras 2 hard sigmoid, for a model that uses it
        return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)

    model = keras.models.load_model(model_path, compile=False,
                                    custom_objects={{"legacy_hard_sigmoid": legacy_hard_sigmoid}})

    def as_input(array, layer_input):  # the Input's dtype: a name in Keras 3, a tf.DType in tf_keras
        return np.asarray(array).astype(getattr(layer_input.dtype, "name", layer_input.dtype))

    def call(arrays):
        result = model([as_input(a, i) for a, i in zip(arrays, model.inputs)], training=False)
        result = list(result) if isinstance(result, (list, tuple)) else [result]
        return [np.asarray(keras.ops.convert_to_numpy(t)) if hasattr(keras, "ops") else t.numpy() for t in result]

    def reset_states():
        for layer in model.layers:
            for rnn in (layer.forward_layer, layer.backward_layer) if hasattr(layer, "forward_layer") else (layer,):
                if getattr(rnn, "stateful", False):
                    rnn.reset_states()

    if "earlier.x" in feeds:
        reset_states()
        call([feeds["earlier.x"]])
        if {reset}:
            reset_states()
    outputs = call([feeds[name] for name in {names!r}])
    # numpy has no bfloat16: such outputs are shown as float32 (exact)
    return [o.astype(np.float32) if o.dtype.name == "bfloat16" else o for o in outputs]
'''
