"""Real Keras models built from specs: shared by the Keras 3 and the tf_keras adapters.

Keras 3 (``keras``) and Keras 2 (``tf_keras``) spell everything used here the
same way (``layers.LSTM(...)``, ``layers.Bidirectional``, ``Input``, ``Model``,
``set_weights``), so the builders take the module as an argument and import
nothing themselves. What differs between the two is passed in by the adapter:
how a spec's activation name maps to the framework (the two hard sigmoids are
defined differently, see ``keras_adapter`` and ``tf_keras_adapter``), how to
place a call on a device, and how to call the model.

One functional ``Model`` is built per *structure* (spec, input widths, dtype,
which optional inputs exist, device); the time and batch axes are left
``None`` so that one model serves every shape. Each case then only swaps its
weights in with ``set_weights`` (the fixtures are in Keras layout already) and
calls the model.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager

import numpy as np

from conformance.adapters.base import Adapter
from conformance.case import Case
from conformance.spec import AnySpec, BidirectionalSpec, EncoderDecoderSpec, LayerSpec, StackedSpec

ActivationArg = Callable[[str], Any]

# The order of a Keras RNN layer's get_weights()/set_weights() list.
WEIGHT_ORDER = ("kernel", "recurrent_kernel", "bias")


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
        "dtype": dtype,
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

    @classmethod
    def of(cls, case: Case, device: str) -> "Structure":
        decoder_features = None if case.decoder_x is None else int(case.decoder_x.shape[2])
        return cls(case.spec, case.features, decoder_features, case.dtype, case.mask is not None,
                   case.initial_state is not None, device)

    def key(self) -> tuple:
        return (self.spec, self.features, self.decoder_features, self.dtype, self.has_mask,
                self.has_initial_state, self.device)


@dataclass
class BuiltModel:
    """A functional model and, by sub-layer name, the RNN layers holding its weights."""

    model: Any
    layers: dict[str, Any]
    compiled: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def _first_layer(spec: AnySpec) -> LayerSpec:
    """The layer that receives the mask and initial state."""
    return next(iter(spec.sublayers().values()))


def _state_inputs(module: Any, structure: Structure) -> list[Any]:
    if not structure.has_initial_state:
        return []
    first = _first_layer(structure.spec)
    copies = 2 if isinstance(structure.spec, BidirectionalSpec) else 1
    return [module.Input(shape=(first.units,), dtype=structure.dtype, name=f"state_{n}")
            for n in range(copies * len(first.state_names))]


def build_model(module: Any, structure: Structure, activation: ActivationArg) -> BuiltModel:
    """A functional model whose inputs are ``model_inputs(case)`` and outputs the Keras list.

    Stacked layers each get the mask explicitly (the first also the initial
    state); the encoder's states become the decoder's ``initial_state``.
    """
    spec, dtype = structure.spec, structure.dtype
    x_in = module.Input(shape=(None, structure.features), dtype=dtype, name="x")
    mask_in = module.Input(shape=(None,), dtype="bool", name="mask") if structure.has_mask else None
    state_ins = _state_inputs(module, structure)
    first_kwargs: dict[str, Any] = {}
    if mask_in is not None:
        first_kwargs["mask"] = mask_in
    if state_ins:
        first_kwargs["initial_state"] = state_ins
    inputs = [x_in] + ([mask_in] if mask_in is not None else []) + state_ins

    def make(layer: LayerSpec, name: str) -> Any:
        return make_layer(module, layer, activation, dtype, name)

    if isinstance(spec, LayerSpec):
        rnn = make(spec, "layer")
        outputs, layers = rnn(x_in, **first_kwargs), {"layer": rnn}
    elif isinstance(spec, BidirectionalSpec):
        # dtype on the wrapper too: Bidirectional.call casts both halves to its own compute dtype.
        bidi = module.layers.Bidirectional(make(spec.layer, "layer"), merge_mode=spec.merge_mode, dtype=dtype)
        outputs = bidi(x_in, **first_kwargs)
        layers = {"forward": bidi.forward_layer, "backward": bidi.backward_layer}
    elif isinstance(spec, StackedSpec):
        hidden, layers = x_in, {}
        for n, (name, layer) in enumerate(spec.sublayers().items()):
            layers[name] = make(layer, name)
            kwargs = first_kwargs if n == 0 else {k: v for k, v in first_kwargs.items() if k == "mask"}
            hidden = layers[name](hidden, **kwargs)
        outputs = hidden
    elif isinstance(spec, EncoderDecoderSpec):
        layers = {"encoder": make(spec.encoder, "encoder"), "decoder": make(spec.decoder, "decoder")}
        encoder_states = output_list(layers["encoder"](x_in, **first_kwargs))[1:]
        decoder_in = module.Input(shape=(None, structure.decoder_features), dtype=dtype, name="decoder_x")
        inputs.append(decoder_in)
        outputs = layers["decoder"](decoder_in, initial_state=encoder_states)
    else:
        raise TypeError(f"unknown spec type {type(spec).__name__}")
    return BuiltModel(module.Model(inputs=inputs, outputs=output_list(outputs)), layers)


def model_inputs(case: Case) -> list[np.ndarray]:
    """The case's arrays in ``build_model``'s input order: x, mask, states, decoder_x."""
    arrays = [case.x]
    if case.mask is not None:
        arrays.append(case.mask)
    if case.initial_state is not None:
        arrays.extend(case.initial_state)
    if case.decoder_x is not None:
        arrays.append(case.decoder_x)
    return arrays


def set_case_weights(built: BuiltModel, case: Case) -> None:
    for name, layer in case.spec.sublayers().items():
        built.layers[name].set_weights(weight_list(layer, case.weights[name]))


def mask_reaching(spec: AnySpec, name: str, mask: np.ndarray | None) -> np.ndarray | None:
    """The mask a sub-layer sees: every one but the decoder (its inputs are unmasked)."""
    return None if isinstance(spec, EncoderDecoderSpec) and name == "decoder" else mask


def cudnn_mask_ok(mask: np.ndarray | None) -> bool:
    """cuDNN's masks: right-padded, no fully masked row (``_assert_valid_mask`` in both Keras)."""
    if mask is None:
        return True
    lengths = mask.sum(axis=1)
    right_padded = np.array_equal(mask, np.arange(mask.shape[1])[None, :] < lengths[:, None])
    return bool(right_padded and lengths.min() > 0)


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


class KerasFamilyAdapter(Adapter):
    """What the Keras 3 and tf_keras adapters share: cache, weights, inputs, list.

    Subclasses provide ``_module()``, ``_activation(name)``, ``_scope(dtype,
    device)``, ``_call(built, inputs)``, ``_to_numpy(tensor)`` and
    ``_kernels(case, device)``. A functional model with a single output
    returns the bare tensor, so results always go through ``output_list``.
    """

    def __init__(self) -> None:
        self._models: dict[tuple, BuiltModel] = {}
        self._info: dict[str, Any] = {}

    # --- hooks -------------------------------------------------------------------------
    def _module(self) -> Any:
        raise NotImplementedError

    def _activation(self, name: str) -> Any:
        raise NotImplementedError

    def _scope(self, dtype: str, device: str) -> ContextManager:
        return contextlib.nullcontext()

    def _call(self, built: BuiltModel, inputs: list[np.ndarray]) -> Any:
        """The model's raw result for these inputs."""
        raise NotImplementedError

    def _to_numpy(self, tensor: Any) -> np.ndarray:
        return np.asarray(tensor)

    def _kernels(self, case: Case, device: str) -> dict[str, str]:
        return {name: "generic" for name in case.spec.sublayers()}

    def _custom_activations(self, case: Case) -> dict[str, str]:
        """Spec activation name -> what stands in for it, for names with no built-in."""
        return {}

    # --- contract ----------------------------------------------------------------------
    def run(self, case: Case, device: str) -> list[np.ndarray]:
        structure = Structure.of(case, device)
        with self._scope(case.dtype, device):
            built = self._models.get(structure.key())
            if built is None:
                built = build_model(self._module(), structure, self._activation)
                self._models[structure.key()] = built
            set_case_weights(built, case)
            outputs = [self._to_numpy(t) for t in output_list(self._call(built, model_inputs(case)))]
        self._info = summarize_kernels(self._kernels(case, device))
        custom = self._custom_activations(case)
        if custom:
            self._info["custom_activations"] = custom
        return outputs

    def last_run_info(self) -> dict:
        return dict(self._info)

    def used_activations(self, case: Case) -> set[str]:
        names = set()
        for layer in case.spec.sublayers().values():
            names.add(layer.activation)
            if layer.cell != "simple_rnn":
                names.add(layer.recurrent_activation)
        return names
