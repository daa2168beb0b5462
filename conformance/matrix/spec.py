"""What a recurrent layer is: the Keras constructor arguments that change its output.

Field names are Keras's own (``return_sequences``, ``reset_after``, ...) so that a
spec reads like the ``keras.layers.LSTM(...)`` call it describes. Composite specs
(``BidirectionalSpec``, ``StackedSpec``, ``EncoderDecoderSpec``) describe the three
ways tutorials combine layers; each names its sub-layers so that weights can be
keyed by those names (``{"forward": {...}, "backward": {...}}``).

This module is the leftmost one in the data flow: it imports nothing of the suite.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

CELLS = ("simple_rnn", "lstm", "gru")
ACTIVATIONS = ("tanh", "sigmoid", "relu", "linear", "hard_sigmoid", "legacy_hard_sigmoid")
MERGE_MODES = ("concat", "sum", "ave", "mul", None)

# Gate blocks in the column order of Keras's kernel, recurrent_kernel and bias.
GATES = {"simple_rnn": ("h",), "lstm": ("i", "f", "c", "o"), "gru": ("z", "r", "h")}
STATE_NAMES = {"simple_rnn": ("h",), "lstm": ("h", "c"), "gru": ("h",)}
KERAS_CLASS = {"simple_rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}
# LayerSpec's inference-invariant arguments and their defaults (LayerSpec's doc).
INFERENCE_INVARIANT = {"unroll": False, "dropout": 0.0, "recurrent_dropout": 0.0}
# Arguments written by to_dict only when set (a spec without them reads as it did before they existed).
OMITTED_AT_DEFAULT = {**INFERENCE_INVARIANT, "stateful": False}


def _require(ok: bool, field: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{field}={value!r} is not allowed; expected {allowed}")


@dataclass(frozen=True)
class LayerSpec:
    """One ``keras.layers.SimpleRNN`` / ``LSTM`` / ``GRU`` layer.

    ``reset_after`` only matters for GRU. ``zero_output_for_mask`` is the
    argument of Keras's base ``RNN`` layer: at masked steps the sequence output
    is zero instead of the last unmasked output.

    ``unroll``, ``dropout`` and ``recurrent_dropout`` are *inference-invariant*
    (SEMANTICS.md §3): they change how a framework computes (a Python-unrolled graph
    instead of a loop, dropout masks that exist only in training), never the
    answer of an inference call, so the oracle ignores them and a case with
    them must give the plain layer's numbers.

    ``stateful`` carries the final state of one call into the next (SEMANTICS.md §3): a
    case with it holds the earlier call's input (``Case.earlier_x``), and the answer
    is the later call's list.
    """

    cell: str
    units: int
    return_sequences: bool = False
    return_state: bool = False
    go_backwards: bool = False
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    use_bias: bool = True
    reset_after: bool = True
    zero_output_for_mask: bool = False
    unroll: bool = False
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    stateful: bool = False

    def __post_init__(self) -> None:
        _require(self.cell in CELLS, "cell", self.cell, f"one of {CELLS}")
        _require(
            isinstance(self.units, int) and not isinstance(self.units, bool) and self.units > 0,
            "units", self.units, "a positive int",
        )
        for field in ("activation", "recurrent_activation"):
            value = getattr(self, field)
            _require(value in ACTIVATIONS, field, value, f"one of {ACTIVATIONS}")
        for field in ("return_sequences", "return_state", "go_backwards", "use_bias",
                      "reset_after", "zero_output_for_mask", "unroll", "stateful"):
            value = getattr(self, field)
            _require(isinstance(value, bool), field, value, "True or False")
        for field in ("dropout", "recurrent_dropout"):
            value = getattr(self, field)
            _require(isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1,
                     field, value, "a rate in [0, 1)")

    kind = "layer"

    @property
    def gates(self) -> tuple[str, ...]:
        return GATES[self.cell]

    @property
    def state_names(self) -> tuple[str, ...]:
        return STATE_NAMES[self.cell]

    @property
    def keras_class(self) -> str:
        return KERAS_CLASS[self.cell]

    def output_names(self) -> list[str]:
        """The Keras output list, by name: ``output`` then the final states."""
        return ["output", *self.state_names] if self.return_state else ["output"]

    def sublayers(self) -> dict[str, LayerSpec]:
        return {"layer": self}

    def describe(self) -> str:
        """The Keras call this spec stands for, e.g. ``GRU(4, return_state=True)``."""
        defaults = LayerSpec(cell=self.cell, units=self.units)
        args = [str(self.units)]
        for f in dataclasses.fields(self):
            if f.name in ("cell", "units") or (f.name == "reset_after" and self.cell != "gru"):
                continue
            value = getattr(self, f.name)
            if value != getattr(defaults, f.name):
                args.append(f"{f.name}={value!r}")
        return f"{self.keras_class}({', '.join(args)})"

    @property
    def inference_invariant(self) -> dict[str, Any]:
        """The inference-invariant arguments this layer sets (class doc), by name."""
        return {name: getattr(self, name) for name in INFERENCE_INVARIANT
                if getattr(self, name) != INFERENCE_INVARIANT[name]}

    def to_dict(self) -> dict[str, Any]:
        """Every field, but the inference-invariant ones and ``stateful`` only when set: a spec
        without them reads (and hashes in the fixtures manifest) as it did before they existed."""
        data = dataclasses.asdict(self)
        for name, default in OMITTED_AT_DEFAULT.items():
            if data[name] == default:
                del data[name]
        return {"kind": self.kind, **data}


@dataclass(frozen=True)
class BidirectionalSpec:
    """``keras.layers.Bidirectional(layer, merge_mode)``.

    The output list is ``[merged, forward states..., backward states...]``, or
    with ``merge_mode=None`` ``[forward output, backward output, states...]``.
    """

    layer: LayerSpec
    merge_mode: str | None = "concat"

    kind = "bidirectional"

    def __post_init__(self) -> None:
        _require(isinstance(self.layer, LayerSpec), "layer", self.layer, "a LayerSpec")
        _require(self.merge_mode in MERGE_MODES, "merge_mode", self.merge_mode, f"one of {MERGE_MODES}")
        _require(not self.layer.go_backwards, "layer.go_backwards", True,
                 "False (Bidirectional makes the backward copy itself)")

    @property
    def cell(self) -> str:
        return self.layer.cell

    def output_names(self) -> list[str]:
        outputs = ["output"] if self.merge_mode is not None else ["output_forward", "output_backward"]
        if not self.layer.return_state:
            return outputs
        states = self.layer.state_names
        return outputs + [f"{s}_forward" for s in states] + [f"{s}_backward" for s in states]

    def sublayers(self) -> dict[str, LayerSpec]:
        backward = dataclasses.replace(self.layer, go_backwards=True)
        return {"forward": self.layer, "backward": backward}

    def describe(self) -> str:
        return f"Bidirectional({self.layer.describe()}, merge_mode={self.merge_mode!r})"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "layer": self.layer.to_dict(), "merge_mode": self.merge_mode}


@dataclass(frozen=True)
class StackedSpec:
    """Layers applied one after another; every layer but the last returns sequences.

    A mask given to the stack reaches every layer (Keras propagates it).
    The output list is the last layer's.
    """

    layers: tuple[LayerSpec, ...]

    kind = "stacked"

    def __post_init__(self) -> None:
        _require(len(self.layers) >= 2 and all(isinstance(s, LayerSpec) for s in self.layers),
                 "layers", self.layers, "two or more LayerSpecs")
        for n, layer in enumerate(self.layers[:-1]):
            _require(layer.return_sequences and not layer.return_state,
                     f"layers[{n}]", layer.describe(),
                     "return_sequences=True, return_state=False for every layer but the last")

    @property
    def cell(self) -> str:
        return self.layers[-1].cell

    def output_names(self) -> list[str]:
        return self.layers[-1].output_names()

    def sublayers(self) -> dict[str, LayerSpec]:
        return {f"layer_{n}": layer for n, layer in enumerate(self.layers)}

    def describe(self) -> str:
        return "Sequential[" + ", ".join(s.describe() for s in self.layers) + "]"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "layers": [s.to_dict() for s in self.layers]}


@dataclass(frozen=True)
class EncoderDecoderSpec:
    """An encoder returning its states, fed as the decoder's ``initial_state``.

    Inputs are a pair ``(encoder_inputs, decoder_inputs)``; a mask and initial
    state, if any, belong to the encoder. The output list is the decoder's.
    """

    encoder: LayerSpec
    decoder: LayerSpec

    kind = "encoder_decoder"

    def __post_init__(self) -> None:
        _require(isinstance(self.encoder, LayerSpec) and self.encoder.return_state,
                 "encoder", self.encoder, "a LayerSpec with return_state=True")
        _require(isinstance(self.decoder, LayerSpec), "decoder", self.decoder, "a LayerSpec")
        _require(self.encoder.cell == self.decoder.cell, "decoder.cell", self.decoder.cell,
                 f"{self.encoder.cell!r}, the encoder's cell (the states must fit)")
        _require(self.encoder.units == self.decoder.units, "decoder.units", self.decoder.units,
                 f"{self.encoder.units}, the encoder's units (the states must fit)")

    @property
    def cell(self) -> str:
        return self.decoder.cell

    def output_names(self) -> list[str]:
        return self.decoder.output_names()

    def sublayers(self) -> dict[str, LayerSpec]:
        return {"encoder": self.encoder, "decoder": self.decoder}

    def describe(self) -> str:
        return f"EncoderDecoder({self.encoder.describe()} -> {self.decoder.describe()})"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "encoder": self.encoder.to_dict(), "decoder": self.decoder.to_dict()}


AnySpec = LayerSpec | BidirectionalSpec | StackedSpec | EncoderDecoderSpec


def spec_from_dict(data: dict[str, Any]) -> AnySpec:
    """Inverse of ``to_dict``; a malformed dict raises ValueError."""
    if not isinstance(data, dict):
        raise ValueError(f"spec must be a JSON object, got {type(data).__name__}")
    kind = data.get("kind")
    try:
        if kind == "layer":
            return LayerSpec(**{k: v for k, v in data.items() if k != "kind"})
        if kind == "bidirectional":
            return BidirectionalSpec(spec_from_dict(data["layer"]), data["merge_mode"])
        if kind == "stacked":
            return StackedSpec(tuple(spec_from_dict(s) for s in data["layers"]))
        if kind == "encoder_decoder":
            return EncoderDecoderSpec(spec_from_dict(data["encoder"]), spec_from_dict(data["decoder"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed {kind} spec: {exc}") from None
    raise ValueError(f"spec kind={kind!r} is not allowed; expected one of "
                     "('layer', 'bidirectional', 'stacked', 'encoder_decoder')")


def flag_label(return_sequences: bool, return_state: bool) -> str:
    """The id fragment for the two flags, e.g. ``seq1-state0``."""
    return f"seq{int(return_sequences)}-state{int(return_state)}"


def top_layer(spec: AnySpec) -> LayerSpec:
    """The layer whose flags decide the output list."""
    if isinstance(spec, LayerSpec):
        return spec
    if isinstance(spec, BidirectionalSpec):
        return spec.layer
    if isinstance(spec, StackedSpec):
        return spec.layers[-1]
    return spec.decoder
