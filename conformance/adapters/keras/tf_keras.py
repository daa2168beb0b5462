"""Keras 2 as ``tf_keras`` (the Keras that ``tf.keras`` meant up to TF 2.15): ``tf-keras``.

The same models as the Keras 3 adapters (``keras.common`` builds them), on
``tf_keras.layers``, through the same ``KerasModels``; ``TfKerasCall`` is what
tf_keras does its own way. What differs is the activations: in tf_keras
``hard_sigmoid`` *is* the legacy one, ``clip(0.2x + 0.5, 0, 1)``
(tf_keras/src/backend.py ``hard_sigmoid``), so the spec's
``legacy_hard_sigmoid`` maps to the built-in name ``"hard_sigmoid"``, while the
spec's ``hard_sigmoid`` (Keras 3's ``relu6(x + 3) / 6``) has no tf_keras
built-in: it is passed as the callable a user would write with TensorFlow ops,
and ``last_run_info()`` says so for those cases.

Importing ``tf_keras`` does not touch Keras 3, so this adapter can share a
process with any one Keras 3 adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from conformance.adapters.contract import Adapter, missing_module_reason
from conformance.adapters.keras.common import (
    BuiltModel,
    KerasModels,
    Structure,
    build_eager,
    cudnn_args_ok,
    cudnn_mask_ok,
    set_case_weights,
    tensorflow_call,
    tensorflow_gpu_name,
    tensorflow_precision_setting,
    tensorflow_sees_gpu,
    tensorflow_tf32_rule,
)
from conformance.matrix.case import Case
from conformance.matrix.spec import LayerSpec

TF_KERAS_BUILTIN_ACTIVATIONS = ("tanh", "sigmoid", "relu", "linear")
KERAS3_HARD_SIGMOID_NOTE = ("hard_sigmoid: tf_keras's built-in is the legacy 0.2x + 0.5 one; Keras 3's "
                            "passed as the callable tf.nn.relu6(x + 3) / 6")


def keras3_hard_sigmoid(x: Any) -> Any:
    """Keras 3's hard sigmoid, written with TensorFlow ops as a tf_keras user would."""
    import tensorflow as tf

    return tf.nn.relu6(x + 3.0) / 6.0


def tf_keras_activation(name: str) -> Any:
    """The ``activation=`` argument for a spec name (a string for tf_keras built-ins)."""
    if name in TF_KERAS_BUILTIN_ACTIVATIONS:
        return name
    if name == "legacy_hard_sigmoid":
        return "hard_sigmoid"
    if name == "hard_sigmoid":
        return keras3_hard_sigmoid
    raise ValueError(f"activation={name!r} has no tf_keras mapping")


def tf_keras_kernel(layer: LayerSpec, device: str, mask: np.ndarray | None) -> str:
    """cudnn or generic, by tf_keras's own rule for one layer.

    tf_keras/src/layers/rnn/lstm.py and gru.py: ``_could_use_gpu_kernel``
    (tanh/sigmoid, use_bias, GRU reset_after, no unroll) and, in eager mode, a
    GPU plus ``gru_lstm_utils.is_cudnn_supported_inputs`` (right-padded mask,
    no fully masked row); otherwise ``standard_lstm``/``standard_gru``, the
    generic ``backend.rnn`` loop.
    """
    cudnn = device == "cuda" and cudnn_args_ok(layer) and cudnn_mask_ok(mask)
    return "cudnn" if cudnn else "generic"


class TfKerasCall:
    """tf_keras's way, as ``KerasModels`` calls it (``keras.common.KerasCall``)."""

    custom_notes = {"hard_sigmoid": KERAS3_HARD_SIGMOID_NOTE}

    def build(self, structure: Structure, inputs: list[np.ndarray]) -> BuiltModel:
        """Eager layer calls, not a functional Model: building tf_keras's functional
        LSTM/GRU traces both its cuDNN and generic implementations (~1.7 s a model
        here, against ~0.1 s for an eager first call). The layers are the same."""
        import tf_keras

        built = build_eager(tf_keras, structure, tf_keras_activation)
        self.forward(built, inputs)()
        return built

    def scope(self, dtype: str, device: str) -> AbstractContextManager:
        import tensorflow as tf

        if device == "cuda":
            tensorflow_tf32_rule()
        return tf.device("/GPU:0" if device == "cuda" else "/CPU:0")

    def set_weights(self, built: BuiltModel, case: Case) -> None:
        set_case_weights(built, case)

    def forward(self, built: BuiltModel, inputs: list[np.ndarray]) -> Callable[[], Any]:
        import tensorflow as tf

        # tf_keras's RNN.__call__ takes initial states only as tensors, not numpy arrays.
        tensors = [tf.constant(a) for a in inputs]
        return tensorflow_call(lambda: built.apply(tensors), tensors)

    def to_numpy(self, tensor: Any) -> np.ndarray:
        return tensor.numpy()

    def kernel(self, layer: LayerSpec, device: str, mask: np.ndarray | None) -> str:
        return tf_keras_kernel(layer, device, mask)

    def precision_setting(self, device: str) -> str | None:
        return tensorflow_precision_setting(device)


class TfKerasAdapter(Adapter):
    name = "tf-keras"
    declared_devices = ("cpu", "cuda")

    def __init__(self) -> None:
        self.models = KerasModels(TfKerasCall())

    def available(self) -> str | None:
        return missing_module_reason("tensorflow", "tf_keras")

    def versions(self) -> dict[str, str]:
        import tensorflow as tf
        import tf_keras

        return {"tf_keras": tf_keras.__version__, "tensorflow": tf.__version__}

    def devices(self) -> list[str]:
        return ["cpu", "cuda"] if tensorflow_sees_gpu() else ["cpu"]

    def device_name(self, device: str) -> str:
        return tensorflow_gpu_name() if device == "cuda" else device

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        return self.models.run(case, device)

    def bare_forward(self, case: Case, device: str) -> Callable[[], Any]:
        return self.models.bare_forward(case, device)

    def last_run_info(self) -> dict:
        return self.models.last_run_info()
