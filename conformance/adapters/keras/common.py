"""Real Keras models built from specs: shared by the Keras 3 and the tf_keras adapters.

Keras 3 (``keras``) and Keras 2 (``tf_keras``) spell everything used here the
same way (``layers.LSTM(...)``, ``layers.Bidirectional``, ``Input``, ``Model``,
``set_weights``), so the builders take the module as an argument and import
nothing themselves. The layers get the spec's own arguments: Keras applies its
own rules to them (``Bidirectional`` forcing ``zero_output_for_mask``, say),
which is what is under test. What differs between the Keras is a ``KerasCall``
(``keras3.Keras3Call``, ``tf_keras.TfKerasCall``): how a spec's activation name
maps to the framework (the two hard sigmoids are defined differently), how to
build, place and call the model, and which kernel it picks. ``KerasModels``
does the rest: the cache, the weights, the inputs, the output list, run_info.

One model is built per *structure* (spec, input widths, dtype, which
optional inputs exist, device) and cached; the time and batch axes are left
``None`` so that one model serves every shape (the time axis is fixed where a
layer unrolls: Keras unrolls only over a defined length; a stateful case's earlier
call, of its own length, then goes through a model over the same layers,
``BuiltModel.at_length``, so the state it leaves carries). Each case then only swaps its
weights in with ``set_weights`` (the fixtures are in Keras layout already; Keras 3
on JAX passes them to ``stateless_call`` instead) and calls the model. Keras 3
gets a functional ``Model``; tf_keras calls the same layers eagerly (see
``TfKerasCall.build`` for why).

How the call runs is the adapter's choice, by what was measured here: with
~460 structures for 560 runs almost every structure runs once, so a compiled
path only pays where the framework compiles anyway (JAX's ``lax.scan`` costs
the same compile eagerly or under ``jax.jit``); TensorFlow and torch run
eagerly (a ``tf.function`` trace costs ~0.5 s against ~0.07 s for an eager call).

Reduced precision: a float16 or bfloat16 row runs as a Keras user runs one, under the
mixed policy (``DTYPE_POLICIES``: ``mixed_float16`` / ``mixed_bfloat16``, given to every
layer as its ``dtype``): the variables are float32 and hold the case's values exactly
(``set_case_weights`` casts them up, losslessly), every layer computes in the reduced
dtype, and the model's Inputs are in it. A layer's plain ``dtype="float16"`` (variables
in float16 too) gives the same bits on every Keras here
(tests/test_keras_reduced_precision.py). ``run_info["dtype_policy"]`` names the policy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from conformance.adapters.contract import reduced_precision_allowed
from conformance.matrix.case import MASK_VALUE, Case, is_reduced_precision
from conformance.matrix.spec import AnySpec, BidirectionalSpec, EncoderDecoderSpec, LayerSpec, StackedSpec
from conformance.semantics import first_layer, masked_sublayers, right_padded_lengths

ActivationArg = Callable[[str], Any]

# The order of a Keras RNN layer's get_weights()/set_weights() list.
WEIGHT_ORDER = ("kernel", "recurrent_kernel", "bias")

# The dtype policy the layers of a reduced-precision row get (``KerasModels.policies``): Keras's
# mixed precision, float32 variables and compute in the row's dtype, as users run it. Other
# dtypes are their own policy (variables and compute in that dtype).
DTYPE_POLICIES = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
MIXED_VARIABLE_DTYPE = "float32"


def variable_dtype(policy: str) -> str:
    """The dtype of the variables a layer of ``policy`` holds: float32 under a mixed policy."""
    return MIXED_VARIABLE_DTYPE if policy.startswith("mixed_") else policy


def layer_kwargs(layer: LayerSpec, activation: ActivationArg, dtype: str) -> dict[str, Any]:
    """Constructor arguments of ``layers.SimpleRNN/LSTM/GRU`` for ``layer``.

    ``zero_output_for_mask`` is an argument of the base ``RNN`` layer that the
    three classes forward through ``**kwargs`` (Keras 3 and tf_keras alike).
    """
    kwargs: dict[str, Any] = {
        "units": layer.units,
        "return_sequences": layer.return_sequences,
        "return_state": layer.return_state,
        "go_backwards": layer.go_backwards,
        "activation": activation(layer.activation),
        "use_bias": layer.use_bias,
        "zero_output_for_mask": layer.zero_output_for_mask,
        "unroll": layer.unroll,
        "dropout": layer.dropout,
        "recurrent_dropout": layer.recurrent_dropout,
        "stateful": layer.stateful,
        "dtype": dtype,
        # Every weight is replaced by set_weights; zeros skip the orthogonal
        # initializer's QR, which costs seconds per new shape on JAX.
        "kernel_initializer": "zeros",
        "recurrent_initializer": "zeros",
    }
    if layer.cell != "simple_rnn":
        kwargs["recurrent_activation"] = activation(layer.recurrent_activation)
    if layer.cell == "gru":
        kwargs["reset_after"] = layer.reset_after
    return kwargs


def make_layer(module: Any, layer: LayerSpec, activation: ActivationArg, dtype: str, name: str) -> Any:
    return getattr(module.layers, layer.keras_class)(name=name, **layer_kwargs(layer, activation, dtype))


def weight_list(layer: LayerSpec, weights: dict[str, np.ndarray]) -> list[np.ndarray]:
    """A case's Keras-layout weight dict as the list ``set_weights`` takes."""
    names = WEIGHT_ORDER if layer.use_bias else WEIGHT_ORDER[:2]
    return [weights[name] for name in names]


def output_list(result: Any) -> list[Any]:
    """A Keras call result as a flat list: one tensor becomes ``[tensor]``.

    Keras returns a bare tensor without ``return_state`` and a tuple/list with
    it; ``Bidirectional(merge_mode=None)`` returns the pair of outputs first.
    """
    if isinstance(result, (list, tuple)):
        return [tensor for item in result for tensor in output_list(item)]
    return [result]


@dataclass
class Structure:
    """What decides a built model: everything about a case but its values."""

    spec: AnySpec
    features: int
    decoder_features: int | None
    dtype: str
    has_mask: bool
    has_initial_state: bool
    device: str
    # The time axes' lengths (inputs, decoder inputs) where a layer unrolls, else None:
    # Keras unrolls only over a defined time dimension, so such a model is built per length.
    timesteps: int | None = None
    decoder_timesteps: int | None = None
    # How the mask reaches the layers (``Case.mask_source``): an Input passed as mask=, a
    # Masking layer on x, or an Embedding(mask_zero=True) on int tokens (the model's first
    # Input then; no mask Input in either: Keras propagates the mask the layer derives).
    mask_source: str = "argument"
    vocabulary: int | None = None  # the Embedding's input_dim, with mask_source "embedding"
    # The batch size where a layer is stateful: Keras keeps its state in variables of that batch.
    batch: int | None = None
    # The layers' ``dtype=`` argument: a dtype policy name (``DTYPE_POLICIES``); None: ``dtype``.
    policy: str | None = None

    def __post_init__(self) -> None:
        if self.policy is None:
            self.policy = self.dtype

    @property
    def mask_input(self) -> bool:
        """Whether the model takes the mask as an input of its own."""
        return self.has_mask and self.mask_source == "argument"

    @classmethod
    def of(cls, case: Case, device: str, policy: str | None = None) -> Structure:
        """``case``'s structure; its layers get ``policy`` as their dtype (None: ``case.dtype``)."""
        decoder_features = None if case.decoder_x is None else int(case.decoder_x.shape[2])
        layers = case.spec.sublayers().values()
        unrolls = any(layer.unroll for layer in layers)
        timesteps = case.timesteps if unrolls else None
        decoder_timesteps = int(case.decoder_x.shape[1]) if unrolls and case.decoder_x is not None else None
        vocabulary = None if case.embeddings is None else int(case.embeddings.shape[0])
        batch = case.batch if any(layer.stateful for layer in layers) else None
        return cls(case.spec, case.features, decoder_features, case.dtype, case.mask is not None,
                   case.initial_state is not None, device, timesteps, decoder_timesteps, case.mask_source,
                   vocabulary, batch, policy)

    def key(self) -> tuple:
        return (self.spec, self.features, self.decoder_features, self.dtype, self.has_mask,
                self.has_initial_state, self.device, self.timesteps, self.decoder_timesteps, self.mask_source,
                self.vocabulary, self.batch, self.policy)


@dataclass
class BuiltModel:
    """A callable built once per structure, and the layers holding its weights.

    ``apply(inputs)`` maps ``model_inputs(case)`` (as tensors) to the raw Keras
    result; it is a functional ``Model`` (``model``) or, for eager use, a plain
    function over the layers. ``layers`` maps sub-layer names to RNN layers, and
    ``"embedding"`` to the Embedding where the mask comes from one (``keras_weights``).
    ``variable_dtype``: the dtype of the layers' variables, where it is not the case's
    (float32 under a mixed policy: ``KerasModels._prepared`` sets it).
    """

    apply: Callable[[list[Any]], Any]
    layers: dict[str, Any]
    model: Any = None
    compiled: Any = None
    variable_dtype: str | None = None
    # Where the model's time axis is fixed (an unrolled layer): a model over the same layers
    # (their weights and state) for another number of steps, e.g. a stateful case's earlier call.
    relengthened: Callable[[int], BuiltModel] | None = None
    steps: int | None = None
    _lengths: dict[int, BuiltModel] = field(default_factory=dict, repr=False)

    def at_length(self, steps: int) -> BuiltModel:
        """The model to call on ``steps`` steps: this one unless its time axis is fixed at another
        length, else one built once over the same layers (a stateful layer's state carries)."""
        if self.relengthened is None or steps == self.steps:
            return self
        if steps not in self._lengths:
            other = self._lengths[steps] = self.relengthened(steps)
            other.variable_dtype = self.variable_dtype
        return self._lengths[steps]


def state_count(spec: AnySpec) -> int:
    """How many initial-state tensors the spec takes (Bidirectional: both directions')."""
    copies = 2 if isinstance(spec, BidirectionalSpec) else 1
    return copies * len(first_layer(spec).state_names)


def make_layers(module: Any, structure: Structure, activation: ActivationArg) -> tuple[Any, dict[str, Any]]:
    """The top object to call (an RNN layer, a ``Bidirectional``, or the dict itself) and
    the RNN layers by sub-layer name."""
    spec, dtype = structure.spec, structure.policy
    if isinstance(spec, BidirectionalSpec):
        # dtype on the wrapper too: Bidirectional.call casts both halves to its own compute dtype.
        inner = make_layer(module, spec.layer, activation, dtype, "layer")
        bidi = module.layers.Bidirectional(inner, merge_mode=spec.merge_mode, dtype=dtype)
        return bidi, {"forward": bidi.forward_layer, "backward": bidi.backward_layer}
    layers = {name: make_layer(module, layer, activation, dtype, name)
              for name, layer in spec.sublayers().items()}
    return (layers["layer"] if isinstance(spec, LayerSpec) else layers), layers


def apply_layers(structure: Structure, top: Any, inputs: list[Any], source: Any = None) -> Any:
    """Call the layers on ``inputs`` (``model_inputs`` order), symbolic or eager alike.

    A mask Input is passed to every stacked layer explicitly (the first also gets
    the initial state); a ``source`` layer (``mask_source_layer``) instead goes on
    the first input first, and Keras propagates its mask through the stack. The
    encoder's states become the decoder's ``initial_state``.
    """
    spec, rest = structure.spec, list(inputs)
    x = rest.pop(0)
    if source is not None:
        x = source(x)
    first_kwargs: dict[str, Any] = {}
    if structure.mask_input:
        first_kwargs["mask"] = rest.pop(0)
    if structure.has_initial_state:
        first_kwargs["initial_state"] = [rest.pop(0) for _ in range(state_count(spec))]
    if isinstance(spec, (LayerSpec, BidirectionalSpec)):
        return top(x, **first_kwargs)
    if isinstance(spec, StackedSpec):
        hidden = x
        for n, name in enumerate(spec.sublayers()):
            kwargs = first_kwargs if n == 0 else {k: v for k, v in first_kwargs.items() if k == "mask"}
            hidden = top[name](hidden, **kwargs)
        return hidden
    if isinstance(spec, EncoderDecoderSpec):
        encoder_states = output_list(top["encoder"](x, **first_kwargs))[1:]
        return top["decoder"](rest.pop(0), initial_state=encoder_states)
    raise TypeError(f"unknown spec type {type(spec).__name__}")


def input_names(structure: Structure) -> list[str]:
    """The names of ``symbolic_inputs``, in ``model_inputs`` order (an export keeps them)."""
    names = ["tokens" if structure.mask_source == "embedding" else "x"] + (["mask"] if structure.mask_input else [])
    names += [f"state_{n}" for n in range(state_count(structure.spec))] if structure.has_initial_state else []
    return names + (["decoder_x"] if structure.decoder_features is not None else [])


def symbolic_inputs(module: Any, structure: Structure) -> list[Any]:
    """``Input``s in ``model_inputs`` order, named by ``input_names``; the batch axis left free (fixed
    where a layer is stateful: its state variables have that batch), the time axis too unless a
    layer unrolls (``Structure.timesteps``)."""
    dtype, steps, batch = structure.dtype, structure.timesteps, structure.batch
    units = first_layer(structure.spec).units
    shapes = {"tokens": ((steps,), "int32"), "x": ((steps, structure.features), dtype), "mask": ((steps,), "bool"),
              "decoder_x": ((structure.decoder_timesteps, structure.decoder_features), dtype)}
    inputs = []
    for n, name in enumerate(input_names(structure)):
        shape, kind = shapes.get(name, ((units,), dtype))  # the rest are states
        inputs.append(module.Input(shape=shape, batch_size=batch if n == 0 else None, dtype=kind, name=name))
    return inputs


def build_model(module: Any, structure: Structure, activation: ActivationArg) -> BuiltModel:
    """A functional ``Model`` from ``model_inputs`` to the Keras output list; where a layer unrolls
    (the time axis fixed), ``at_length`` gives one over the same layers for another length."""
    top, layers = make_layers(module, structure, activation)
    source = mask_source_layer(module, structure, layers)

    def functional(steps: int | None) -> BuiltModel:
        at_steps = structure if steps is None else replace(structure, timesteps=steps)
        inputs = symbolic_inputs(module, at_steps)
        model = module.Model(inputs=inputs, outputs=output_list(apply_layers(at_steps, top, inputs, source)))
        return BuiltModel(apply=model, layers=layers, model=model)

    built = functional(None)
    if structure.timesteps is not None:
        built.relengthened, built.steps = functional, structure.timesteps
    return built


def build_eager(module: Any, structure: Structure, activation: ActivationArg) -> BuiltModel:
    """The same layers, called eagerly; they build their weights on the first call."""
    top, layers = make_layers(module, structure, activation)
    source = mask_source_layer(module, structure, layers)
    return BuiltModel(apply=lambda inputs: apply_layers(structure, top, inputs, source), layers=layers)


def mask_source_layer(module: Any, structure: Structure, layers: dict[str, Any]) -> Any:
    """The layer the case's mask comes from, ahead of the recurrent ones, else None:
    ``Masking(mask_value=MASK_VALUE)``, or ``Embedding(mask_zero=True)``, which joins ``layers``
    (its table is a weight, swapped in per case like the others)."""
    if structure.mask_source == "masking":
        return module.layers.Masking(mask_value=MASK_VALUE, dtype=structure.policy)
    if structure.mask_source == "embedding":
        layers["embedding"] = module.layers.Embedding(structure.vocabulary, structure.features, mask_zero=True,
                                                      embeddings_initializer="zeros", dtype=structure.policy,
                                                      name="embedding")
        return layers["embedding"]
    return None


def model_inputs(case: Case) -> list[np.ndarray]:
    """The case's arrays in ``build_model``'s input order: x (the tokens, where an Embedding
    gives x), mask (unless a Masking or Embedding layer derives it), states, decoder_x."""
    arrays = [case.tokens if case.mask_source == "embedding" else case.x]
    if case.mask is not None and case.mask_source == "argument":
        arrays.append(case.mask)
    if case.initial_state is not None:
        arrays.extend(case.initial_state)
    if case.decoder_x is not None:
        arrays.append(case.decoder_x)
    return arrays


def earlier_inputs(case: Case) -> list[np.ndarray]:
    """A stateful case's earlier call, in ``model_inputs`` order (such cases take x alone)."""
    return [case.earlier_x]


def keras_weights(case: Case, dtype: str | None = None) -> dict[str, list[np.ndarray]]:
    """The case's weights as each of ``BuiltModel.layers`` takes them in ``set_weights``:
    Keras layout is the fixtures' layout, so no conversion. ``dtype``: the variables' dtype
    (``variable_dtype``) where it is not ``case.dtype``, e.g. float32 under a mixed policy, into
    which the case's values go exactly (float16 and bfloat16 values are float32 values)."""
    weights = {name: weight_list(layer, case.weights[name]) for name, layer in case.spec.sublayers().items()}
    if case.embeddings is not None:
        weights["embedding"] = [case.embeddings]
    if dtype is not None and dtype != case.dtype:
        weights = {name: [widened(a, dtype) for a in arrays] for name, arrays in weights.items()}
    return weights


def widened(array: np.ndarray, dtype: str) -> np.ndarray:
    """``array`` in the wider ``dtype``; ValueError where a value would change (no rounding here)."""
    wide = array.astype(dtype)
    if wide.dtype.itemsize < array.dtype.itemsize or not np.array_equal(wide.astype(array.dtype), array,
                                                                          equal_nan=True):
        raise ValueError(f"{array.dtype} weights do not go into {dtype} variables exactly")
    return wide


def set_case_weights(built: BuiltModel, case: Case) -> None:
    """Swap the case's weights in, in the variables' dtype (``BuiltModel.variable_dtype``)."""
    for name, arrays in keras_weights(case, built.variable_dtype).items():
        built.layers[name].set_weights(arrays)


def reset_states(built: BuiltModel) -> None:
    """``reset_states()`` on every stateful layer (both Keras have it): its state back to zeros."""
    for layer in built.layers.values():
        if getattr(layer, "stateful", False):
            layer.reset_states()


def mask_reaching(spec: AnySpec, name: str, mask: np.ndarray | None) -> np.ndarray | None:
    """The mask sub-layer ``name`` sees (``conformance.semantics.masked_sublayers``)."""
    return mask if name in masked_sublayers(spec) else None


def cudnn_mask_ok(mask: np.ndarray | None) -> bool:
    """cuDNN's masks: right-padded, no fully masked row (``_assert_valid_mask`` in both Keras)."""
    if mask is None:
        return True
    lengths = right_padded_lengths(mask)
    return bool(lengths is not None and lengths.min() > 0)


def cudnn_args_ok(layer: LayerSpec) -> bool:
    """The constructor arguments every Keras cuDNN path requires (``cudnn_ok`` and friends)."""
    if layer.cell == "simple_rnn":
        return False
    reset_ok = layer.cell != "gru" or layer.reset_after
    return (layer.activation == "tanh" and layer.recurrent_activation == "sigmoid"
            and layer.use_bias and reset_ok)


def summarize_kernels(kernels: dict[str, str]) -> dict[str, Any]:
    """``{"kernel": "cudnn" | "generic" | "mixed", "kernels": per sub-layer}``."""
    kinds = {"cudnn" if k == "cudnn" else "generic" for k in kernels.values()}
    overall = kinds.pop() if len(kinds) == 1 else "mixed"
    return {"kernel": overall, "kernels": dict(kernels)}


def used_activations(spec: AnySpec) -> set[str]:
    """Every activation name the spec's sub-layers use."""
    names: set[str] = set()
    for layer in spec.sublayers().values():
        names.add(layer.activation)
        if layer.cell != "simple_rnn":
            names.add(layer.recurrent_activation)
    return names


class KerasCall(Protocol):
    """What one Keras (a module on a backend) does its own way; ``KerasModels`` does the rest."""

    custom_notes: Mapping[str, str]
    """Spec activation name -> what stands in for it, for names with no built-in."""

    def build(self, structure: Structure, inputs: list[np.ndarray]) -> BuiltModel:
        """A model for ``structure`` whose layers are built (their weights exist)."""

    def scope(self, dtype: str, device: str) -> AbstractContextManager:
        """Device placement and precision, around building and calling alike."""

    def set_weights(self, built: BuiltModel, case: Case) -> None:
        """``case``'s weights into ``built`` (``set_case_weights``), or held for ``forward``
        to pass where the call takes the weights as arguments."""

    def forward(self, built: BuiltModel, inputs: list[np.ndarray]) -> Callable[[], Any]:
        """Inputs converted to the framework's tensors: a closure of the model call alone,
        returning its raw result once computed."""

    def to_numpy(self, tensor: Any) -> np.ndarray:
        """A result tensor on the host, in the dtype the framework gave."""

    def kernel(self, layer: LayerSpec, device: str, mask: np.ndarray | None) -> str:
        """``cudnn``, ``generic`` or ``backend_loop``: the implementation Keras picks for one layer."""

    def precision_setting(self, device: str) -> str | None:
        """The reduced-precision switch ``scope`` sets on ``device`` (e.g. ``allow_tf32=False``),
        recorded as ``run_info["precision"]``; None where it sets none."""


class KerasModels:
    """The models of one Keras, built once per structure, and the ``run`` both Keras adapters share.

    A functional model with a single output returns the bare tensor, so results
    always go through ``output_list``. Outputs are never cast: a dtype other than
    ``case.dtype`` is the framework's, and is reported.

    ``policies``: row dtype -> the layers' dtype policy, where it is not the dtype itself
    (``DTYPE_POLICIES``; a test swaps in ``{}`` to run the reduced rows under a plain dtype).
    """

    def __init__(self, call: KerasCall) -> None:
        self.call = call
        self.built: dict[tuple, BuiltModel] = {}
        self._info: dict[str, Any] = {}
        self.policies: Mapping[str, str] = dict(DTYPE_POLICIES)

    def policy(self, dtype: str) -> str:
        """The dtype policy the layers of a ``dtype`` row get."""
        return self.policies.get(dtype, dtype)

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        with self.call.scope(case.dtype, device):
            built = self._prepared(case, device)
            if case.earlier_x is not None:
                self._earlier_call(built, case)
            forward = self.call.forward(built, model_inputs(case))
            outputs = [self.call.to_numpy(t) for t in output_list(forward())]
        self._info = summarize_kernels({name: self.call.kernel(layer, device, mask_reaching(case.spec, name, case.mask))
                                        for name, layer in case.spec.sublayers().items()})
        custom = {name: note for name, note in self.call.custom_notes.items()
                  if name in used_activations(case.spec)}
        if custom:
            self._info["custom_activations"] = custom
        precision = self.call.precision_setting(device)
        if precision:
            self._info["precision"] = precision
        if is_reduced_precision(case.dtype):
            policy = self.policy(case.dtype)
            self._info.update(dtype_policy=policy, variable_dtype=variable_dtype(policy))
        return outputs

    def bare_forward(self, case: Case, device: str) -> Callable[[], Any]:
        """For ``conformance bench``: the model call alone on the prepared model and
        inputs, in the same device/precision scope as ``run``; returns the raw result."""
        with self.call.scope(case.dtype, device):
            forward = self.call.forward(self._prepared(case, device), model_inputs(case))

        def call() -> Any:
            with self.call.scope(case.dtype, device):
                return forward()

        return call

    def last_run_info(self) -> dict:
        """``kernel``/``kernels`` (see ``summarize_kernels``), ``custom_activations``
        when an activation had no built-in and ran as a user-written callable,
        ``precision``: the reduced-precision switch set, where one was, and on a float16
        or bfloat16 row ``dtype_policy`` (the layers' policy, e.g. ``mixed_bfloat16``) and
        ``variable_dtype`` (their variables', float32 under a mixed policy)."""
        return dict(self._info)

    def _earlier_call(self, built: BuiltModel, case: Case) -> None:
        """A stateful case's first call, from zeros (a cached model holds the last case's state),
        and ``reset_states()`` after it where the case asks for it."""
        earlier = built.at_length(int(case.earlier_x.shape[1]))
        if earlier is not built:
            self.call.set_weights(earlier, case)
        reset_states(built)
        output_list(self.call.forward(earlier, earlier_inputs(case))())
        if case.reset_states:
            reset_states(built)

    def _prepared(self, case: Case, device: str) -> BuiltModel:
        """The structure's model (built once, cached) holding ``case``'s weights; call inside ``scope``."""
        structure = Structure.of(case, device, self.policy(case.dtype))
        built = self.built.get(structure.key())
        if built is None:
            built = self.built[structure.key()] = self.call.build(structure, model_inputs(case))
            held = variable_dtype(structure.policy)
            built.variable_dtype = None if held == case.dtype else held
        self.call.set_weights(built, case)
        return built


# --- TensorFlow's share: Keras 3's tensorflow backend and tf_keras ---------------------------


def tensorflow_sees_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def tensorflow_gpu_name() -> str:
    """The first GPU's name as TensorFlow reports it."""
    import tensorflow as tf

    gpu = tf.config.list_physical_devices("GPU")[0]
    return tf.config.experimental.get_device_details(gpu).get("device_name", "cuda")


@functools.cache
def tensorflow_tf32_rule() -> None:
    """TF32 matmuls off for the float32 verdict (SEMANTICS.md §6): a process-wide switch, set once."""
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(reduced_precision_allowed())


def tensorflow_precision_setting(device: str) -> str | None:
    """What ``tensorflow_tf32_rule`` sets, on the GPU where it applies (TF32 is a GPU format)."""
    return f"enable_tensor_float_32_execution({reduced_precision_allowed()})" if device == "cuda" else None


def tensorflow_call(call: Callable[[], Any], tensors: list[Any]) -> Callable[[], Any]:
    """``call``, then on a GPU a wait for its kernels: eager TensorFlow returns before
    they finish, and ``conformance bench`` times the closure."""
    if "GPU" not in tensors[0].device:
        return call
    import tensorflow as tf

    def synced() -> Any:
        result = call()
        tf.test.experimental.sync_devices()
        return result

    return synced
