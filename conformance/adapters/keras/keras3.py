"""Keras 3 itself, on each of its backends: ``keras-tensorflow``, ``keras-jax``, ``keras-torch``.

Keras 3 fixes its backend when ``keras`` is first imported (from the
``KERAS_BACKEND`` variable), so a process holds one backend: each adapter sets
the variable before its first import, and reports itself unavailable if
``keras`` is already loaded with another backend. Run each in its own process.

The layers are the real ones (``keras.layers.LSTM(...)`` with the spec's
arguments, a real ``Bidirectional``, a functional ``Model`` for stacks and
encoder-decoder pairs); see ``keras_common`` for how they are built.

Activations: Keras 3's built-ins serve tanh, sigmoid, relu, linear and
``hard_sigmoid``, which Keras 3 defines as ``relu6(x + 3) / 6`` =
``clip(x/6 + 1/2, 0, 1)`` (keras/src/backend/*/nn.py). The spec's
``legacy_hard_sigmoid`` (``clip(0.2x + 0.5, 0, 1)``, the Keras <= 2 one) is no
Keras 3 built-in: it is passed as the callable a user would write with
``keras.ops``, and ``last_run_info()`` says so for those cases.

Float64 on JAX needs ``jax_enable_x64`` (else JAX silently computes in
float32): float64 cases run inside ``jax.enable_x64(True)``; float32 cases run
with JAX's defaults, as a user's would. Even so, Keras 3.15 computes parts of
a float64 layer in float32 on JAX and torch: ``keras.backend.result_type``
maps float64 to float32 on every backend but TensorFlow
(keras/src/backend/common/dtypes.py ``BIT64_TO_BIT32_DTYPE``), which torch's
``ops.matmul`` and JAX's ``ops.tanh`` go through. Those cases fail (or, for
JAX's SimpleRNN, error in ``lax.scan``) as the findings they are.

Calls: TensorFlow and torch run the functional model eagerly (torch under
``no_grad``); JAX runs ``model.stateless_call`` under ``jax.jit`` with the
weights as arguments, the path ``predict`` takes (see ``keras_common``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from conformance.adapters.contract import missing_module_reason, tf32_allowed
from conformance.adapters.keras.common import (
    BuiltModel,
    KerasFamilyAdapter,
    cudnn_args_ok,
    cudnn_mask_ok,
    mask_reaching,
    tensorflow_call,
    tensorflow_gpu_name,
)
from conformance.matrix.case import Case
from conformance.matrix.spec import LayerSpec

BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
KERAS_BUILTIN_ACTIVATIONS = ("tanh", "sigmoid", "relu", "linear", "hard_sigmoid")
LEGACY_HARD_SIGMOID_NOTE = ("legacy_hard_sigmoid: no Keras 3 built-in; passed as the callable "
                            "keras.ops.clip(0.2 * x + 0.5, 0, 1)")


def legacy_hard_sigmoid(x: Any) -> Any:
    """Keras <= 2's hard sigmoid, written with ``keras.ops`` as a Keras 3 user would."""
    from keras import ops

    return ops.clip(0.2 * x + 0.5, 0.0, 1.0)


def keras_activation(name: str) -> Any:
    """The ``activation=`` argument for a spec name (a string for Keras 3 built-ins)."""
    if name in KERAS_BUILTIN_ACTIVATIONS:
        return name
    if name == "legacy_hard_sigmoid":
        return legacy_hard_sigmoid
    raise ValueError(f"activation={name!r} has no Keras 3 mapping")


def loaded_keras_backend() -> str | None:
    """The backend of an already imported ``keras``, or None if keras is not loaded."""
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    try:
        return keras.backend.backend()
    except Exception:  # noqa: BLE001 - a half-imported keras: trust what it was told
        return os.environ.get("KERAS_BACKEND", "tensorflow")


def keras3_kernel(backend: str, layer: LayerSpec, device: str, mask: np.ndarray | None) -> str:
    """Which implementation Keras 3.15 runs for one layer: cudnn, generic or backend_loop.

    From keras/src/layers/rnn/{lstm,gru}.py ``inner_loop`` -> ``backend.lstm/gru``,
    which raise NotImplementedError (-> the generic ``backend.rnn`` loop) unless:
    - tensorflow (backend/tensorflow/rnn.py ``cudnn_ok``): tanh/sigmoid, use_bias,
      GRU reset_after, a GPU, and a right-padded mask without empty rows
      (``_assert_valid_mask`` raises in eager mode -> fallback);
    - torch (backend/torch/rnn.py ``lstm``/``gru``): no mask (GRU also reset_after);
      then cuDNN on CUDA with tanh/sigmoid/use_bias, else ``_fallback_lstm/_gru``,
      a loop of the backend's own ("backend_loop");
    - jax (backend/jax/rnn.py): LSTM, no mask, tanh/sigmoid/use_bias, GPU ->
      ``jax.experimental.rnn`` (cuDNN); GRU reset_after without mask -> the
      backend's own ``lax.scan`` GRU on any device ("backend_loop").
    """
    cuda = device == "cuda"
    if layer.cell == "simple_rnn":
        return "generic"
    if backend == "tensorflow":
        return "cudnn" if cuda and cudnn_args_ok(layer) and cudnn_mask_ok(mask) else "generic"
    if mask is not None:
        return "generic"
    if backend == "torch":
        if layer.cell == "gru" and not layer.reset_after:
            return "generic"
        return "cudnn" if cuda and cudnn_args_ok(layer) else "backend_loop"
    if layer.cell == "lstm":
        return "cudnn" if cuda and cudnn_args_ok(layer) else "generic"
    return "backend_loop" if layer.reset_after else "generic"


class _Keras3Adapter(KerasFamilyAdapter):
    """One Keras 3 backend; subclasses only name it."""

    backend = "tensorflow"

    def __init__(self) -> None:
        super().__init__()
        self._tf32_off = False

    def available(self) -> str | None:
        loaded = loaded_keras_backend()
        if loaded is not None and loaded != self.backend:
            return (f"keras already imported with backend {loaded} in this process; "
                    "run each keras adapter in its own process")
        if loaded is None:
            os.environ["KERAS_BACKEND"] = self.backend
        reason = missing_module_reason(BACKEND_MODULES[self.backend], "keras")
        if reason:
            return reason
        loaded = loaded_keras_backend()
        if loaded != self.backend:
            return f"keras imported with backend {loaded}, not {self.backend}"
        return None

    def _module(self) -> Any:
        reason = self.available()
        if reason:
            raise RuntimeError(reason)
        import keras

        return keras

    def versions(self) -> dict[str, str]:
        import importlib

        keras = self._module()
        backend = importlib.import_module(BACKEND_MODULES[self.backend])
        return {"keras": keras.__version__, self.backend: backend.__version__}

    def devices(self) -> list[str]:
        return ["cpu", "cuda"] if self._gpu_seen() else ["cpu"]

    def _gpu_seen(self) -> bool:
        self._module()
        if self.backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_physical_devices("GPU"))
        if self.backend == "torch":
            import torch

            return torch.cuda.is_available()
        import jax

        try:
            return bool(jax.devices("gpu"))
        except RuntimeError:
            return False

    def device_name(self, device: str) -> str:
        if device != "cuda":
            return device
        if self.backend == "torch":
            import torch

            return torch.cuda.get_device_name(0)
        if self.backend == "jax":
            import jax

            return jax.devices("gpu")[0].device_kind
        return tensorflow_gpu_name()

    def _activation(self, name: str) -> Any:
        return keras_activation(name)

    def _custom_activations(self, case: Case) -> dict[str, str]:
        if "legacy_hard_sigmoid" in self.used_activations(case):
            return {"legacy_hard_sigmoid": LEGACY_HARD_SIGMOID_NOTE}
        return {}

    def _scope(self, dtype: str, device: str) -> AbstractContextManager:
        keras = self._module()
        stack = contextlib.ExitStack()
        stack.enter_context(keras.device(self._keras_device(device)))
        if device == "cuda":
            self._disable_tf32(stack)
        if self.backend == "jax" and dtype == "float64":
            import jax

            stack.enter_context(jax.enable_x64(True))
        return stack

    def _keras_device(self, device: str) -> str:
        """The ``keras.device`` name. Torch gets "cpu"/"cuda" without an index: under
        ``keras.device("cpu:0")`` keras-torch 3.15 fails to build any RNN layer
        (backend/torch/core.py ``Variable._initialize``: ``Parameter(...).to("cpu:0")``
        copies to a plain tensor, and ``ParameterDict`` then rejects the int seed state
        with "Only Tensors of floating point and complex dtype can require gradients").
        """
        if self.backend == "torch":
            return "cuda" if device == "cuda" else "cpu"
        return "gpu:0" if device == "cuda" else "cpu:0"

    def _disable_tf32(self, stack: contextlib.ExitStack) -> None:
        """TF32 matmuls off for the float32 verdict (SEMANTICS.md §6)."""
        if self.backend == "jax":
            import jax

            stack.enter_context(jax.default_matmul_precision("default" if tf32_allowed() else "highest"))
        elif not self._tf32_off and self.backend == "torch":
            import torch

            torch.backends.cuda.matmul.allow_tf32 = tf32_allowed()
            torch.backends.cudnn.allow_tf32 = tf32_allowed()
        elif not self._tf32_off:
            import tensorflow as tf

            tf.config.experimental.enable_tensor_float_32_execution(tf32_allowed())
        self._tf32_off = True

    def _forward(self, built: BuiltModel, inputs: list[np.ndarray]) -> Callable[[], Any]:
        ops = self._module().ops
        tensors = [ops.convert_to_tensor(a, dtype=a.dtype.name) for a in inputs]
        if self.backend == "jax":
            return self._jax_forward(built, tensors)
        if self.backend == "torch":
            return _torch_call(built.model, tensors)
        return tensorflow_call(lambda: built.model(tensors, training=False), tensors)

    def _to_numpy(self, tensor: Any) -> np.ndarray:
        if self.backend == "torch":
            # keras.ops.convert_to_numpy goes through np.array(tensor), which numpy 2
            # warns about for torch's __array__ (no copy keyword): take torch's own route.
            return tensor.detach().cpu().numpy()
        return self._module().ops.convert_to_numpy(tensor)

    def _jax_forward(self, built: BuiltModel, tensors: list[Any]) -> Callable[[], Any]:
        """``model.stateless_call`` under ``jax.jit``: what ``predict`` compiles, weights as arguments."""
        import jax

        model = built.model
        if built.compiled is None:

            def call(trainable, non_trainable, arrays):
                return model.stateless_call(trainable, non_trainable, arrays, training=False)[0]

            built.compiled = jax.jit(call)
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        return lambda: jax.block_until_ready(built.compiled(trainable, non_trainable, tensors))

    def _kernels(self, case: Case, device: str) -> dict[str, str]:
        return {name: keras3_kernel(self.backend, layer, device, mask_reaching(case.spec, name, case.mask))
                for name, layer in case.spec.sublayers().items()}


class KerasTensorflowAdapter(_Keras3Adapter):
    name = "keras-tensorflow"
    backend = "tensorflow"


class KerasJaxAdapter(_Keras3Adapter):
    name = "keras-jax"
    backend = "jax"


class KerasTorchAdapter(_Keras3Adapter):
    name = "keras-torch"
    backend = "torch"


def _torch_call(model: Any, tensors: list[Any]) -> Callable[[], Any]:
    """The model under ``no_grad``; on CUDA, waiting for its kernels (they run asynchronously)."""
    import torch

    on_gpu = tensors[0].is_cuda

    def call() -> Any:
        with torch.no_grad():
            result = model(tensors, training=False)
        if on_gpu:
            torch.cuda.synchronize()
        return result

    return call
