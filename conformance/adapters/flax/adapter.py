"""Flax NNX: ``nnx.SimpleCell`` / ``LSTMCell`` / ``GRUCell`` driven by ``nnx.RNN``.

Keras -> Flax conventions (the weight mapping is ``flax_mapping``):

- ``go_backwards`` is ``nnx.RNN(reverse=True, keep_order=False)``: outputs stay
  in processing order, like Keras's; the final carry is the state after x[0].
- ``initial_state`` is ``initial_carry`` (LSTM: ``(c, h)``, c first).
- A right-padded mask is ``seq_lengths``. nnx.RNN then picks the carry at
  each row's last valid step (``_select_last_carry``) and a reversed pass
  flips only the valid prefix (``flip_sequences``), but the cell still runs on
  the padded steps and returns those outputs, so sequences under a mask are
  unsupported (``flax_mapping.mask_reason``).
- ``Bidirectional`` is ``nnx.Bidirectional``, whose backward pass returns its
  sequence in input order (``keep_order=True``).
- Stacks and encoder-decoders chain the layers' ``nnx.RNN`` as
  ``semantics.route`` says (traced under jit); the results become
  ``semantics.LayerRun`` in Keras's processing order (``_keras_runs``) and the
  Keras list is ``semantics.output_list`` of them.

One model per structure is built and its forward jitted once (``nnx.split``
then ``jax.jit`` with the parameters as arguments), so a case only swaps weights.
A case's parameters and float inputs go to the device as one buffer
(``xla.pack``), which the jitted forward slices back apart: one
``jax.device_put`` per case instead of one per array.

float16 and bfloat16 cells are built with ``dtype=param_dtype=`` that dtype (parameters,
carry and computation; the jitted forward's dots and outputs are in it) and run
without x64.

float64 runs inside ``jax.enable_x64(True)``, a thread-local scope rather than
the process-global ``jax_enable_x64`` flag, which would also change what every
other JAX user in the process (e.g. Keras on JAX) computes.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from conformance import semantics
from conformance.adapters import xla
from conformance.adapters.contract import Adapter, Reproducer, missing_module_reason, reduced_precision_allowed
from conformance.adapters.flax import mapping as mapping
from conformance.adapters.flax.repro import flax_reproducer
from conformance.matrix.case import Case, is_reduced_precision
from conformance.matrix.spec import AnySpec, BidirectionalSpec, LayerSpec


def _pair(forward, backward):
    """nnx.Bidirectional's merge_fn: keep both directions, Keras's merge comes after."""
    return (forward, backward)


@dataclasses.dataclass
class _Compiled:
    """One structure's model, split into a static graph and swappable parameters."""

    graphdef: object
    rest: object
    treedef: object
    paths: list[tuple[str, ...]]
    forward: object


class FlaxAdapter(Adapter):
    name = "flax"
    declared_devices = ("cpu", "cuda")
    compiles_per_structure = True  # an XLA compilation per structure and shape
    requires = ("jax", "flax")

    def __init__(self) -> None:
        self._compiled: dict[tuple, _Compiled] = {}
        self._traces = 0
        self._info: dict = {}

    def available(self) -> str | None:
        xla.use_persistent_cache()
        return missing_module_reason(*self.requires, "flax.nnx")

    def versions(self) -> dict[str, str]:
        import flax
        import jax
        import jaxlib

        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__}

    def devices(self) -> list[str]:
        return ["cpu"] + (["cuda"] if _gpus() else [])

    def device_name(self, device: str) -> str:
        return _device(device).device_kind

    def last_run_info(self) -> dict:
        return dict(self._info)

    def supports(self, case: Case) -> str | None:
        reason = semantics.stateful_reason(case, "flax.nnx.RNN")
        if reason:
            return reason
        for name, layer in case.spec.sublayers().items():
            reason = mapping.activation_reason(layer) or mapping.dropout_reason(layer)
            if reason is None and layer.cell == "gru":
                reason = mapping.gru_reason(layer, case.weights[name])
            if reason:
                return reason
        return None if case.mask is None else mapping.mask_reason(case.spec, case.mask)

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        import jax

        with _precision(case.dtype):
            traces, compilations = self._traces, xla.compilations()
            forward = self._forward(case, device)
            results = jax.tree_util.tree_map(np.asarray, forward())
        self._info = {"device": str(_device(device)), "jit_traced": self._traces != traces,
                      "compilations": xla.compilations() - compilations}
        if device == "cuda":  # "highest" changes nothing on a CPU; on a GPU it rules out TF32
            self._info["precision"] = f"default_matmul_precision={matmul_precision()}"
        if is_reduced_precision(case.dtype):  # what the cells were built with (``_make_rnn``)
            self._info.update(dtype=case.dtype, param_dtype=case.dtype)
        lengths = None if case.mask is None else semantics.right_padded_lengths(case.mask)
        # nnx.RNN's outputs at padded steps are not Keras's: the last output is picked by length.
        return semantics.output_list(case.spec, _keras_runs(case.spec, results, lengths), lengths)

    def reproducer(self, case: Case, device: str) -> Reproducer:
        """No model file: the script builds the cell and ``nnx.RNN`` itself (``conformance.adapters.flax.repro``)."""
        return flax_reproducer(case)

    def bare_forward(self, case: Case, device: str) -> Callable[[], Any]:
        """For ``conformance bench``: the jitted forward alone, parameters and inputs
        already on the device, in ``run``'s precision scope; returns JAX's raw result."""
        with _precision(case.dtype):
            forward = self._forward(case, device)

        def call() -> Any:
            with _precision(case.dtype):
                return forward()

        return call

    def _forward(self, case: Case, device: str) -> Callable[[], Any]:
        """The structure's jitted forward with ``case``'s parameters and inputs put on the
        device: a closure of the call alone, which waits for the result (call inside ``_precision``)."""
        import jax

        dev = _device(device)
        compiled = self._compiled_for(case, device)
        # Groups: parameters, x, initial states (none: an empty group), decoder_x (likewise).
        optional = [list(case.initial_state or ()), [] if case.decoder_x is None else [case.decoder_x]]
        packed, layout = xla.pack([self._params(compiled, case), [case.x], *optional], case.dtype)
        packed = jax.device_put(packed, dev)
        lengths = None if case.mask is None else jax.device_put(
            semantics.right_padded_lengths(case.mask).astype(np.int32), dev)
        has_states = case.initial_state is not None
        return lambda: jax.block_until_ready(compiled.forward(packed, compiled.rest, lengths, layout, has_states))

    # --- building and compiling -------------------------------------------------------

    def _compiled_for(self, case: Case, device: str) -> _Compiled:
        decoder_features = None if case.decoder_x is None else int(case.decoder_x.shape[2])
        widths = semantics.input_widths(case.spec, case.features, decoder_features)
        key = (_structure(case.spec, widths), case.dtype, device)
        if key not in self._compiled:
            self._compiled[key] = self._compile(case.spec, widths, case.dtype)
        return self._compiled[key]

    def _compile(self, spec: AnySpec, widths: dict[str, int], dtype: str) -> _Compiled:
        import jax
        from flax import nnx

        models = _build_models(spec, widths, dtype)
        graphdef, params, rest = nnx.split(models, nnx.Param, ...)
        leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
        paths = [tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey)) for path, _ in leaves]

        def forward(packed, rest, seq_lengths, layout: xla.Layout, has_states: bool):
            self._traces += 1  # runs only while tracing
            leaves, (x,), states, decoder = xla.unpack(packed, layout)
            params = jax.tree_util.tree_unflatten(treedef, leaves)
            return _run_spec(spec, nnx.merge(graphdef, params, rest), x, tuple(states) if has_states else None,
                             seq_lengths, decoder[0] if decoder else None)

        return _Compiled(graphdef, rest, treedef, paths,
                         jax.jit(forward, static_argnames=("layout", "has_states")))

    def _params(self, compiled: _Compiled, case: Case) -> list[np.ndarray]:
        """``case``'s Flax parameters in the order of the model's parameter leaves."""
        by_path = {}
        for name, layer in case.spec.sublayers().items():
            prefix = _cell_path(case.spec, name)
            for path, value in mapping.flax_params(layer, case.weights[name]).items():
                by_path[prefix + path] = value
        return [by_path[path] for path in compiled.paths]


def matmul_precision() -> str:
    """JAX's "default" matmul precision may be TF32 on GPUs; "highest" is true float32."""
    return "default" if reduced_precision_allowed() else "highest"


@contextlib.contextmanager
def _precision(dtype: str) -> Iterator[None]:
    """float64 JAX for float64 cases; full-precision matmuls for the float32 verdict
    (JAX's "default" precision may use TF32 on GPUs; on an H100, jax 0.11.2, these
    small cases came out identical)."""
    import jax

    with jax.enable_x64(dtype == "float64"), jax.default_matmul_precision(matmul_precision()):
        yield


# --- devices ------------------------------------------------------------------------------


def _gpus() -> list:
    import jax

    try:
        return jax.devices("gpu")
    except RuntimeError:  # no GPU backend in this jaxlib, or no GPU
        return []


def _device(device: str):
    import jax

    if device == "cpu":
        return jax.devices("cpu")[0]
    if device == "cuda" and _gpus():
        return _gpus()[0]
    raise ValueError(f"device={device!r} is not available; expected one of {['cpu'] + (['cuda'] if _gpus() else [])}")


# --- models -----------------------------------------------------------------------------


def _structure(spec: AnySpec, widths: dict[str, int]) -> tuple:
    """What the Flax model and its forward depend on: not the Keras output flags.

    return_sequences, return_state, zero_output_for_mask and merge_mode only
    change which of the same computed arrays form the Keras list.
    """
    layers = tuple((name, layer.cell, layer.units, widths[name], layer.activation,
                    layer.recurrent_activation, layer.go_backwards, layer.unroll)
                   for name, layer in spec.sublayers().items())
    return (type(spec).__name__, layers)


def _make_rnn(layer: LayerSpec, width: int, dtype: str):
    import jax.numpy as jnp
    from flax import nnx

    activations = {"activation_fn": getattr(nnx, mapping.FLAX_ACTIVATIONS[layer.activation])}
    if layer.cell != "simple_rnn":
        activations["gate_fn"] = getattr(nnx, mapping.FLAX_ACTIVATIONS[layer.recurrent_activation])
    cell_class = getattr(nnx, mapping.CELL_CLASSES[layer.cell])
    # SimpleCell's dtype defaults to float32 (LSTMCell/GRUCell: None, inferred): with
    # float64 params its scan carry changes dtype and jax.lax.scan raises, so pass it.
    # The recurrent kernel's default initializer (SimpleCell, GRUCell: orthogonal) takes a QR,
    # which jaxlib's LAPACK has for float32/float64 only ("Unsupported dtype float16"); the
    # initial values never reach a computation (every Param is replaced by the case's
    # weights, ``_params``), so the cells start from zeros in every dtype.
    cell = cell_class(width, layer.units, dtype=jnp.dtype(dtype), param_dtype=jnp.dtype(dtype),
                      recurrent_kernel_init=nnx.initializers.zeros, rngs=nnx.Rngs(0), **activations)
    # Keras's unroll=True is the scan fully unrolled (jax.lax.scan's unroll=True).
    return nnx.RNN(cell, return_carry=True, unroll=True if layer.unroll else 1)


def _build_models(spec: AnySpec, widths: dict[str, int], dtype: str):
    from flax import nnx

    rnns = {name: _make_rnn(layer, widths[name], dtype) for name, layer in spec.sublayers().items()}
    if isinstance(spec, BidirectionalSpec):
        return nnx.Dict(bidirectional=nnx.Bidirectional(rnns["forward"], rnns["backward"],
                                                        merge_fn=_pair, return_carry=True))
    return nnx.Dict(rnns)


def _cell_path(spec: AnySpec, name: str) -> tuple[str, ...]:
    """Where sub-layer ``name``'s cell sits in the model built by ``_build_models``."""
    if isinstance(spec, BidirectionalSpec):
        return ("bidirectional", f"{name}_rnn", "cell")
    return (name, "cell")


# --- forward passes (traced under jax.jit) ----------------------------------------------


def _layer_runner(models, seq_lengths) -> semantics.LayerRunner:
    """``semantics.route``'s runner: one sub-layer's ``nnx.RNN``, states in Keras's order.

    The sequence is nnx's (keep_order=False): Keras's processing order except for a
    reversed layer under ``seq_lengths``, which a stack cannot hand on
    (``mapping.mask_reason``) and ``_keras_runs`` reorders for the list.
    """

    def run(name: str, layer: LayerSpec, inputs, states, masked: bool) -> semantics.LayerRun:
        carry = None if states is None else mapping.keras_states_to_carry(layer.cell, tuple(states))
        carry, sequence = models[name](inputs, initial_carry=carry, seq_lengths=seq_lengths if masked else None,
                                       reverse=layer.go_backwards, keep_order=False)
        return semantics.LayerRun(sequence, mapping.carry_to_keras_states(layer.cell, carry))

    return run


def _run_bidirectional(spec: BidirectionalSpec, models, x, initial_state, seq_lengths) -> dict:
    halves = semantics.split_initial_state(spec, initial_state)
    carry = None if initial_state is None else tuple(
        mapping.keras_states_to_carry(spec.cell, tuple(halves[name])) for name in ("forward", "backward"))
    carries, sequences = models["bidirectional"](x, initial_carry=carry, seq_lengths=seq_lengths)
    return {name: (mapping.carry_to_keras_states(spec.cell, carries[d]), sequences[d])
            for d, name in enumerate(("forward", "backward"))}


def _run_spec(spec: AnySpec, models, x, initial_state, seq_lengths, decoder_x) -> dict:
    """``{sub-layer: (Keras states, sequence)}`` for the sub-layers whose outputs make the list.

    Depends only on what ``_structure`` keys, never on the output flags: one
    compiled forward serves every case of a structure.
    """
    if isinstance(spec, BidirectionalSpec):
        return _run_bidirectional(spec, models, x, initial_state, seq_lengths)
    runs = semantics.route(spec, _layer_runner(models, seq_lengths), x, initial_state, decoder_x)
    return {name: (runs[name].states, runs[name].sequence) for name in semantics.output_layers(spec)}


# --- the Keras output list ---------------------------------------------------------------------


def _keras_runs(spec: AnySpec, results: dict, lengths: np.ndarray | None) -> dict[str, semantics.LayerRun]:
    """``_run_spec``'s results as ``LayerRun``, each sequence in Keras's processing order.

    nnx.Bidirectional's backward sequence is in input order (keep_order=True);
    a reversed nnx.RNN (keep_order=False) under ``seq_lengths`` is in the order
    its flipped valid prefix was fed. Only the real steps are Keras's values.
    """
    masked = semantics.masked_sublayers(spec)
    runs = {}
    for name, (states, sequence) in results.items():
        if isinstance(spec, BidirectionalSpec) and name == "backward":
            sequence = sequence[:, ::-1]
        elif spec.sublayers()[name].go_backwards:
            sequence = semantics.processing_order(sequence, lengths if name in masked else None)
        runs[name] = semantics.LayerRun(sequence, list(states))
    return runs
