"""Cases drawn from the space the fixed matrix covers, rather than listed: each a ``Draw``.

The fixed families (``cases.py``) cross chosen values; a ``Draw`` picks every dimension they use
independently — cell, flags, composite (layer, Bidirectional with each merge mode, a stack, an
encoder-decoder), go_backwards, activations, bias, GRU's reset, zero_output_for_mask, unroll,
dropout, stateful calls, the mask (none, right-padded, with holes, an empty row) and its source
(an argument, a Masking layer, an Embedding), initial states, the weight scheme, the sizes
(batch, steps, features, units) and the dtype — and ``Draw.normalized`` folds a combination the
fixed families never build into the nearest one they do (a stateful layer takes no mask; a
Masking layer needs a mask; ...), so that every drawn case is one Keras defines.

The field defaults are the simplest case, and every choice lists its simplest value first:
what Hypothesis shrinks towards (``conformance.commands.search``).

Ids follow the fixed grammar, ``{cell}-seq{0|1}-state{0|1}-{scheme}-b{B}t{T}-drawn{KEY}-{option}``,
the option label built from the draw's parts with the fixed families' names (``mask_holes``,
``bidi_concat``, ``go_backwards``, ``stateful_reset``, ...), so that the known-differences
patterns written for the fixed matrix apply to drawn cases as well. ``KEY`` is a short hash of the
draw: the same draw gives the same id and the same values on every machine (the values are
seeded by the id, as every case's are).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from conformance.matrix.case import Case, is_reduced_precision
from conformance.matrix.making import (
    EARLIER_STEPS,
    SATURATING_INPUT,
    make_case,
    mask_with_empty_row,
    mask_with_holes,
    on_reduced_grid,
    right_padded_mask,
    rng_for,
)
from conformance.matrix.spec import (
    MERGE_MODES,
    AnySpec,
    BidirectionalSpec,
    EncoderDecoderSpec,
    LayerSpec,
    StackedSpec,
    flag_label,
)
from conformance.matrix.weights import uniform

# Each dimension's values, simplest first (what shrinking moves towards).
CELL_ORDER = ("simple_rnn", "gru", "lstm")
COMPOSITES = ("layer", "bidirectional", "stacked", "encdec")
ACTIVATIONS = ("tanh", "relu", "linear", "sigmoid")
RECURRENT_ACTIVATIONS = ("sigmoid", "hard_sigmoid", "legacy_hard_sigmoid")
STATEFUL = ("none", "carry", "reset")
MASKS = ("none", "right", "holes", "empty_row")
MASK_SOURCES = ("argument", "masking", "embedding")
SCHEMES = ("constant", "per_gate", "random", "saturating")
DTYPES = ("float32", "float64", "float16", "bfloat16")
MASK_MAKERS = {"right": right_padded_mask, "holes": mask_with_holes, "empty_row": mask_with_empty_row}
# The sizes a draw takes (the fixed matrix: batch 1-4, steps 1-48, features 2-4, units 1-5).
MAX_BATCH, MAX_STEPS, MAX_FEATURES, MAX_UNITS = 4, 12, 5, 6
# The draws adopted into the fixed matrix (``conformance search --adopt``): the ``adopted_cases`` family.
ADOPTED = Path(__file__).resolve().parent / "drawn_cases.json"


@dataclasses.dataclass(frozen=True)
class Draw:
    """One point of the matrix's space; the defaults are the simplest case (a 1-step, 1-unit
    SimpleRNN on constant weights)."""

    cell: str = "simple_rnn"
    return_sequences: bool = False
    return_state: bool = False
    composite: str = "layer"
    merge_mode: str | None = "concat"
    go_backwards: bool = False
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    use_bias: bool = True
    reset_after: bool = True
    zero_output_for_mask: bool = False
    unroll: bool = False
    dropout: bool = False
    stateful: str = "none"
    mask: str = "none"
    mask_source: str = "argument"
    initial_state: bool = False
    scheme: str = "constant"
    batch: int = 1
    steps: int = 1
    features: int = 1
    units: int = 1
    dtype: str = "float32"

    def normalized(self) -> Draw:
        """The nearest draw the fixed families could build: fields a combination makes meaningless
        set to their defaults, and the combinations Keras (or the suite's cases) do not define folded
        away. Idempotent: the rules are applied until none changes anything."""
        d, before = self._normalized_once(), self
        while d != before:
            d, before = d._normalized_once(), d
        return d

    def _normalized_once(self) -> Draw:
        d = self
        if d.cell == "simple_rnn":
            d = dataclasses.replace(d, recurrent_activation="sigmoid")
        if d.cell != "gru":
            d = dataclasses.replace(d, reset_after=True)
        if d.composite != "bidirectional":
            d = dataclasses.replace(d, merge_mode="concat")
        else:  # Bidirectional makes the backward copy itself
            d = dataclasses.replace(d, go_backwards=False)
        if d.stateful != "none":  # the stateful family: a plain layer, no mask, no initial state
            d = dataclasses.replace(d, composite="layer", mask="none", initial_state=False)
        if d.mask == "none":
            d = dataclasses.replace(d, mask_source="argument", zero_output_for_mask=False)
        if d.mask_source == "masking" and d.composite == "encdec":
            d = dataclasses.replace(d, mask_source="argument")
        if d.mask_source == "masking":  # Masking needs a feature beside the one zeroed at each row's start
            d = dataclasses.replace(d, features=max(d.features, 2))
        if d.mask_source == "embedding" and d.composite not in ("layer", "bidirectional"):
            d = dataclasses.replace(d, mask_source="argument")
        if d.composite == "encdec":  # at least 2 steps: the decoder reads steps - 1
            d = dataclasses.replace(d, steps=max(d.steps, 2))
        return d

    def key(self) -> str:
        """Six hex digits of the draw's content: the same draw, the same key, anywhere."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:6]

    def option(self) -> str:
        """The option label, the fixed families' names joined in a fixed order ("plain" for none)."""
        parts = [{"layer": "", "bidirectional": f"bidi_{self.merge_mode or 'none'}", "stacked": "stacked",
                  "encdec": "encdec"}[self.composite]]
        if self.mask != "none":
            source = {"argument": "mask", "masking": "masking", "embedding": "embedding"}[self.mask_source]
            parts.append(f"{source}_{self.mask}")
        parts += [name for name, on in (
            ("go_backwards", self.go_backwards), ("initial_state", self.initial_state),
            ("zero_output_for_mask", self.zero_output_for_mask), ("no_bias", not self.use_bias),
            ("reset_before", not self.reset_after), ("unroll", self.unroll), ("dropout", self.dropout),
            ("stateful", self.stateful == "carry"), ("stateful_reset", self.stateful == "reset"),
            ("reduced_precision", is_reduced_precision(self.dtype))) if on]
        if self.activation != "tanh":
            parts.append("sigmoid_activation" if self.activation == "sigmoid" else self.activation)
        if self.recurrent_activation != "sigmoid":
            parts.append(self.recurrent_activation)
        return "_".join(p for p in parts if p) or "plain"

    def case_id(self, label: str | None = None) -> str:
        """The id in the fixed grammar; ``label`` stands where ``drawn{KEY}`` does (an unseen case's
        ``unseen{SEED}-{INDEX}``: ``conformance.matrix.unseen``)."""
        return (f"{self.cell}-{flag_label(self.return_sequences, self.return_state)}-{self.scheme}"
                f"-b{self.batch}t{self.steps}-{label or 'drawn' + self.key()}-{self.option()}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def layer_spec(draw: Draw, units: int, return_sequences: bool, return_state: bool, **more) -> LayerSpec:
    """The drawn layer's arguments with the given output flags."""
    dropout = 0.5 if draw.dropout else 0.0
    return LayerSpec(draw.cell, units, return_sequences=return_sequences, return_state=return_state,
                     go_backwards=draw.go_backwards, activation=draw.activation,
                     recurrent_activation=draw.recurrent_activation, use_bias=draw.use_bias,
                     reset_after=draw.reset_after, zero_output_for_mask=draw.zero_output_for_mask,
                     unroll=draw.unroll, dropout=dropout, recurrent_dropout=dropout,
                     stateful=draw.stateful != "none", **more)


def spec_of(draw: Draw) -> AnySpec:
    """The spec: the drawn layer alone or in its composite, as the fixed families compose them."""
    top = layer_spec(draw, draw.units, draw.return_sequences, draw.return_state)
    if draw.composite == "bidirectional":
        return BidirectionalSpec(top, draw.merge_mode)
    if draw.composite == "stacked":
        return StackedSpec((layer_spec(draw, draw.units + 1, True, False), top))
    if draw.composite == "encdec":
        return EncoderDecoderSpec(layer_spec(draw, draw.units, False, True), top)
    return top


def drawn_case(draw: Draw) -> Case:
    """The case of ``draw`` bound to its dtype (``Case.for_dtype``), its values seeded by its id; no
    expected answer (the oracle gives it: ``conformance.reference.expected_outputs``)."""
    draw = draw.normalized()
    return base_case(draw).for_dtype(draw.dtype)


def base_case(draw: Draw, label: str | None = None) -> Case:
    """The case of a normalized ``draw`` as the fixtures hold cases: float32 values (on the bfloat16 grid
    for a reduced dtype), ``dtypes`` its one drawn dtype; ``label`` as in ``Draw.case_id``."""
    case_id = draw.case_id(label)
    x = None
    if draw.scheme == "saturating":
        x = uniform(rng_for(case_id + "/x"), -SATURATING_INPUT, SATURATING_INPUT,
                    (draw.batch, draw.steps, draw.features))
    case = make_case(case_id, spec_of(draw), draw.scheme, draw.batch, draw.steps, draw.option(),
                     mask=MASK_MAKERS.get(draw.mask), initial_state=draw.initial_state, features=draw.features,
                     x=x, dtypes=(draw.dtype,), mask_source=draw.mask_source,
                     earlier_steps=EARLIER_STEPS if draw.stateful != "none" else None,
                     reset_states=draw.stateful == "reset")
    return on_reduced_grid(case) if is_reduced_precision(draw.dtype) else case


NO_YES, YES_NO = (False, True), (True, False)
# Every field of ``Draw`` and the values a draw takes, simplest (the default) first: the space the
# search explores (``draws``) and unseen cases come from (``conformance.matrix.unseen``).
SPACE: dict[str, tuple] = {
    "cell": CELL_ORDER, "return_sequences": NO_YES, "return_state": NO_YES, "composite": COMPOSITES,
    "merge_mode": MERGE_MODES, "go_backwards": NO_YES, "activation": ACTIVATIONS,
    "recurrent_activation": RECURRENT_ACTIVATIONS, "use_bias": YES_NO, "reset_after": YES_NO,
    "zero_output_for_mask": NO_YES, "unroll": NO_YES, "dropout": NO_YES, "stateful": STATEFUL, "mask": MASKS,
    "mask_source": MASK_SOURCES, "initial_state": NO_YES, "scheme": SCHEMES,
    "batch": tuple(range(1, MAX_BATCH + 1)), "steps": tuple(range(1, MAX_STEPS + 1)),
    "features": tuple(range(1, MAX_FEATURES + 1)), "units": tuple(range(1, MAX_UNITS + 1)), "dtype": DTYPES,
}


def draws(dtypes: tuple[str, ...] = DTYPES):
    """The Hypothesis strategy over ``Draw``: every dimension of ``SPACE`` independent, simplest values
    first (what Hypothesis shrinks towards), the dtype one of ``dtypes``."""
    from hypothesis import strategies as st

    fields = {name: st.sampled_from(values) for name, values in SPACE.items()}
    return st.builds(Draw, **{**fields, "dtype": st.sampled_from(dtypes)}).map(Draw.normalized)


def adopted_cases() -> Iterator[Case]:
    """The fixed matrix's family of drawn cases a search found and a maintainer adopted
    (``ADOPTED``), each with its drawn dtype; their exact answers are built like every case's."""
    for fields in json.loads(ADOPTED.read_text(encoding="utf-8")):
        yield base_case(Draw(**fields).normalized())
