"""One conformance case: a layer, its weights and inputs, and (once frozen) its answer.

An adapter receives a ``Case`` bound to one dtype (``case.dtype``) and reads
``case.x``, ``case.mask``, ``case.initial_state``, ``case.decoder_x`` and
``case.weights``, already cast to that dtype. ``case.expected`` (float64, from
the oracle) is for the comparison, never for the adapter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from conformance.matrix.spec import AnySpec, LayerSpec, top_layer
from conformance.matrix.tolerance import Tolerance, tolerance_for

DTYPES = ("float32", "float64")

LayerWeights = dict[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class Case:
    """A named layer + inputs.

    ``weights`` maps each sub-layer name of ``spec.sublayers()`` (``layer``;
    ``forward``/``backward``; ``layer_0``...; ``encoder``/``decoder``) to its
    Keras-layout weights: ``kernel``, ``recurrent_kernel`` and, with
    ``use_bias``, ``bias``.
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
        return tolerance_for(dtype or self.dtype, steps)

    def for_dtype(self, dtype: str) -> Case:
        """This case with every input and weight cast to ``dtype``."""
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r} is not allowed; expected one of {DTYPES}")
        cast = (lambda a: None if a is None else np.asarray(a, dtype=dtype))
        return dataclasses.replace(
            self,
            dtype=dtype,
            x=cast(self.x),
            decoder_x=cast(self.decoder_x),
            initial_state=None if self.initial_state is None
            else tuple(cast(s) for s in self.initial_state),
            weights={name: {k: cast(v) for k, v in w.items()} for name, w in self.weights.items()},
        )

    def describe(self) -> str:
        return self.spec.describe()


def test_id(case_id: str, adapter: str, device: str, dtype: str) -> str:
    """A result's key everywhere (pytest, records, known differences): ``case[adapter-device-dtype]``."""
    return f"{case_id}[{adapter}-{device}-{dtype}]"
