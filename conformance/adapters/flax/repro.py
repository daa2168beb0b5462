"""The standalone reproducer of a Flax result (``conformance repro``): a script that builds the
``nnx`` cell as the flax adapter does (``_make_rnn``), sets the case's parameters (mapped by
``mapping.flax_params``, written to ``inputs.npz`` under their paths in the cell), runs ``nnx.RNN``
and assembles the Keras list from its carry and sequence with index gathers the suite derives
(``conformance.adapters.gathers``). Single-layer, unmasked cases: a stack, a Bidirectional or an
encoder-decoder chains several ``nnx.RNN`` calls, and a mask runs as ``seq_lengths`` with the
Keras values read only at real steps.
"""

from __future__ import annotations

import numpy as np

from conformance import semantics
from conformance.adapters.contract import Reproducer
from conformance.adapters.flax import mapping
from conformance.adapters.gathers import gather_source, labelled
from conformance.matrix.case import Case
from conformance.matrix.spec import LayerSpec


def flax_reproducer(case: Case) -> Reproducer:
    """``case`` as a script needing only jax, flax and numpy; NotImplementedError (its one line) for a
    case the script cannot express as one ``nnx.RNN`` call."""
    layer = case.spec
    if not isinstance(layer, LayerSpec):
        raise NotImplementedError(f"{case.id}: repro builds single-layer cases only (a stack, Bidirectional or "
                                  "encoder-decoder chains several nnx.RNN calls)")
    if case.mask is not None:
        raise NotImplementedError(f"{case.id}: a masked case runs nnx.RNN with seq_lengths; repro builds "
                                  "unmasked cases only")
    feeds = {"x": case.x}
    for name, state in zip(("h0", "c0"), case.initial_state or ()):
        feeds[name] = state
    for path, value in mapping.flax_params(layer, case.weights["layer"]).items():
        feeds["param." + ".".join(path)] = np.ascontiguousarray(value)
    feeds = {name: value.astype(np.float32) if value.dtype.name == "bfloat16" else value
             for name, value in feeds.items()}
    gate = "" if layer.cell == "simple_rnn" else f", gate_fn=nnx.{mapping.FLAX_ACTIVATIONS[layer.recurrent_activation]}"
    runner = RUNNER.format(cell=mapping.CELL_CLASSES[layer.cell], width=case.features, units=layer.units,
                           activation=mapping.FLAX_ACTIVATIONS[layer.activation], gate=gate, dtype=case.dtype,
                           unroll=True if layer.unroll else 1, reverse=layer.go_backwards, lstm=layer.cell == "lstm",
                           keras=keras_list_source(case, layer))
    return Reproducer(None, None, feeds, list(case.output_names), runner, "flax",
                      f"flax.nnx.{mapping.CELL_CLASSES[layer.cell]} driven by nnx.RNN, the case's weights mapped "
                      "to its parameters")


def keras_list_source(case: Case, layer: LayerSpec) -> str:
    """The Keras list from nnx.RNN's sequence (processing order: ``keep_order=False``) and Keras-order
    states, by ``semantics.output_list``, as gathers."""
    batch, steps = case.x.shape[:2]
    n_states = len(layer.state_names)
    sequence, *states = labelled([(batch, steps, layer.units)] + [(batch, layer.units)] * n_states)
    outputs = semantics.output_list(layer, {"layer": semantics.LayerRun(sequence, states)})
    return gather_source(outputs, [sequence, *states], ["sequence", "h", "c"])


RUNNER = '''
def run_model(model_path, feeds, device):
    """nnx.{cell} driven by nnx.RNN, as the suite's flax adapter builds and runs it.
    Returns the Keras layer's outputs (from the sequence and the final carry)."""
    import jax

    if "{dtype}" == "float64":
        jax.config.update("jax_enable_x64", True)  # the adapter runs float64 under jax.enable_x64
    import jax.numpy as jnp
    from flax import nnx

    dtype = jnp.dtype("{dtype}")
    cell = nnx.{cell}({width}, {units}, dtype=dtype, param_dtype=dtype, recurrent_kernel_init=nnx.initializers.zeros,
                      rngs=nnx.Rngs(0), activation_fn=nnx.{activation}{gate})
    for name, value in feeds.items():
        if name.startswith("param."):
            module, parameter = name.split(".")[1:]
            getattr(getattr(cell, module), parameter).value = jnp.asarray(value, dtype=dtype)
    rnn = nnx.RNN(cell, return_carry=True, unroll={unroll})
    x = jnp.asarray(feeds["x"], dtype=dtype)
    carry = None
    if "h0" in feeds:
        h0 = jnp.asarray(feeds["h0"], dtype=dtype)
        carry = (jnp.asarray(feeds["c0"], dtype=dtype), h0) if {lstm} else h0  # LSTM carry: (c, h)
    carry, sequence = rnn(x, initial_carry=carry, reverse={reverse}, keep_order=False)
    c, h = carry if {lstm} else (None, carry)
    # numpy has no bfloat16: such arrays come back as float32 (exact)
    sequence, h, c = [None if a is None else np.asarray(a.astype(jnp.float32) if a.dtype == jnp.bfloat16 else a)
                      for a in (sequence, h, c)]

    def take(source, index):
        return source.ravel()[np.asarray(index, dtype=np.int64)]

    return {keras}
'''
