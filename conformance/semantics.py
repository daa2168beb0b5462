"""Keras's rules for composing recurrent layers, each written once (SEMANTICS.md §2-§5).

A spec (``conformance.matrix.spec``) says what the user wrote; this module says
what Keras then does with it: which sub-layer reads the inputs and the initial
state, how wide each sub-layer's input is, the options Keras overrides
(``Bidirectional`` forces ``zero_output_for_mask``), where the mask goes, what
a right-padded mask is in lengths, which output is "the last output" under a
mask, how ``merge_mode`` merges, and how the sub-layers' results become the
Keras output list (``output_list``).

The oracle (``conformance.reference``) and the adapters that assemble Keras
lists themselves (torch, flax, onnx-native, onnx-torch) all go through here.
That does not make the verdict circular: keras-tensorflow and tf-keras compute
the list with real Keras on every case and must agree with the oracle, and the
sensitivity tests plant list-assembly bugs in adapters that do not use this
module. Nothing here imports a framework; every function works on numpy
arrays of any dtype, the oracle's exact object arrays included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from conformance.matrix.spec import AnySpec, BidirectionalSpec, EncoderDecoderSpec, LayerSpec, StackedSpec

# --- the sub-layers as Keras runs them ---------------------------------------------------------


def keras_sublayers(spec: AnySpec) -> dict[str, LayerSpec]:
    """Each sub-layer (named as in ``spec.sublayers()``) with the options Keras really runs it with.

    ``Bidirectional`` sets ``zero_output_for_mask = return_sequences`` on both
    copies (keras/src/layers/rnn/bidirectional.py, ``force_zero_output_for_mask``;
    the same in tf_keras): a returned sequence has zeros at padded steps, and a
    layer's own ``zero_output_for_mask=True`` is switched off when only the last
    output is returned.
    """
    layers = spec.sublayers()
    if isinstance(spec, BidirectionalSpec):
        forced = spec.layer.return_sequences
        return {name: dataclasses.replace(layer, zero_output_for_mask=forced) for name, layer in layers.items()}
    return dict(layers)


def first_layer(spec: AnySpec) -> LayerSpec:
    """The sub-layer that reads ``x`` and ``initial_state`` (for Bidirectional: each copy's shape)."""
    return next(iter(spec.sublayers().values()))


def input_widths(spec: AnySpec, features: int, decoder_features: int | None = None) -> dict[str, int]:
    """The feature width each sub-layer reads: a stacked layer reads the previous one's units."""
    if isinstance(spec, StackedSpec):
        widths = [features] + [layer.units for layer in spec.layers[:-1]]
        return dict(zip(spec.sublayers(), widths))
    if isinstance(spec, EncoderDecoderSpec):
        return {"encoder": features, "decoder": decoder_features}
    return {name: features for name in spec.sublayers()}


def split_initial_state(spec: AnySpec, initial_state) -> dict[str, list | None]:
    """``initial_state`` per sub-layer: Bidirectional's halves (forward first), else the first layer's.

    The decoder of an encoder-decoder starts from the encoder's final states (``route``).
    """
    names = list(spec.sublayers())
    split: dict[str, list | None] = dict.fromkeys(names)
    if initial_state is None:
        return split
    if isinstance(spec, BidirectionalSpec):
        half = len(spec.layer.state_names)
        return {"forward": list(initial_state[:half]), "backward": list(initial_state[half:])}
    split[names[0]] = list(initial_state)
    return split


def masked_sublayers(spec: AnySpec) -> tuple[str, ...]:
    """The sub-layers a mask reaches: every one (Keras propagates it through a stack), but in an
    encoder-decoder only the encoder (the decoder's inputs are another sequence)."""
    if isinstance(spec, EncoderDecoderSpec):
        return ("encoder",)
    return tuple(spec.sublayers())


def output_layers(spec: AnySpec) -> dict[str, LayerSpec]:
    """The sub-layers whose outputs land in the Keras list, as Keras runs them."""
    layers = keras_sublayers(spec)
    if isinstance(spec, BidirectionalSpec):
        return layers
    if isinstance(spec, StackedSpec):
        name = list(layers)[-1]
        return {name: layers[name]}
    if isinstance(spec, EncoderDecoderSpec):
        return {"decoder": layers["decoder"]}
    return layers


def masked_output_layers(spec: AnySpec) -> list[LayerSpec]:
    """The layers a mask reaches whose outputs land in the list: what padded steps can show in."""
    masked = masked_sublayers(spec)
    return [layer for name, layer in output_layers(spec).items() if name in masked]


# --- masks ---------------------------------------------------------------------------------


def right_padded_lengths(mask: np.ndarray | None) -> np.ndarray | None:
    """Each row's number of real steps when every row is real steps then padding, else None.

    A mask of that shape is what packed sequences, ``seq_lengths`` and ONNX's
    ``sequence_lens`` can express; a mask with holes is not.
    """
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    lengths = mask.sum(axis=1)
    prefix = np.arange(mask.shape[1])[None, :] < lengths[:, None]
    return lengths.astype(np.int64) if np.array_equal(mask, prefix) else None


def flip_valid_prefix(sequence: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Reverse each row's first ``lengths[b]`` steps (axis 1), leaving the padding in place.

    This is how frameworks with lengths run a backward pass (packed sequences,
    ``nnx.RNN(reverse=True, seq_lengths=...)``): it starts at each row's own
    last real step, not at the padded end.
    """
    steps = sequence.shape[1]
    t = np.arange(steps)[None, :]
    lengths = np.asarray(lengths)[:, None]
    source = np.where(t < lengths, lengths - 1 - t, t)
    return np.take_along_axis(sequence, source[:, :, None], axis=1)


def processing_order(prefix_reversed: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    """A backward pass's outputs in the order ``flip_valid_prefix`` fed it -> Keras's
    ``go_backwards`` processing order, which reverses the whole padded row: padded
    steps first, then the real steps from last to first. ``lengths=None``: no
    mask, the two orders agree."""
    if lengths is None:
        return prefix_reversed
    return flip_valid_prefix(prefix_reversed, lengths)[:, ::-1]


def last_output(layer: LayerSpec, sequence: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    """Keras's last output: the output of the last *processed* step, (batch, units).

    ``sequence`` is in processing order. Keras repeats the last real output at
    padded steps, so under a right-padded mask (``lengths``) the last output is
    that of each row's last real step; a framework that stops at a row's length
    leaves other values at the padded steps, so it is picked by index here. With
    ``go_backwards`` the padding is processed first and the last step is real;
    with ``zero_output_for_mask`` a padded row's last output is zero, which the
    framework's own last step must show. ``lengths=None``: the sequence already
    holds Keras's values at every step (no mask, or a framework that applied it).
    """
    if lengths is None or layer.go_backwards or layer.zero_output_for_mask:
        return sequence[:, -1]
    return sequence[np.arange(sequence.shape[0]), np.asarray(lengths) - 1]


# --- merge modes and the output list -------------------------------------------------------

MERGES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "concat": lambda forward, backward: np.concatenate([forward, backward], axis=-1),
    "sum": lambda forward, backward: forward + backward,
    "ave": lambda forward, backward: (forward + backward) / 2,
    "mul": lambda forward, backward: forward * backward,
}


def merge(merge_mode: str | None, forward: np.ndarray, backward: np.ndarray) -> list[np.ndarray]:
    """Bidirectional's merge of the two outputs (backward in input order): one tensor, or with
    ``merge_mode=None`` both."""
    return [forward, backward] if merge_mode is None else [MERGES[merge_mode](forward, backward)]


@dataclass(frozen=True)
class LayerRun:
    """What one sub-layer computed: its outputs at every step in *processing* order
    (``go_backwards``: the input reversed) and its final states in Keras's order (``h`` or ``h, c``)."""

    sequence: np.ndarray
    states: list[np.ndarray]


def output_list(spec: AnySpec, runs: Mapping[str, LayerRun], lengths: np.ndarray | None = None,
                merged: np.ndarray | None = None) -> list[np.ndarray]:
    """The Keras output list from the sub-layers' runs (keyed by ``spec.sublayers()`` names;
    only ``output_layers(spec)`` are read).

    ``[output, *states]`` of the layer whose flags decide the list; for Bidirectional
    ``[merged, *forward states, *backward states]`` (``[forward, backward, ...]`` with
    ``merge_mode=None``), the backward sequence flipped back to input order.
    ``lengths``: the right-padded mask's lengths when the runs hold a framework's
    values only at real steps (``last_output``). ``merged``: a framework that merges
    the directions itself (an ONNX graph) gives its merged output, used as it is.
    """
    layers = output_layers(spec)
    masked = masked_sublayers(spec)
    heads = {}
    for name, layer in layers.items():
        run = runs[name]
        if layer.return_sequences:
            heads[name] = run.sequence[:, ::-1] if name == "backward" else run.sequence
        else:
            heads[name] = last_output(layer, run.sequence, lengths if name in masked else None)
    if isinstance(spec, BidirectionalSpec):
        outputs = [merged] if merged is not None else merge(spec.merge_mode, heads["forward"], heads["backward"])
    else:
        outputs = list(heads.values())
    top = next(iter(layers.values()))
    if not top.return_state:
        return outputs
    return outputs + [state for name in layers for state in runs[name].states]


# --- routing: what each sub-layer reads ----------------------------------------------------

LayerRunner = Callable[[str, LayerSpec, np.ndarray, "list[np.ndarray] | None", bool], LayerRun]


def route(spec: AnySpec, run: LayerRunner, x: np.ndarray, initial_state=None,
          decoder_x: np.ndarray | None = None) -> dict[str, LayerRun]:
    """Run every sub-layer in Keras's order, each on what Keras feeds it; the runs by name.

    ``run(name, layer, inputs, initial_state, masked)`` computes one sub-layer
    (``layer`` as ``keras_sublayers`` gives it; ``masked``: whether the mask
    reaches it) and returns its ``LayerRun``. The order, and what each reads:

    - a layer: ``x`` and ``initial_state``;
    - ``Bidirectional``: ``forward``, then ``backward``, both on ``x``, each with its half of
      ``initial_state`` (``split_initial_state``); ``backward`` is the layer with
      ``go_backwards=True``, as Keras makes it;
    - a stack: ``layer_0``, ``layer_1``, ... in order, the first on ``x`` and ``initial_state``,
      each next one on the previous layer's ``sequence`` (in its processing order) with no
      initial state; the mask reaches every one;
    - an encoder-decoder: ``encoder`` on ``x`` and ``initial_state``, then ``decoder`` on
      ``decoder_x`` starting from the encoder's final states, unmasked.

    Returns the runs by sub-layer name, ready for ``output_list``.
    """
    layers = keras_sublayers(spec)
    states = split_initial_state(spec, initial_state)
    masked = masked_sublayers(spec)
    if isinstance(spec, EncoderDecoderSpec):
        encoder = run("encoder", layers["encoder"], x, states["encoder"], True)
        return {"encoder": encoder,
                "decoder": run("decoder", layers["decoder"], decoder_x, list(encoder.states), False)}
    runs, inputs = {}, x
    for name, layer in layers.items():
        runs[name] = run(name, layer, inputs, states[name], name in masked)
        if isinstance(spec, StackedSpec):
            inputs = runs[name].sequence
    return runs


# --- stateful layers: two calls as one -------------------------------------------------------


def one_call_input(spec: AnySpec, earlier_x: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The input of one call equal to a stateful layer's call on ``earlier_x`` then on ``x``.

    The second call starts from the state the first left, so the pair is one run over
    both inputs in *processing* order: ``earlier_x`` then ``x`` going forward, and with
    ``go_backwards`` (each call reads its input from the end) ``x`` then ``earlier_x``,
    whose reversal processes ``earlier_x`` reversed, then ``x`` reversed.
    """
    layer = first_layer(spec)
    parts = (x, earlier_x) if layer.go_backwards else (earlier_x, x)
    return np.concatenate(parts, axis=1)


def later_call_outputs(spec: AnySpec, outputs: list[np.ndarray], timesteps: int) -> list[np.ndarray]:
    """``one_call_input``'s list cut down to the later call's: its sequence output is the last
    ``timesteps`` processed steps; the last output and the final states are the run's."""
    if not first_layer(spec).return_sequences:
        return outputs
    return [outputs[0][:, -timesteps:], *outputs[1:]]


def stateful_reason(case, keeps_no_state: str) -> str | None:
    """Why a framework without stateful layers cannot run ``case`` (``keeps_no_state`` names what
    it has, e.g. "torch.nn.LSTM"), or None where no layer of the case is stateful. Passing the
    final state back by hand would be the adapter computing the carry, and is what the
    initial_state cases test already."""
    stateful = [layer for layer in case.spec.sublayers().values() if layer.stateful]
    if not stateful:
        return None
    return (f"{stateful[0].keras_class}(stateful=True): {keeps_no_state} keeps no state between calls (a port "
            "passes the final state back as the next call's initial state, as the initial_state cases do)")


__all__ = ["LayerRun", "MERGES", "first_layer", "flip_valid_prefix", "input_widths", "keras_sublayers", "last_output",
           "masked_output_layers", "masked_sublayers", "merge", "output_layers", "output_list", "processing_order",
           "right_padded_lengths", "route", "split_initial_state", "one_call_input", "later_call_outputs",
           "stateful_reason"]
