"""Deliberately faulty adapters: each reproduces one classic porting bug.

They plug in through the public adapter contract (``run(case, device)``) and
compute with the oracle after applying the bug, so the only thing wrong in
their answer is the bug itself. The list-assembly faults (states swapped,
missing or extra, a flipped sequence, a state from a padded step) change the
finished list after the oracle's ``semantics.output_list``: these adapters do
not assemble through it, so a bug shared with the assembler cannot hide them.
``FAULTS`` lists them with the tensor the report must point at (None where the
list itself is wrong).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time

import numpy as np

from conformance.matrix.case import MASK_VALUE, Case, is_reduced_precision, numpy_dtype
from conformance.matrix.spec import LayerSpec
from conformance.reference import activations, expected_outputs
from tests.oracle_adapters import OracleAdapter


def _permute_gates(weights: dict[str, np.ndarray], order: list[int]) -> dict[str, np.ndarray]:
    """Reorder the gate column blocks of every matrix (what a wrong gate order does)."""
    def permute(matrix: np.ndarray) -> np.ndarray:
        blocks = np.split(matrix, len(order), axis=-1)
        return np.concatenate([blocks[i] for i in order], axis=-1)
    return {name: permute(value) for name, value in weights.items()}


def _with_mask(case: Case, mask: np.ndarray | None) -> Case:
    """The case with ``mask`` passed as mask= (whatever its source was): what a port computes
    once it has lost or changed the mask."""
    return dataclasses.replace(case, mask=mask, mask_source="argument", tokens=None, embeddings=None)


def _map_layers(case: Case, change) -> Case:
    """Apply ``change(layer_spec, weights) -> weights`` to every sub-layer's weights."""
    layers = case.spec.sublayers()
    weights = {name: change(layers[name], dict(w)) for name, w in case.weights.items()}
    return dataclasses.replace(case, weights=weights)


class FaultyAdapter(OracleAdapter):
    """Oracle with a bug: override ``corrupt_case`` and/or ``corrupt_outputs``."""

    fault = "none"
    points_at: str | None = "output"

    def corrupt_case(self, case: Case) -> Case:
        return case

    def corrupt_outputs(self, case: Case, outputs: list[np.ndarray]) -> list[np.ndarray]:
        return outputs

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        outputs = expected_outputs(self.corrupt_case(case))
        outputs = self.corrupt_outputs(case, list(outputs))
        return [np.asarray(out).astype(self.output_dtype(case)) for out in outputs]

    def output_dtype(self, case: Case) -> np.dtype:
        return numpy_dtype(case.dtype)


class LstmGatesInOnnxOrder(FaultyAdapter):
    """Keras i,f,c,o read as ONNX's i,o,f,c."""

    name, fault = "fault-lstm-onnx-gate-order", "LSTM gates permuted (ONNX order taken as Keras order)"

    def corrupt_case(self, case):
        if case.cell != "lstm":
            return case
        return _map_layers(case, lambda layer, w: _permute_gates(w, [0, 3, 1, 2]))


class GruZAndRSwapped(FaultyAdapter):
    name, fault = "fault-gru-z-r-swapped", "GRU update and reset gates swapped"

    def corrupt_case(self, case):
        if case.cell != "gru":
            return case
        return _map_layers(case, lambda layer, w: _permute_gates(w, [1, 0, 2]))


class GruResetBeforeWithResetAfterWeights(FaultyAdapter):
    """A converter that knows one GRU formula: reset-before, biases summed."""

    name, fault = "fault-gru-reset-variant", "GRU reset-before formula used with reset-after weights"

    def corrupt_case(self, case):
        if case.cell != "gru" or not case.layer.reset_after:
            return case

        def to_reset_before(layer: LayerSpec) -> LayerSpec:
            return dataclasses.replace(layer, reset_after=False)

        def weights(layer, w):
            if "bias" in w:
                w["bias"] = w["bias"][0] + w["bias"][1]
            return w

        case = _map_layers(case, weights)
        return dataclasses.replace(case, spec=_replace_layers(case.spec, to_reset_before))


class ForgetBiasIgnored(FaultyAdapter):
    """The forget block built by bias_initializer alone (unit_forget_bias not applied)."""

    name, fault = "fault-unit-forget-bias-ignored", "LSTM unit_forget_bias ignored"

    def corrupt_case(self, case):
        return _shift_forget_bias(case, lambda block, units: block - 1.0)


class ForgetBiasTwice(FaultyAdapter):
    name, fault = "fault-unit-forget-bias-twice", "LSTM unit_forget_bias applied twice"

    def corrupt_case(self, case):
        return _shift_forget_bias(case, lambda block, units: block + 1.0)


class GruRecurrentBiasDropped(FaultyAdapter):
    name, fault = "fault-gru-recurrent-bias-dropped", "GRU recurrent bias dropped"

    def corrupt_case(self, case):
        def drop(layer, w):
            if layer.cell == "gru" and layer.reset_after and "bias" in w:
                w["bias"] = np.stack([w["bias"][0], np.zeros_like(w["bias"][1])])
            return w
        return _map_layers(case, drop)


class LstmStatesAsCThenH(FaultyAdapter):
    name, fault, points_at = "fault-lstm-c-then-h", "return_state gives [c, h] instead of [h, c]", "h"

    def corrupt_outputs(self, case, outputs):
        if case.cell == "lstm" and case.layer.return_state and case.spec.kind != "bidirectional":
            outputs[-2], outputs[-1] = outputs[-1], outputs[-2]
        return outputs


class LstmCellStateMissing(FaultyAdapter):
    name, fault, points_at = "fault-lstm-c-missing", "LSTM c state missing from the list", None

    def corrupt_outputs(self, case, outputs):
        if case.cell == "lstm" and case.layer.return_state:
            outputs.pop()
        return outputs


class ExtraOutput(FaultyAdapter):
    name, fault, points_at = "fault-extra-output", "an extra tensor in the list", None

    def corrupt_outputs(self, case, outputs):
        return outputs + [outputs[-1]] if case.layer.return_state else outputs


class GoBackwardsFlippedBack(FaultyAdapter):
    name, fault = "fault-go-backwards-flipped-back", "go_backwards sequence flipped back to input order"

    def corrupt_outputs(self, case, outputs):
        layer = case.layer
        if case.spec.kind == "layer" and layer.go_backwards and layer.return_sequences:
            outputs[0] = outputs[0][:, ::-1]
        return outputs


class FinalStateFromPaddedStep(FaultyAdapter):
    """States taken after running over the padding, as if the mask were absent."""

    name, fault, points_at = "fault-state-from-padded-step", "final state taken at the last padded step", "h"

    def corrupt_outputs(self, case, outputs):
        if case.mask is None or not case.layer.return_state or case.spec.kind != "layer":
            return outputs
        unmasked = expected_outputs(_with_mask(case, None))
        n_states = len(case.layer.state_names)
        return outputs[:-n_states] + unmasked[-n_states:]


class OtherHardSigmoid(FaultyAdapter):
    name, fault = "fault-other-hard-sigmoid", "the other hard_sigmoid definition"

    SWAP = {"hard_sigmoid": "legacy_hard_sigmoid", "legacy_hard_sigmoid": "hard_sigmoid"}

    def corrupt_case(self, case):
        def swap(layer: LayerSpec) -> LayerSpec:
            return dataclasses.replace(
                layer, activation=self.SWAP.get(layer.activation, layer.activation),
                recurrent_activation=self.SWAP.get(layer.recurrent_activation, layer.recurrent_activation))
        return dataclasses.replace(case, spec=_replace_layers(case.spec, swap))


class Float16PassedOffAsFloat32(FaultyAdapter):
    """Inputs, weights and outputs rounded through float16, labelled float32."""

    name, fault = "fault-float16-as-float32", "float16 arithmetic passed off as float32"

    def corrupt_case(self, case):
        half = (lambda a: None if a is None else np.asarray(a, np.float16).astype(np.float64))
        return dataclasses.replace(
            case, x=half(case.x), decoder_x=half(case.decoder_x), embeddings=half(case.embeddings),
            earlier_x=half(case.earlier_x),
            initial_state=None if case.initial_state is None else tuple(half(s) for s in case.initial_state),
            weights={n: {k: half(v) for k, v in w.items()} for n, w in case.weights.items()})

    def corrupt_outputs(self, case, outputs):
        return [np.asarray(o, np.float16).astype(np.float64) for o in outputs]


class ReducedPrecisionIgnored(FaultyAdapter):
    """A float16 or bfloat16 request computed and answered in float32: a dtype policy that never
    reached the layer. Right numbers, wrong dtype; only the reduced-precision rows can tell."""

    name, fault = "fault-reduced-precision-ignored", "float16/bfloat16 requested, float32 computed and returned"
    caught_only_by = "reduced_precision"

    def output_dtype(self, case: Case) -> np.dtype:
        return np.dtype(np.float32) if is_reduced_precision(case.dtype) else numpy_dtype(case.dtype)


@contextlib.contextmanager
def _activations_replaced(replacements: dict):
    """The oracle computing with other activation functions for a while (its table by name)."""
    table = activations.ACTIVATION_FUNCTIONS
    saved = dict(table)
    table.update(replacements)
    try:
        yield
    finally:
        table.clear()
        table.update(saved)


class ActivationFaultyAdapter(FaultyAdapter):
    """The oracle with ``REPLACEMENTS`` in place of some activations (a runtime's own kernels)."""

    REPLACEMENTS: dict = {}

    def run(self, case, device):
        with _activations_replaced(self.REPLACEMENTS):
            return super().run(case, device)


class HardSigmoidWithoutClamp(ActivationFaultyAdapter):
    """Both hard sigmoids lowered as their straight line alone (a Mul and an Add, no Clip):
    right on the middle of the range, wrong once |x| > 3 (x/6 + 1/2) or 2.5 (0.2x + 1/2).
    Only the saturating cases reach there (the random scheme stays within about ±2)."""

    name, fault = "fault-hard-sigmoid-without-clamp", "hard_sigmoid lowered without its clamp to [0, 1]"
    caught_only_by = "saturating"
    REPLACEMENTS = {"hard_sigmoid": lambda x: x / 6.0 + 0.5, "legacy_hard_sigmoid": lambda x: x / 5.0 + 0.5}


class ActivationArgumentsClippedAtThree(ActivationFaultyAdapter):
    """tanh and sigmoid evaluated on their argument clipped to [-3, 3], as a table-driven or
    polynomial kernel with a limited domain does: off by up to 0.005 (tanh) and 0.047 (sigmoid)
    in the tails, exact inside. Only the saturating cases have arguments beyond ±3."""

    name, fault = "fault-activations-clipped-at-3", "tanh and sigmoid arguments clipped to [-3, 3]"
    caught_only_by = "saturating"
    REPLACEMENTS = {"tanh": lambda x: np.tanh(np.clip(x, -3.0, 3.0)),
                    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-np.clip(x, -3.0, 3.0)))}


class InputLayoutGuessedFromShape(FaultyAdapter):
    """An importer that guesses the input's layout from its shape and, when batch == timesteps,
    takes the batch-major input for time-major (reads it transposed): every other case's
    shapes tell the layouts apart, so only the same-size cases (b4t4) catch it."""

    name, fault = "fault-layout-guessed-from-shape", "input read time-major when batch == timesteps"
    caught_only_by = "same_sizes"

    def corrupt_case(self, case):
        batch, steps = case.x.shape[:2] if not isinstance(case.x, tuple) else case.x[0].shape[:2]
        if batch != steps or batch == 1 or isinstance(case.x, tuple):
            return case
        return dataclasses.replace(case, x=np.swapaxes(case.x, 0, 1).copy())


class DropoutAppliedAtInference(FaultyAdapter):
    """Input dropout left on at inference (a training flag not passed through): a seeded mask
    zeroes a ``dropout`` share of the inputs and scales the rest by 1 / (1 - rate). Only the
    dropout cases have a rate."""

    name, fault = "fault-dropout-at-inference", "dropout applied at inference (training flag lost)"
    caught_only_by = "dropout"

    def corrupt_case(self, case):
        rate = max(layer.dropout for layer in case.spec.sublayers().values())
        if not rate:
            return case
        keep = np.random.default_rng(0).random(case.x.shape) >= rate
        return dataclasses.replace(case, x=np.where(keep, case.x / (1.0 - rate), 0.0))


class UnrolledPathDropsTheMask(FaultyAdapter):
    """A framework whose unrolled code path (a second implementation of the time loop beside
    the scan) forgets the mask: only unroll cases under a mask take that path."""

    name, fault = "fault-unrolled-path-drops-mask", "the unrolled loop ignores the mask"
    caught_only_by = "unroll_mask"

    def corrupt_case(self, case):
        unrolls = any(layer.unroll for layer in case.spec.sublayers().values())
        if not unrolls or case.mask is None:
            return case
        return _with_mask(case, None)


class MaskingOnAnyFeature(FaultyAdapter):
    """A converter that lowers ``Masking`` as "any feature equals mask_value" instead of "all
    features do": a real step with one zero feature gets masked. Only the Masking-source cases
    have such steps (``cases.masking_input``)."""

    name, fault = "fault-masking-on-any-feature", "Masking lowered as any(x == mask_value) instead of all"
    caught_only_by = "masking"

    def corrupt_case(self, case):
        if case.mask_source != "masking":
            return case
        return _with_mask(case, np.all(case.x != MASK_VALUE, axis=-1))


class MaskZeroLoweredAsMasking(FaultyAdapter):
    """A converter that lowers ``Embedding(mask_zero=True)`` as a ``Masking(0.0)`` after the
    lookup: the mask then comes from all-zero embedded vectors, and no token's row is one
    (``cases.embedding_input``), so nothing is masked. Only Embedding-source cases notice."""

    name, fault = "fault-mask-zero-as-masking", "Embedding(mask_zero=True) lowered as Masking(0.0) on the vectors"
    caught_only_by = "embedding"

    def corrupt_case(self, case):
        if case.mask_source != "embedding":
            return case
        return _with_mask(case, np.any(case.x != MASK_VALUE, axis=-1))


class StatefulStateNotCarried(FaultyAdapter):
    """A port that runs a stateful layer as a stateless one: every call starts from zeros (what
    keras-jax's predict does, FINDINGS)."""

    name, fault = "fault-stateful-state-dropped", "stateful=True ignored: every call starts from zeros"
    caught_only_by = "stateful"

    def corrupt_case(self, case):
        return case if case.earlier_x is None else dataclasses.replace(case, reset_states=True)


class ResetStatesIgnored(FaultyAdapter):
    """A port whose ``reset_states()`` leaves the carried state in place."""

    name, fault = "fault-reset-states-ignored", "reset_states() keeps the carried state"
    caught_only_by = "stateful_reset"

    def corrupt_case(self, case):
        return dataclasses.replace(case, reset_states=False) if case.reset_states else case


def _shift_forget_bias(case: Case, shift) -> Case:
    def change(layer, w):
        if layer.cell == "lstm" and "bias" in w:
            units = layer.units
            w["bias"] = w["bias"].copy()
            w["bias"][units:2 * units] = shift(w["bias"][units:2 * units], units)
        return w
    return _map_layers(case, change)


def _replace_layers(spec, change):
    """The same composite with ``change`` applied to each of its LayerSpecs."""
    if isinstance(spec, LayerSpec):
        return change(spec)
    if spec.kind == "bidirectional":
        return dataclasses.replace(spec, layer=change(spec.layer))
    if spec.kind == "stacked":
        return dataclasses.replace(spec, layers=tuple(change(s) for s in spec.layers))
    return dataclasses.replace(spec, encoder=change(spec.encoder), decoder=change(spec.decoder))


FAULTS = [LstmGatesInOnnxOrder, GruZAndRSwapped, GruResetBeforeWithResetAfterWeights, ForgetBiasIgnored,
          ForgetBiasTwice, GruRecurrentBiasDropped, LstmStatesAsCThenH, LstmCellStateMissing, ExtraOutput,
          GoBackwardsFlippedBack, FinalStateFromPaddedStep, OtherHardSigmoid, Float16PassedOffAsFloat32,
          HardSigmoidWithoutClamp, ActivationArgumentsClippedAtThree, InputLayoutGuessedFromShape,
          DropoutAppliedAtInference, UnrolledPathDropsTheMask, MaskingOnAnyFeature, MaskZeroLoweredAsMasking,
          StatefulStateNotCarried, ResetStatesIgnored, ReducedPrecisionIgnored]


# --- adapters that break the process itself (for the supervisor tests) -----------------------


class AbortingAdapter(OracleAdapter):
    """Calls os.abort() on LSTM cases, as a crashing native runtime would."""

    name = "crash-abort"

    def run(self, case, device):
        if case.cell == "lstm":
            os.abort()
        return super().run(case, device)


class HangingAdapter(OracleAdapter):
    """Never answers on GRU cases."""

    name = "crash-hang"

    def run(self, case, device):
        if case.cell == "gru":
            while True:
                time.sleep(60)
        return super().run(case, device)


class ScriptInjectingAdapter(OracleAdapter):
    """Raises an error whose message carries markup (reports must escape it)."""

    name = "<script>alert('name')</script>"

    def run(self, case, device):
        raise RuntimeError("<script>alert('xss')</script> & <b>bold</b>")


class RaisingSupportsAdapter(OracleAdapter):
    """``supports()`` itself raises: the harness must still leave an error record."""

    name = "crash-supports"

    def supports(self, case):
        raise KeyError("no such option")


def torch_lstm_gates_i_f_swapped(key, params: dict) -> dict:
    """A torch module's LSTM parameters with gates i and f swapped (rows i, f, g, o of every
    weight and bias): the porting bug the conversion-step sensitivity tests inject."""
    if key.cell != "lstm":
        return params
    swapped = dict(params)
    for name, value in params.items():
        if value.shape[0] == 4 * key.units:
            i, f, g, o = np.split(value, 4, axis=0)
            swapped[name] = np.ascontiguousarray(np.concatenate([f, i, g, o], axis=0))
    return swapped



def keras_lstm_gates_i_f_swapped(weights: dict[str, list[np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """Keras-layout weights with an LSTM's gates i and f swapped (column blocks i, f, c, o of every
    kernel and bias; the cell is read from the kernel's width, 4 * units)."""
    swapped = {}
    for name, arrays in weights.items():
        units = arrays[1].shape[0] if len(arrays) > 1 else 0  # the recurrent kernel: (units, gates * units)
        swapped[name] = [np.concatenate([a[..., units:2 * units], a[..., :units], a[..., 2 * units:]], axis=-1)
                         if units and a.shape[-1] == 4 * units else a for a in arrays]
    return swapped


def _keras_onnx_gates_swapped(base: type) -> type:
    """``base`` (a Keras ONNX-export row) with the LSTM i/f swap in the weights it feeds the export."""

    class GatesSwapped(base):
        name = f"{base.name}-gates-swapped"

        def case_weights(self, case):
            return keras_lstm_gates_i_f_swapped(super().case_weights(case))

    GatesSwapped.__name__ = GatesSwapped.__qualname__ = f"{base.__name__}GatesSwapped"
    return GatesSwapped


def _keras_onnx_rows() -> tuple[type, type]:
    from conformance.adapters.onnx.keras_export import OnnxKerasJaxAdapter, OnnxKerasTorchAdapter

    return OnnxKerasJaxAdapter, OnnxKerasTorchAdapter


# The porting bug in the conversion step of Keras 3's ONNX export rows (the weights fed to the
# exported graph): `conformance run --adapter tests.faulty_adapters:OnnxKerasTorchGatesSwapped`.
OnnxKerasJaxGatesSwapped, OnnxKerasTorchGatesSwapped = map(_keras_onnx_gates_swapped, _keras_onnx_rows())
