"""One conformance case: a layer, its weights and inputs, and (once frozen) its answer.

An adapter receives a ``Case`` bound to one dtype (``case.dtype``) and reads
``case.x``, ``case.mask``, ``case.initial_state``, ``case.decoder_x`` and
``case.weights``, already cast to that dtype (and, where they exist, ``case.tokens`` /
``case.embeddings`` and ``case.earlier_x``: see ``Case``). ``case.expected`` (float64, from
the oracle) is for the comparison, never for the adapter: an adapter is handed the
``question`` alone, in a process that never holds the answer (``conformance.adapters.worker``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from conformance.matrix.spec import AnySpec, LayerSpec, top_layer
from conformance.matrix.tolerance import Tolerance, tolerance_for

DTYPES = ("float32", "float64", "float16", "bfloat16")
# Rows judged by the reduced-precision rule (tolerance.py) and counted apart from the float32
# verdict: cases with these dtypes have inputs and weights that every dtype holds exactly.
REDUCED_PRECISION = ("float16", "bfloat16")
# Where a case's mask comes from in a Keras model: the layer's ``mask=`` argument, a
# ``Masking(mask_value=MASK_VALUE)`` layer ahead of it, which derives the same mask from x
# (every feature of a masked step is exactly MASK_VALUE, and no real step is all MASK_VALUE),
# or an ``Embedding(mask_zero=True)`` whose tokens are 0 exactly at the masked steps.
MASK_SOURCES = ("argument", "masking", "embedding")
MASK_VALUE = 0.0

LayerWeights = dict[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class Case:
    """A named layer + inputs.

    ``weights`` maps each sub-layer name of ``spec.sublayers()`` (``layer``;
    ``forward``/``backward``; ``layer_0``...; ``encoder``/``decoder``) to its
    Keras-layout weights: ``kernel``, ``recurrent_kernel`` and, with
    ``use_bias``, ``bias``.

    ``mask_source`` says how a Keras model receives ``mask`` (``MASK_SOURCES``);
    an adapter of another framework reads ``mask`` either way, as a port does.
    With ``"embedding"``, ``tokens`` (int, batch x timesteps, 0 where masked) and
    ``embeddings`` (vocabulary x features) are what the Keras model reads, and ``x``
    is ``embeddings[tokens]``, what an ``Embedding`` gives the layer.

    ``earlier_x`` (with a ``stateful`` layer): the input of the call made before
    this one on the same layer, whose final state the layer carries into this call;
    ``reset_states``: ``reset_states()`` is called between the two calls, so this
    call starts from zeros again. ``expected`` is this (the later) call's list.
    """

    id: str
    spec: AnySpec
    x: np.ndarray
    weights: dict[str, LayerWeights]
    mask: np.ndarray | None = None
    initial_state: tuple[np.ndarray, ...] | None = None
    decoder_x: np.ndarray | None = None
    scheme: str = "random"
    option: str = "plain"
    dtypes: tuple[str, ...] = ("float32",)
    dtype: str = "float32"
    expected: tuple[np.ndarray, ...] | None = field(default=None, repr=False)
    mask_source: str = "argument"
    tokens: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    earlier_x: np.ndarray | None = None
    reset_states: bool = False

    def __post_init__(self) -> None:
        if self.mask_source not in MASK_SOURCES:
            raise ValueError(f"mask_source={self.mask_source!r} is not allowed; expected one of {MASK_SOURCES}")
        if self.mask_source == "masking" and not _masking_derives(self.x, self.mask):
            raise ValueError(f"case {self.id!r}: a Masking layer would not derive its mask from x "
                             f"(masked steps must be all {MASK_VALUE}, real steps not)")
        if (self.mask_source == "embedding") != (self.tokens is not None and self.embeddings is not None):
            raise ValueError(f"case {self.id!r}: tokens and embeddings go with mask_source='embedding', "
                             "and only with it")
        if self.mask_source == "embedding" and not _embedding_derives(self):
            raise ValueError(f"case {self.id!r}: Embedding(mask_zero=True) would not give x and mask "
                             "(x must be embeddings[tokens], mask tokens != 0)")
        stateful = any(layer.stateful for layer in self.spec.sublayers().values())
        if stateful != (self.earlier_x is not None) or (self.reset_states and not stateful):
            raise ValueError(f"case {self.id!r}: earlier_x (and reset_states) go with a stateful layer, "
                             "and a stateful layer with earlier_x")

    @property
    def cell(self) -> str:
        return self.spec.cell

    @property
    def layer(self) -> LayerSpec:
        """The layer whose flags decide the output list."""
        return top_layer(self.spec)

    @property
    def batch(self) -> int:
        return int(self.x.shape[0])

    @property
    def timesteps(self) -> int:
        return int(self.x.shape[1])

    @property
    def features(self) -> int:
        return int(self.x.shape[2])

    @property
    def output_names(self) -> list[str]:
        return self.spec.output_names()

    @property
    def group(self) -> str:
        """Cell and flags, e.g. ``lstm seq1-state0``: how reports group cases."""
        layer = self.layer
        return f"{self.cell} seq{int(layer.return_sequences)}-state{int(layer.return_state)}"

    def tolerance(self, dtype: str | None = None) -> Tolerance:
        steps = self.timesteps
        if self.decoder_x is not None:
            steps += int(self.decoder_x.shape[1])
        if self.earlier_x is not None and not self.reset_states:
            steps += int(self.earlier_x.shape[1])  # the state this call starts from went through them
        return tolerance_for(dtype or self.dtype, steps)

    def for_dtype(self, dtype: str) -> Case:
        """This case with every input and weight cast to ``dtype``: arrays of its own, the mask, the
        tokens and the answer included (``fresh_copy``), so that nothing an adapter writes into
        them reaches another dtype's row of the case."""
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r} is not allowed; expected one of {DTYPES}")
        numpy_type = numpy_dtype(dtype)
        return self._with_arrays(lambda a: np.asarray(a).astype(numpy_type), dtype=dtype)

    def fresh_copy(self) -> Case:
        """This case with a copy of every array: what an adapter is handed (``check_case``), so that
        what it writes into its inputs (an in-place optimisation) reaches no verdict."""
        return self._with_arrays(lambda a: np.array(a, copy=True))

    def question(self) -> Case:
        """What an adapter is handed: a ``fresh_copy`` without the answer (``expected`` None), so that
        no adapter can return the golden outputs it was given (issue 30)."""
        return self._with_arrays(lambda a: np.array(a, copy=True), expected=None)

    def _with_arrays(self, convert, **changes) -> Case:
        """This case with ``convert`` applied to x, the states and weights (the inputs an adapter
        reads in the case's dtype), and a copy of the mask, tokens and answer (which keep theirs)."""
        convert_or_none = (lambda a: None if a is None else convert(a))
        copy_or_none = (lambda a: None if a is None else np.array(a, copy=True))
        answer = changes.pop("expected", self.expected)
        return dataclasses.replace(
            self,
            x=convert(self.x),
            decoder_x=convert_or_none(self.decoder_x),
            embeddings=convert_or_none(self.embeddings),
            earlier_x=convert_or_none(self.earlier_x),
            initial_state=None if self.initial_state is None
            else tuple(convert(s) for s in self.initial_state),
            weights={name: {k: convert(v) for k, v in w.items()} for name, w in self.weights.items()},
            mask=copy_or_none(self.mask),
            tokens=copy_or_none(self.tokens),
            expected=None if answer is None else tuple(np.array(a, copy=True) for a in answer),
            **changes,
        )

    def describe(self) -> str:
        return self.spec.describe()


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a dtype name; ``bfloat16`` is ``ml_dtypes.bfloat16`` (numpy has none)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def is_floating(dtype: np.dtype) -> bool:
    """Whether a numpy dtype holds floats: numpy's own, or ``ml_dtypes.bfloat16`` (whose kind is 'V')."""
    return np.dtype(dtype).kind == "f" or np.dtype(dtype).name == "bfloat16"


def is_reduced_precision(dtype: str) -> bool:
    return dtype in REDUCED_PRECISION


def _masking_derives(x, mask) -> bool:
    """Whether ``Masking(mask_value=MASK_VALUE)`` on ``x`` gives exactly ``mask``."""
    if mask is None or not isinstance(x, np.ndarray):
        return False
    return bool(np.array_equal(np.any(x != MASK_VALUE, axis=-1), mask))


def _embedding_derives(case: Case) -> bool:
    """Whether ``Embedding(mask_zero=True)`` on ``case.tokens`` gives exactly ``case.x`` and ``case.mask``."""
    tokens, embeddings = case.tokens, case.embeddings
    if not (isinstance(tokens, np.ndarray) and tokens.dtype.kind == "i" and tokens.ndim == 2
            and isinstance(embeddings, np.ndarray) and embeddings.ndim == 2 and case.mask is not None):
        return False
    if tokens.min() < 0 or tokens.max() >= embeddings.shape[0]:
        return False
    return bool(np.array_equal(embeddings[tokens], case.x) and np.array_equal(tokens != 0, case.mask))


def test_id(case_id: str, adapter: str, device: str, dtype: str) -> str:
    """A result's key everywhere (pytest, records, known differences): ``case[adapter-device-dtype]``."""
    return f"{case_id}[{adapter}-{device}-{dtype}]"
