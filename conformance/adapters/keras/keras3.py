"""Keras 3 itself, on each of its backends: ``keras-tensorflow``, ``keras-jax``, ``keras-torch``.

Keras 3 fixes its backend when ``keras`` is first imported (from the
``KERAS_BACKEND`` variable), so a process holds one backend: each adapter sets
the variable before its first import, and reports itself unavailable if
``keras`` is already loaded with another backend. Run each in its own process.

The layers are the real ones (``keras.layers.LSTM(...)`` with the spec's
arguments, a real ``Bidirectional``, a functional ``Model`` for stacks and
encoder-decoder pairs); see ``keras.common`` for how they are built. What
differs between the backends is one small object each (``TensorflowBackend``,
``JaxBackend``, ``TorchBackend``), chosen once, when the adapter is made.

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

Float16 and bfloat16 rows run under Keras's mixed policies (``keras.common``): float32
variables, compute in the row's dtype, on every backend; JAX needs no switch for them. On
torch's CPU, Keras 3.15 itself still computes a float16 ``ops.matmul`` in float32 and rounds the
product to float16 (backend/torch/numpy.py ``matmul``: "torch.matmul doesn't support float16 with
cpu"), which the generic loop (SimpleRNN, masked layers) goes through; the backend's own
``_fallback_lstm/_gru`` call ``torch.matmul`` in float16. Torch's ``numpy()`` refuses bfloat16:
such outputs come back as ``ml_dtypes.bfloat16`` arrays through float32 (the torch adapter's
``host_array``, one home for that crossing).

Calls: TensorFlow and torch run the functional model eagerly (torch under
``no_grad``), the case's weights swapped in with ``set_weights``; JAX runs
``model.stateless_call`` under ``jax.jit`` with the weights as arguments, the
path ``predict`` takes (see ``keras.common``), so they are never assigned to
the variables: they go to the device with the inputs, as one buffer
(``conformance.adapters.xla.pack``), and ``run_info["compilations"]`` counts
the XLA compilations each case made.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from conformance.adapters import xla
from conformance.adapters.contract import Adapter, Reproducer, missing_module_reason, reduced_precision_allowed
from conformance.adapters.keras.common import (
    BuiltModel,
    KerasModels,
    Structure,
    build_model,
    cudnn_args_ok,
    cudnn_mask_ok,
    keras_weights,
    set_case_weights,
    tensorflow_call,
    tensorflow_gpu_name,
    tensorflow_precision_setting,
    tensorflow_sees_gpu,
    tensorflow_tf32_rule,
)
from conformance.adapters.keras.repro import keras_reproducer
from conformance.matrix.case import Case
from conformance.matrix.spec import LayerSpec

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


def keras3_model(keras: Any, structure: Structure) -> BuiltModel:
    """The functional Keras 3 model of ``structure``, the spec's activations mapped."""
    return build_model(keras, structure, keras_activation)


# --- one backend per process -----------------------------------------------------------------


def loaded_keras_backend() -> str | None:
    """The backend of an already imported ``keras``, or None if keras is not loaded."""
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    try:
        return keras.backend.backend()
    except Exception:  # noqa: BLE001 - a half-imported keras: trust what it was told
        return os.environ.get("KERAS_BACKEND", "tensorflow")


def claim_keras_backend(backend: str) -> str | None:
    """Ask for ``backend`` before keras's first import (``KERAS_BACKEND``); the backend an
    already imported keras holds when it is another one (keras fixes it per process)."""
    loaded = loaded_keras_backend()
    if loaded is None:
        os.environ["KERAS_BACKEND"] = backend
        return None
    return None if loaded == backend else loaded


def keras3_unavailable(backend: str) -> str | None:
    """Why Keras 3 on ``backend`` cannot run in this process, or None."""
    other = claim_keras_backend(backend)
    if other is not None:
        return (f"keras already imported with backend {other} in this process; "
                "run each keras adapter in its own process")
    if backend == "jax":
        xla.use_persistent_cache()
    reason = missing_module_reason(backend, "keras")
    if reason:
        return reason
    loaded = loaded_keras_backend()
    return None if loaded == backend else f"keras imported with backend {loaded}, not {backend}"


def keras3(backend: str) -> Any:
    """The ``keras`` module on ``backend``; RuntimeError with the reason where it can't be had."""
    reason = keras3_unavailable(backend)
    if reason:
        raise RuntimeError(reason)
    import keras

    return keras


# --- what differs per backend ----------------------------------------------------------------


class Keras3Backend(Protocol):
    """What one Keras 3 backend does its own way. ``name`` is also the module to import."""

    name: str

    def gpu_seen(self) -> bool:
        """Whether the backend itself sees a GPU."""

    def gpu_name(self) -> str:
        """The GPU's name as the backend reports it."""

    def keras_device(self, device: str) -> str:
        """The ``keras.device`` name for ``cpu`` / ``cuda``."""

    def precision(self, stack: contextlib.ExitStack, dtype: str, device: str) -> None:
        """TF32 off for the float32 verdict (SEMANTICS.md §6) and whatever float64 needs."""

    def precision_setting(self, device: str) -> str | None:
        """What ``precision`` switches on ``device`` (``KerasCall.precision_setting``)."""

    def set_weights(self, built: BuiltModel, case: Case) -> None:
        """``case``'s weights into ``built``, or held for ``call`` (``KerasCall.set_weights``)."""

    def call(self, built: BuiltModel, inputs: list[np.ndarray]) -> Callable[[], Any]:
        """The inputs made the backend's tensors: a closure of the model call alone, returning
        once it is computed."""

    def compilations(self) -> int | None:
        """Compilations so far in this process; None for a backend that runs eagerly."""

    def to_numpy(self, tensor: Any) -> np.ndarray:
        """A result tensor on the host."""

    def kernel(self, layer: LayerSpec, device: str, mask: np.ndarray | None) -> str:
        """``cudnn``, ``generic`` or ``backend_loop``: what Keras 3.15 runs for one layer
        (keras/src/layers/rnn/{lstm,gru}.py ``inner_loop`` -> ``backend.lstm/gru``, which
        raise NotImplementedError, i.e. the generic ``backend.rnn`` loop, unless the
        backend's own conditions hold)."""


class TensorflowBackend:
    """Keras 3 on TensorFlow: eager calls, the GPU waited for (``tensorflow_call``)."""

    name = "tensorflow"

    def gpu_seen(self) -> bool:
        return tensorflow_sees_gpu()

    def gpu_name(self) -> str:
        return tensorflow_gpu_name()

    def keras_device(self, device: str) -> str:
        return "gpu:0" if device == "cuda" else "cpu:0"

    def precision(self, stack: contextlib.ExitStack, dtype: str, device: str) -> None:
        if device == "cuda":
            tensorflow_tf32_rule()

    def precision_setting(self, device: str) -> str | None:
        return tensorflow_precision_setting(device)

    def set_weights(self, built: BuiltModel, case: Case) -> None:
        set_case_weights(built, case)

    def call(self, built: BuiltModel, inputs: list[np.ndarray]) -> Callable[[], Any]:
        tensors = keras_tensors(inputs)
        return tensorflow_call(lambda: built.model(tensors, training=False), tensors)

    def compilations(self) -> int | None:
        return None

    def to_numpy(self, tensor: Any) -> np.ndarray:
        from keras import ops

        return ops.convert_to_numpy(tensor)

    def kernel(self, layer: LayerSpec, device: str, mask: np.ndarray | None) -> str:
        """backend/tensorflow/rnn.py ``cudnn_ok``: tanh/sigmoid, use_bias, GRU reset_after,
        a GPU, and a right-padded mask without empty rows (``_assert_valid_mask`` raises
        in eager mode -> fallback)."""
        return "cudnn" if device == "cuda" and cudnn_args_ok(layer) and cudnn_mask_ok(mask) else "generic"


class JaxBackend:
    """Keras 3 on JAX: ``stateless_call`` under ``jax.jit``; float64 under ``jax.enable_x64``."""

    name = "jax"

    def gpu_seen(self) -> bool:
        import jax

        try:
            return bool(jax.devices("gpu"))
        except RuntimeError:
            return False

    def gpu_name(self) -> str:
        import jax

        return jax.devices("gpu")[0].device_kind

    def keras_device(self, device: str) -> str:
        return "gpu:0" if device == "cuda" else "cpu:0"

    def precision(self, stack: contextlib.ExitStack, dtype: str, device: str) -> None:
        """A scoped matmul precision on the GPU; x64 for float64, else JAX silently computes in float32."""
        import jax

        if device == "cuda":
            stack.enter_context(jax.default_matmul_precision(jax_matmul_precision()))
        if dtype == "float64":
            stack.enter_context(jax.enable_x64(True))

    def precision_setting(self, device: str) -> str | None:
        return f"default_matmul_precision={jax_matmul_precision()}" if device == "cuda" else None

    def set_weights(self, built: BuiltModel, case: Case) -> None:
        """Held for ``call``, which passes them to ``stateless_call`` (assigning them to the
        variables would cost a device transfer per weight, for values the call never reads)."""
        if built.compiled is None:
            built.compiled = JaxCall.of(built)
        built.compiled.weights = keras_weights(case, built.variable_dtype)

    def call(self, built: BuiltModel, inputs: list[np.ndarray]) -> Callable[[], Any]:
        """``model.stateless_call`` under ``jax.jit``: what ``predict`` compiles, weights as arguments.
        The inputs in the weights' dtype travel packed with them; the rest on their own, each
        in its own dtype: a bool mask, int tokens, and float16/bfloat16 inputs beside the float32
        variables of a mixed policy (packed with them they would reach the model as float32)."""
        import jax
        import jax.numpy as jnp

        held: JaxCall = built.compiled
        trainable = [held.weights[name][k] for name, k in held.order]
        apart = tuple(n for n, a in enumerate(inputs) if a.dtype != trainable[0].dtype)
        floats = [a for n, a in enumerate(inputs) if n not in apart]
        packed, layout = xla.pack([trainable, floats], trainable[0].dtype.name)
        # jnp.asarray, as keras.ops.convert_to_tensor does: on the device keras.device chose.
        packed = jnp.asarray(packed)
        others = [jnp.asarray(inputs[n]) for n in apart]

        def call() -> Any:
            outputs, non_trainable = held.jitted(packed, others, held.state(), layout, apart)
            held.keep(non_trainable)
            return jax.block_until_ready(outputs)

        return call

    def compilations(self) -> int | None:
        return xla.compilations()

    def to_numpy(self, tensor: Any) -> np.ndarray:
        from keras import ops

        return ops.convert_to_numpy(tensor)

    def kernel(self, layer: LayerSpec, device: str, mask: np.ndarray | None) -> str:
        """backend/jax/rnn.py: LSTM, no mask, tanh/sigmoid/use_bias, GPU ->
        ``jax.experimental.rnn`` (cuDNN); GRU reset_after without mask -> the backend's
        own ``lax.scan`` GRU on any device ("backend_loop")."""
        if layer.cell == "simple_rnn" or mask is not None:
            return "generic"
        if layer.cell == "lstm":
            return "cudnn" if device == "cuda" and cudnn_args_ok(layer) else "generic"
        return "backend_loop" if layer.reset_after else "generic"


class TorchBackend:
    """Keras 3 on torch: eager calls under ``no_grad``, the GPU waited for."""

    name = "torch"

    def gpu_seen(self) -> bool:
        import torch

        return torch.cuda.is_available()

    def gpu_name(self) -> str:
        import torch

        return torch.cuda.get_device_name(0)

    def keras_device(self, device: str) -> str:
        """Plain "cpu"/"cuda", without an index: under ``keras.device("cpu:0")`` keras-torch 3.15
        fails to build any RNN layer (backend/torch/core.py ``Variable._initialize``:
        ``Parameter(...).to("cpu:0")`` copies to a plain tensor, and ``ParameterDict``
        then rejects the int seed state with "Only Tensors of floating point and complex
        dtype can require gradients")."""
        return "cuda" if device == "cuda" else "cpu"

    def precision(self, stack: contextlib.ExitStack, dtype: str, device: str) -> None:
        if device == "cuda":
            _torch_tf32_rule()

    def precision_setting(self, device: str) -> str | None:
        return f"allow_tf32={reduced_precision_allowed()}" if device == "cuda" else None

    def set_weights(self, built: BuiltModel, case: Case) -> None:
        set_case_weights(built, case)

    def call(self, built: BuiltModel, inputs: list[np.ndarray]) -> Callable[[], Any]:
        """The model under ``no_grad``; on CUDA, waiting for its kernels (they run asynchronously)."""
        import torch

        tensors = keras_tensors(inputs)
        on_gpu = tensors[0].is_cuda

        def call() -> Any:
            with torch.no_grad():
                result = built.model(tensors, training=False)
            if on_gpu:
                torch.cuda.synchronize()
            return result

        return call

    def to_numpy(self, tensor: Any) -> np.ndarray:
        # keras.ops.convert_to_numpy goes through np.array(tensor), which numpy 2
        # warns about for torch's __array__ (no copy keyword): take torch's own route.
        from conformance.adapters.torch.adapter import host_array

        return host_array(tensor)

    def compilations(self) -> int | None:
        return None

    def kernel(self, layer: LayerSpec, device: str, mask: np.ndarray | None) -> str:
        """backend/torch/rnn.py ``lstm``/``gru``: no mask (GRU also reset_after); then
        cuDNN on CUDA with tanh/sigmoid/use_bias, else ``_fallback_lstm/_gru``, a loop
        of the backend's own ("backend_loop")."""
        if layer.cell == "simple_rnn" or mask is not None or (layer.cell == "gru" and not layer.reset_after):
            return "generic"
        return "cudnn" if device == "cuda" and cudnn_args_ok(layer) else "backend_loop"


@dataclass
class JaxCall:
    """One model's jitted ``stateless_call`` (``BuiltModel.compiled`` on JAX), and the weights
    ``set_weights`` holds for the next call.

    ``order``: ``model.trainable_variables`` as (layer name, index in its ``keras_weights``
    list); ``non_trainable``: the model's non-trainable values (the seed generators' states).
    Where a layer is stateful, each call's new values are assigned back to the variables,
    as ``predict`` does (the JAX trainer's ``jax_state_sync``), and the next call reads them
    again: so this path carries exactly what ``predict`` carries. With Keras 3.15 that is not
    the RNN's state, which the model does not track (FINDINGS 15).
    """

    jitted: Callable[..., Any]
    order: list[tuple[str, int]]
    non_trainable: list[Any]
    variables: list[Any]
    stateful: bool
    weights: dict[str, list[np.ndarray]] = field(default_factory=dict)

    @classmethod
    def of(cls, built: BuiltModel) -> JaxCall:
        import jax

        model = built.model
        position = {id(v): (name, k) for name, layer in built.layers.items() for k, v in enumerate(layer.weights)}

        def call(packed, others, non_trainable, layout: xla.Layout, apart: tuple[int, ...]):
            trainable, inputs = xla.unpack(packed, layout)
            for n, array in zip(apart, others):
                inputs.insert(n, array)
            return model.stateless_call(trainable, non_trainable, inputs, training=False)

        stateful = any(getattr(layer, "stateful", False) for layer in built.layers.values())
        return cls(jax.jit(call, static_argnames=("layout", "apart")),
                   [position[id(v)] for v in model.trainable_variables],
                   [v.value for v in model.non_trainable_variables], list(model.non_trainable_variables), stateful)

    def state(self) -> list[Any]:
        """The non-trainable values the next call starts from."""
        return [v.value for v in self.variables] if self.stateful else self.non_trainable

    def keep(self, non_trainable: list[Any]) -> None:
        """A call's new non-trainable values into the variables, where a layer is stateful."""
        if self.stateful:
            for variable, value in zip(self.variables, non_trainable):
                variable.assign(value)


def keras_tensors(inputs: list[np.ndarray]) -> list[Any]:
    """The inputs as the backend's tensors, each in its own dtype (the mask stays bool)."""
    from keras import ops

    return [ops.convert_to_tensor(a, dtype=a.dtype.name) for a in inputs]


@functools.cache
def _torch_tf32_rule() -> None:
    """TF32 off for the float32 verdict (SEMANTICS.md §6): process-wide switches, set once."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = reduced_precision_allowed()
    torch.backends.cudnn.allow_tf32 = reduced_precision_allowed()


def jax_matmul_precision() -> str:
    """JAX's "default" matmul precision may be TF32 on GPUs; "highest" is true float32."""
    return "default" if reduced_precision_allowed() else "highest"


# --- Keras 3's way, and the adapters ---------------------------------------------------------


class Keras3Call:
    """Keras 3 on ``backend``, as ``KerasModels`` calls it (``keras.common.KerasCall``)."""

    custom_notes = {"legacy_hard_sigmoid": LEGACY_HARD_SIGMOID_NOTE}

    def __init__(self, backend: Keras3Backend) -> None:
        self.backend = backend

    def build(self, structure: Structure, inputs: list[np.ndarray]) -> BuiltModel:
        return keras3_model(keras3(self.backend.name), structure)

    def scope(self, dtype: str, device: str) -> AbstractContextManager:
        stack = contextlib.ExitStack()
        stack.enter_context(keras3(self.backend.name).device(self.backend.keras_device(device)))
        self.backend.precision(stack, dtype, device)
        return stack

    def set_weights(self, built: BuiltModel, case: Case) -> None:
        self.backend.set_weights(built, case)

    def forward(self, built: BuiltModel, inputs: list[np.ndarray]) -> Callable[[], Any]:
        return self.backend.call(built, inputs)

    def to_numpy(self, tensor: Any) -> np.ndarray:
        return self.backend.to_numpy(tensor)

    def kernel(self, layer: LayerSpec, device: str, mask: np.ndarray | None) -> str:
        return self.backend.kernel(layer, device, mask)

    def precision_setting(self, device: str) -> str | None:
        return self.backend.precision_setting(device)


class Keras3Adapter(Adapter):
    """Keras 3 on one backend; the registered classes below only name it."""

    declared_devices = ("cpu", "cuda")
    compiles_per_structure = True  # a Keras model built per structure (keras-jax: and XLA-compiled per shape)

    def __init__(self, backend: Keras3Backend) -> None:
        self.backend = backend
        self.models = KerasModels(Keras3Call(backend))
        self._compilations: int | None = None

    def available(self) -> str | None:
        return keras3_unavailable(self.backend.name)

    def versions(self) -> dict[str, str]:
        keras = keras3(self.backend.name)
        backend = importlib.import_module(self.backend.name)
        return {"keras": keras.__version__, self.backend.name: backend.__version__}

    def devices(self) -> list[str]:
        keras3(self.backend.name)  # the backend's own import, under the backend keras holds
        return ["cpu", "cuda"] if self.backend.gpu_seen() else ["cpu"]

    def device_name(self, device: str) -> str:
        return self.backend.gpu_name() if device == "cuda" else device

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        before = self.backend.compilations()
        outputs = self.models.run(case, device)
        self._compilations = None if before is None else self.backend.compilations() - before
        return outputs

    def bare_forward(self, case: Case, device: str) -> Callable[[], Any]:
        return self.models.bare_forward(case, device)

    def reproducer(self, case: Case, device: str) -> Reproducer:
        """``model.keras`` and a script that loads it with Keras on this backend
        (``conformance.adapters.keras.repro``)."""
        keras = keras3(self.backend.name)
        with self.models.call.scope(case.dtype, device):
            return keras_reproducer(keras, "keras", self.backend.name, case, device,
                                    self.models.policy(case.dtype), keras_activation)

    def last_run_info(self) -> dict:
        """``KerasModels.last_run_info``, and ``compilations`` on a backend that compiles."""
        info = self.models.last_run_info()
        if self._compilations is not None:
            info["compilations"] = self._compilations
        return info


class KerasTensorflowAdapter(Keras3Adapter):
    name = "keras-tensorflow"
    requires = ("keras", "tensorflow")

    def __init__(self) -> None:
        super().__init__(TensorflowBackend())


class KerasJaxAdapter(Keras3Adapter):
    name = "keras-jax"
    requires = ("keras", "jax")

    def __init__(self) -> None:
        super().__init__(JaxBackend())


class KerasTorchAdapter(Keras3Adapter):
    name = "keras-torch"
    requires = ("keras", "torch")

    def __init__(self) -> None:
        super().__init__(TorchBackend())
