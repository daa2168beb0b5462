"""The public API: the names an adapter, a vendor's script or a user's notebook may rely on.

Everything here keeps its name and meaning across releases (a change is a CHANGELOG entry);
every other module of the package is internal and may change without notice. Importing this
module loads no framework.

- The adapter contract: ``Adapter`` (the optional base), ``Reproducer``, ``LoadedAdapter`` and
  ``load_adapter``, ``missing_module_reason`` and ``reduced_precision_allowed``;
  ``OnnxConsumerAdapter``, the base for a runtime that consumes ONNX.
- What an adapter is handed: ``Case`` and ``DTYPES``; the specs ``LayerSpec``,
  ``BidirectionalSpec``, ``StackedSpec``, ``EncoderDecoderSpec``.
- The Keras rules an adapter reuses instead of restating: ``conformance.semantics``'s
  ``LayerRun``, ``output_list``, ``route``, ``output_layers``, ``masked_sublayers``,
  ``split_initial_state``, ``right_padded_lengths``, ``processing_order``, ``last_output``,
  ``first_layer`` and ``stateful_reason``.
- The oracle: ``forward`` (float64) and ``exact_forward`` (exact enclosures, rounded).
- The fixtures and the results: ``load_cases``, ``Record``, ``load_results``.
"""

from __future__ import annotations

from conformance.adapters import load_adapter
from conformance.adapters.contract import (
    Adapter,
    LoadedAdapter,
    Reproducer,
    missing_module_reason,
    reduced_precision_allowed,
)
from conformance.adapters.onnx.consumer import OnnxConsumerAdapter
from conformance.fixtures import load_cases
from conformance.matrix.case import DTYPES, Case
from conformance.matrix.spec import BidirectionalSpec, EncoderDecoderSpec, LayerSpec, StackedSpec
from conformance.reference import exact_forward, forward
from conformance.results.reading import load_any as load_results
from conformance.results.records import Record
from conformance.semantics import (
    LayerRun,
    first_layer,
    last_output,
    masked_sublayers,
    output_layers,
    output_list,
    processing_order,
    right_padded_lengths,
    route,
    split_initial_state,
    stateful_reason,
)

__all__ = [
    "Adapter", "LoadedAdapter", "Reproducer", "load_adapter", "missing_module_reason", "reduced_precision_allowed",
    "OnnxConsumerAdapter",
    "Case", "DTYPES", "LayerSpec", "BidirectionalSpec", "StackedSpec", "EncoderDecoderSpec",
    "LayerRun", "output_list", "route", "output_layers", "masked_sublayers", "split_initial_state",
    "right_padded_lengths", "processing_order", "last_output", "first_layer", "stateful_reason",
    "forward", "exact_forward",
    "load_cases", "Record", "load_results",
]
