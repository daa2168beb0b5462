"""Which known porting mistake a failing result matches: the diagnosis on a failure.

A porter whose LSTM fails wants more than "values differ": they want "your
gates i and f are swapped". For each mistake of the catalogue below, the
oracle is recomputed on the case with the mistake applied (the weights
permuted, a flag flipped, the mask dropped) or the finished list changed (the
states swapped); where that answer matches what the adapter returned within
the case's own tolerance, the failure is diagnosed in words:
"matches Keras with the LSTM gates i and f swapped (max error 3e-08)".

Each mistake is a few declarative lines: its words, the cases it can apply
to, and one change. The first that matches is the diagnosis; none matching
is no diagnosis (the failure keeps only its verdict). A mistake that changes
nothing for a case can never match a failure, since the failure is, by
definition, not within tolerance of the unchanged answer.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from conformance.matrix.case import Case
from conformance.matrix.spec import LayerSpec
from conformance.reference import expected_outputs

Weights = dict[str, np.ndarray]
GATES = {"lstm": "ifco", "gru": "zrh"}  # Keras's gate blocks, in its column order (GRU's candidate: h)


@dataclass(frozen=True)
class Mistake:
    """One porting mistake: ``change_case`` recomputes the oracle on a changed case, ``change_outputs``
    changes the oracle's finished list; ``applies`` says where the mistake can be made at all."""

    words: str
    applies: Callable[[Case], bool]
    change_case: Callable[[Case], Case] | None = None
    change_outputs: Callable[[Case, list[np.ndarray]], list[np.ndarray]] | None = None

    def outputs(self, case: Case) -> list[np.ndarray]:
        changed = self.change_case(case) if self.change_case else case
        outputs = list(expected_outputs(changed))
        return self.change_outputs(case, outputs) if self.change_outputs else outputs


@dataclass(frozen=True)
class Diagnosis:
    """The mistakes whose answer the failing result matches (several where the case cannot tell them
    apart, e.g. gates with identical weights), and the largest difference from the first one's."""

    mistakes: tuple[str, ...]
    max_error: float

    def text(self) -> str:
        if len(self.mistakes) == 1:
            return f"matches Keras with {self.mistakes[0]} (max error {self.max_error:.1g})"
        return (f"matches Keras with {', or with '.join(self.mistakes)} (this case cannot tell them apart; "
                f"max error {self.max_error:.1g})")


# --- the changes the mistakes are made of ------------------------------------------------------


def each_layer(change: Callable[[LayerSpec, Weights], Weights]) -> Callable[[Case], Case]:
    """A case change applying ``change(layer, weights)`` to every sub-layer's weights (copies)."""
    def apply(case: Case) -> Case:
        layers = case.spec.sublayers()
        weights = {name: change(layers[name], {k: np.array(v) for k, v in w.items()})
                   for name, w in case.weights.items()}
        return dataclasses.replace(case, weights=weights)
    return apply


def each_spec(change: Callable[[LayerSpec], LayerSpec]) -> Callable[[Case], Case]:
    """A case change applying ``change`` to every LayerSpec of the case's (composite) spec."""
    return lambda case: dataclasses.replace(case, spec=changed_spec(case.spec, change))


def changed_spec(spec, change: Callable[[LayerSpec], LayerSpec]):
    if isinstance(spec, LayerSpec):
        return change(spec)
    if spec.kind == "bidirectional":
        return dataclasses.replace(spec, layer=change(spec.layer))
    if spec.kind == "stacked":
        return dataclasses.replace(spec, layers=tuple(change(s) for s in spec.layers))
    return dataclasses.replace(spec, encoder=change(spec.encoder), decoder=change(spec.decoder))


def state_not_carried(case: Case) -> Case:
    """The stateful call run as a fresh one: the earlier call's state dropped."""
    spec = changed_spec(case.spec, lambda layer: dataclasses.replace(layer, stateful=False))
    return dataclasses.replace(case, spec=spec, earlier_x=None, reset_states=False)


def gate_blocks(change: Callable[[list[np.ndarray]], list[np.ndarray]], keys=("kernel", "recurrent_kernel", "bias")):
    """A weights change on the gate column blocks of each named matrix (all three by default)."""
    def apply(layer: LayerSpec, weights: Weights) -> Weights:
        for key in keys:
            if key in weights:
                blocks = np.split(weights[key], len(GATES[layer.cell]), axis=-1)
                weights[key] = np.concatenate(change(blocks), axis=-1)
        return weights
    return apply


def bias_change(change: Callable[[LayerSpec, np.ndarray], np.ndarray]):
    def apply(layer: LayerSpec, weights: Weights) -> Weights:
        if "bias" in weights:
            weights["bias"] = change(layer, weights["bias"])
        return weights
    return apply


def forget_bias_shift(shift: float):
    def apply(layer: LayerSpec, bias: np.ndarray) -> np.ndarray:
        bias = bias.copy()
        bias[layer.units:2 * layer.units] += shift
        return bias
    return apply


def gru_reset_flipped(case: Case) -> Case:
    """The other GRU formula with the weights as they are (reset_after's two biases summed into one)."""
    def weights(layer: LayerSpec, w: Weights) -> Weights:
        if "bias" in w:
            w["bias"] = w["bias"][0] + w["bias"][1] if layer.reset_after else np.stack([w["bias"], 0 * w["bias"]])
        return w
    flipped = each_layer(weights)(case)
    return each_spec(lambda layer: dataclasses.replace(layer, reset_after=not layer.reset_after))(flipped)


def without_mask(case: Case) -> Case:
    return dataclasses.replace(case, mask=None, mask_source="argument", tokens=None, embeddings=None)


def inverted_mask(case: Case) -> Case:
    return dataclasses.replace(case, mask=~case.mask, mask_source="argument", tokens=None, embeddings=None)


def states_of_unmasked_run(case: Case, outputs: list[np.ndarray]) -> list[np.ndarray]:
    count = len(case.output_names) - 1
    return outputs[:1] + list(expected_outputs(without_mask(case)))[-count:]


def lstm_h_and_c_swapped(case: Case, outputs: list[np.ndarray]) -> list[np.ndarray]:
    return outputs[:-2] + [outputs[-1], outputs[-2]]


def directions_swapped(case: Case, outputs: list[np.ndarray]) -> list[np.ndarray]:
    half = (len(outputs) - 1) // 2
    return outputs[:1] + outputs[1 + half:] + outputs[1:1 + half]


def sequence_flipped(case: Case, outputs: list[np.ndarray]) -> list[np.ndarray]:
    return [outputs[0][:, ::-1]] + outputs[1:]


def batch_and_time_swapped(case: Case) -> Case:
    """The batch-major input read as time-major (an importer guessing the layout from a square shape):
    the steps run along the batch axis."""
    return dataclasses.replace(case, x=np.swapaxes(case.x, 0, 1))


def legacy_hard_sigmoid_swapped(layer: LayerSpec) -> LayerSpec:
    other = {"hard_sigmoid": "legacy_hard_sigmoid", "legacy_hard_sigmoid": "hard_sigmoid"}
    return dataclasses.replace(layer, activation=other.get(layer.activation, layer.activation),
                               recurrent_activation=other.get(layer.recurrent_activation, layer.recurrent_activation))


# --- the catalogue --------------------------------------------------------------------------------


def gate_order_words(cell: str, order: tuple[int, ...]) -> str:
    names = GATES[cell]
    moved = [n for n, k in enumerate(order) if k != n]
    if len(moved) == 2:
        return f"the {CELL_NAMES[cell]} gates {names[moved[0]]} and {names[moved[1]]} swapped"
    return (f"the {CELL_NAMES[cell]} gates read in the order {', '.join(names[k] for k in order)} "
            f"(Keras's is {', '.join(names)})")


CELL_NAMES = {"lstm": "LSTM", "gru": "GRU"}


def gate_permutations() -> list[Mistake]:
    mistakes = []
    for cell, names in GATES.items():
        for order in itertools.permutations(range(len(names))):
            if order != tuple(range(len(names))):
                permute = gate_blocks(lambda blocks, order=order: [blocks[k] for k in order])
                mistakes.append(Mistake(gate_order_words(cell, order), lambda case, cell=cell: case.cell == cell,
                                        each_layer(permute)))
    return mistakes


def is_layer(case: Case) -> bool:
    return isinstance(case.spec, LayerSpec)


def returns_state(case: Case) -> bool:
    """The list ends with the top layer's states (a Bidirectional's are two groups)."""
    return case.layer.return_state and case.spec.kind != "bidirectional"


def uses(activation: str) -> Callable[[Case], bool]:
    return lambda case: any(activation in (layer.activation, layer.recurrent_activation)
                            for layer in case.spec.sublayers().values())


CATALOGUE: list[Mistake] = gate_permutations() + [
    Mistake("the recurrent kernel transposed within each gate", lambda case: True,
            each_layer(gate_blocks(lambda blocks: [b.T for b in blocks], keys=("recurrent_kernel",)))),
    Mistake("the kernel transposed within each gate", lambda case: is_layer(case) and case.features == case.layer.units,
            each_layer(gate_blocks(lambda blocks: [b.T for b in blocks], keys=("kernel",)))),
    Mistake("the bias added twice", lambda case: True, each_layer(bias_change(lambda layer, b: 2 * b))),
    Mistake("the bias left out", lambda case: True, each_layer(bias_change(lambda layer, b: 0 * b))),
    Mistake("the forget-gate bias one too high (unit_forget_bias applied twice)", lambda case: case.cell == "lstm",
            each_layer(bias_change(forget_bias_shift(1.0)))),
    Mistake("the forget-gate bias one too low (unit_forget_bias not applied)", lambda case: case.cell == "lstm",
            each_layer(bias_change(forget_bias_shift(-1.0)))),
    Mistake("the GRU recurrent bias left out", lambda case: case.cell == "gru",
            each_layer(bias_change(lambda layer, b: np.stack([b[0], 0 * b[1]]) if b.ndim == 2 else b))),
    Mistake("the GRU input bias left out", lambda case: case.cell == "gru",
            each_layer(bias_change(lambda layer, b: np.stack([0 * b[0], b[1]]) if b.ndim == 2 else b))),
    Mistake("GRU reset_after flipped (the other reset formula, biases summed)", lambda case: case.cell == "gru",
            gru_reset_flipped),
    Mistake("the other hard_sigmoid (Keras 2's 0.2x + 0.5 for Keras 3's x/6 + 0.5, or back)",
            lambda case: uses("hard_sigmoid")(case) or uses("legacy_hard_sigmoid")(case),
            each_spec(legacy_hard_sigmoid_swapped)),
    Mistake("the time order reversed (go_backwards flipped)", is_layer,
            each_spec(lambda layer: dataclasses.replace(layer, go_backwards=not layer.go_backwards))),
    Mistake("the go_backwards sequence flipped back to input order",
            lambda case: is_layer(case) and case.layer.go_backwards and case.layer.return_sequences,
            change_outputs=sequence_flipped),
    Mistake("the mask ignored", lambda case: case.mask is not None, without_mask),
    Mistake("the mask inverted", lambda case: case.mask is not None, inverted_mask),
    Mistake("the final state taken at the last padded step (the mask not applied to the states)",
            lambda case: case.mask is not None and returns_state(case), change_outputs=states_of_unmasked_run),
    Mistake("h and c swapped in the returned states", lambda case: returns_state(case) and case.cell == "lstm",
            change_outputs=lstm_h_and_c_swapped),
    Mistake("the forward and backward states swapped",
            lambda case: case.spec.kind == "bidirectional" and case.spec.layer.return_state,
            change_outputs=directions_swapped),
    Mistake("the state of the earlier call not carried (stateful ignored)",
            lambda case: case.earlier_x is not None and not case.reset_states,
            state_not_carried),
    Mistake("reset_states() ignored (the earlier call's state carried on)",
            lambda case: case.earlier_x is not None and case.reset_states,
            lambda case: dataclasses.replace(case, reset_states=False)),
    Mistake("batch and time swapped (the batch-major input read as time-major)",
            lambda case: case.decoder_x is None and case.earlier_x is None and case.batch == case.timesteps > 1,
            batch_and_time_swapped),
]


# --- matching ------------------------------------------------------------------------------------


def max_error_within(case: Case, actual: list[Any], candidate: list[np.ndarray]) -> float | None:
    """The largest abs difference between ``actual`` and ``candidate`` when every value is within the
    case's tolerance of it (shapes equal, no NaN), else None."""
    if len(actual) != len(candidate):
        return None
    tolerance, worst = case.tolerance(), 0.0
    for got, want in zip(actual, candidate):
        got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
        if got.shape != want.shape:
            return None
        error = np.abs(got - want)
        if not np.all(error <= tolerance.atol + tolerance.rtol * np.abs(want)):  # NaN: not within
            return None
        worst = max(worst, float(error.max(initial=0.0)))
    return worst


def diagnose(case: Case, actual: Any) -> Diagnosis | None:
    """Every mistake of the catalogue whose answer ``actual`` (a failing result) matches, or None."""
    if not isinstance(actual, (list, tuple)) or case.dtype not in ("float32", "float64"):
        return None
    matched: list[tuple[str, float]] = []
    with np.errstate(all="ignore"):
        for mistake in CATALOGUE:
            if not mistake.applies(case):
                continue
            try:
                candidate = mistake.outputs(case)
            except (ValueError, IndexError, KeyError, TypeError):  # a mistake this case's shapes cannot make
                continue
            error = max_error_within(case, list(actual), candidate)
            if error is not None:
                matched.append((mistake.words, error))
    if not matched:
        return None
    return Diagnosis(tuple(words for words, _ in matched), matched[0][1])


__all__ = ["CATALOGUE", "Diagnosis", "Mistake", "diagnose"]
