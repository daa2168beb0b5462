"""One case as one ONNX model whose inputs and outputs are the Keras layer's own.

The model reads what the Keras call reads — ``x`` (batch, T, features), the
mask as ``sequence_lens`` (each row's real steps; right-padded masks only),
the initial states in Keras's list order, ``decoder_x`` — and its outputs are
the Keras output list, in order and named as ``case.output_names``. In
between: ONNX's RNN / GRU / LSTM operators (weights converted by
``conformance.onnx.mapping``), and as plain nodes every Keras rule that sits
around the cell — the time-major transposes of ``layout=0``, the
processing order of ``go_backwards``, the values Keras writes at padded steps
(zeros, or the last real output repeated), the last output, the merge of
``Bidirectional``, the hand-over between stacked layers and from encoder to
decoder. The rules themselves come from ``conformance.semantics``; this module
only writes them as nodes.

So every value the outputs hold is computed by the runtime, and everything
the graph relies on is defined by the ONNX specification: no output reads
``Y`` past ``sequence_lens``, which the specification leaves open. The same
model therefore judges any conformant runtime, with no code of ours around
it (``conformance export onnx`` writes it in the backend-test layout).

``weights="initializers"`` stores W, R, B as constants, as exported models do
(one model per case); ``weights="inputs"`` makes them graph inputs, so one
model serves every case of a structure (``OnnxCase.structure``). Runtimes
take different code paths for the two, so both are worth a row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conformance import semantics
from conformance.matrix.case import Case
from conformance.matrix.spec import AnySpec, BidirectionalSpec, EncoderDecoderSpec, LayerSpec, StackedSpec
from conformance.onnx.graph import ELEMENT_TYPES, Graph, model_versions
from conformance.onnx.mapping import ONNX_OP, activation_attributes, onnx_weights

WEIGHT_PLACEMENTS = ("initializers", "inputs")
LAYOUTS = (0, 1)


class NotExpressible(ValueError):
    """The case has no ONNX form (``not_expressible`` says why)."""


def not_expressible(case: Case) -> str | None:
    """Why ONNX's recurrent operators cannot express ``case``, or None: a property of ONNX, not of a runtime."""
    reason = semantics.stateful_reason(case, "an ONNX graph")
    if reason:
        return reason
    for layer in case.spec.sublayers().values():
        if layer.inference_invariant:
            arguments = ", ".join(f"{k}={v!r}" for k, v in layer.inference_invariant.items())
            return (f"{arguments}: ONNX's RNN, GRU and LSTM operators have no such attribute (an exporter "
                    "must drop it: onnx-keras tests that)")
    if case.mask is not None and semantics.right_padded_lengths(case.mask) is None:
        return ("mask has masked steps before real ones; ONNX's sequence_lens expresses right-padded "
                "masks only")
    for op in sorted({ONNX_OP[layer.cell] for layer in case.spec.sublayers().values()}):
        reason = refused_element_type(op, case.dtype, model_versions()[0])
        if reason:
            return reason
    return None


@functools.cache
def refused_element_type(op: str, dtype: str, opset: int) -> str | None:
    """Why ``op``'s schema at ``opset`` takes no ``dtype`` tensors, or None; read from onnx's own
    operator schemas (the type constraint of X, W, R, B, Y), not written down here.

    At opset 14 RNN, GRU and LSTM take float16, float and double; bfloat16 arrives with their
    opset-22 versions, which ``--onnx-opset 22`` stamps (the reason names the first such opset).
    """
    import onnx

    tensor_type = f"tensor({ELEMENT_TYPES[dtype].lower()})"  # the schema's spelling: tensor(float16)
    allowed = _allowed_types(op, opset)
    if tensor_type in allowed:
        return None
    schema = onnx.defs.get_schema(op, opset)
    later = next((v for v in range(opset + 1, onnx.defs.onnx_opset_version() + 1)
                  if tensor_type in _allowed_types(op, v)), None)
    arrives = (f"; {op}-{later} takes it (--onnx-opset {later})" if later
               else f"; no {op} version up to opset {onnx.defs.onnx_opset_version()} takes it")
    return (f"ONNX {op}-{schema.since_version} (the {op} of opset {opset}, onnx {onnx.__version__}'s schema) "
            f"constrains its float tensors to {', '.join(sorted(allowed))}: a {dtype} model has no "
            f"ONNX form there{arrives}")


def _allowed_types(op: str, opset: int) -> set[str]:
    """The types the schema's float constraint (the one X, W, R, B and Y share) allows."""
    import onnx

    schema = onnx.defs.get_schema(op, opset)
    constraint = next(c.type_str for c in schema.inputs if c.name == "X")
    return set(next(c for c in schema.type_constraints if c.type_param_str == constraint).allowed_type_strs)


@dataclass(frozen=True)
class OnnxCase:
    """A case's model and what to feed it; the outputs are the Keras output list (``output_names``).

    The model is assembled and checked when first read: a runtime that keeps
    one compiled model per ``structure`` needs only the feeds of later cases,
    and assembling is most of an export's cost.
    """

    case_id: str
    dtype: str
    weights: str
    layout: int
    feeds: dict[str, np.ndarray] = field(repr=False)
    output_names: tuple[str, ...]
    structure: tuple
    assemble: Callable[[], Any] = field(repr=False, compare=False)

    @functools.cached_property
    def model(self):
        """The checked ``onnx.ModelProto``."""
        return self.assemble()

    @functools.cached_property
    def model_bytes(self) -> bytes:
        return self.model.SerializeToString()

    def keras_outputs(self, outputs) -> list[np.ndarray]:
        """The Keras list from a runtime's outputs: a list in graph output order, or a dict by name."""
        if isinstance(outputs, dict):
            outputs = [outputs[name] for name in self.output_names]
        outputs = list(outputs)
        if len(outputs) != len(self.output_names):
            raise ValueError(f"the runtime returned {len(outputs)} outputs; the model has "
                             f"{len(self.output_names)} ({', '.join(self.output_names)})")
        return [np.ascontiguousarray(np.asarray(a)) for a in outputs]


def structure(case: Case, weights: str = "initializers", layout: int = 0) -> tuple:
    """Cases with equal structures have byte-identical models: with weights as inputs, every case of
    one spec, input widths, dtype, mask presence and initial-state presence; with initializers, the
    case alone. The widths size W (a runtime that compiled W for 3 features refuses 4)."""
    decoder_features = None if case.decoder_x is None else int(case.decoder_x.shape[2])
    key = (case.spec, case.features, decoder_features, case.dtype, case.mask is not None,
           case.initial_state is not None, weights, layout)
    return key if weights == "inputs" else key + (case.id,)


def export(case: Case, weights: str = "initializers", layout: int = 0) -> OnnxCase:
    """``case`` (bound to one dtype, ``case.for_dtype``) as an ONNX model with its feeds.

    Raises ``NotExpressible`` where ``not_expressible`` gives a reason, and
    ValueError for a weight placement or layout that does not exist.
    """
    if weights not in WEIGHT_PLACEMENTS:
        raise ValueError(f"weights={weights!r}; expected one of {', '.join(WEIGHT_PLACEMENTS)}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}; expected 0 (time-major) or 1 (batch-major)")
    reason = not_expressible(case)
    if reason is not None:
        raise NotExpressible(f"{case.id}: {reason}")
    builder = _KerasGraph(case, weights, layout)
    outputs = builder.outputs()
    return OnnxCase(case.id, case.dtype, weights, layout, builder.graph.feeds, tuple(outputs),
                    structure(case, weights, layout), functools.partial(builder.graph.model, outputs))


Site = list[tuple[str, LayerSpec]]  # one ONNX op: (sub-layer name, layer as Keras runs it) per direction


def op_sites(spec: AnySpec) -> dict[str, Site]:
    """The recurrent ops of a spec's graph, in order: one per layer, one for a Bidirectional pair."""
    layers = semantics.keras_sublayers(spec)
    if isinstance(spec, BidirectionalSpec):
        return {"bidirectional": list(layers.items())}
    return {name: [(name, layer)] for name, layer in layers.items()}


class _KerasGraph:
    """The nodes of one case's model; tensors between steps are batch-major, as Keras's are."""

    def __init__(self, case: Case, weights: str, layout: int) -> None:
        self.case, self.weights, self.layout = case, weights, layout
        self.graph = Graph(case.dtype)
        self.masked = semantics.masked_sublayers(case.spec) if case.mask is not None else ()
        self._lengths: str | None = None

    # --- inputs ----------------------------------------------------------------------------

    def _inputs(self) -> tuple[str, list[str]]:
        """``x`` and the first op's initial-state operands (empty without initial states)."""
        case, graph = self.case, self.graph
        x = graph.input("x", case.x, ["batch", "time", case.features])
        if case.mask is not None:
            lengths = semantics.right_padded_lengths(case.mask).astype(np.int32)
            self._lengths = graph.input("sequence_lens", lengths, ["batch"], graph.int32)
        return x, self._initial_operands()

    def _initial_operands(self) -> list[str]:
        """Keras's initial states (forward then backward for Bidirectional), fed as Keras lists them,
        stacked per state into ONNX's (dirs, batch, H) (layout 0) or (batch, dirs, H) (layout 1)."""
        case, graph = self.case, self.graph
        if case.initial_state is None:
            return []
        site = next(iter(op_sites(case.spec).values()))
        names = site[0][1].state_names
        fed = [graph.input(f"initial_state_{k}", state, ["batch", state.shape[-1]])
               for k, state in enumerate(case.initial_state)]
        dirs_axis = 0 if self.layout == 0 else 1
        operands = []
        for k in range(len(names)):
            per_direction = [graph.unsqueeze(tensor, [dirs_axis]) for tensor in fed[k::len(names)]]
            operands.append(per_direction[0] if len(per_direction) == 1
                            else graph.one("Concat", *per_direction, axis=dirs_axis))
        return operands

    def _weights(self, site_name: str, site: Site) -> list[str]:
        w, r, b = onnx_weights([(layer, self.case.weights[name]) for name, layer in site])
        operands = []
        for part, value in zip("WRB", (w, r, b)):
            name = f"{site_name}.{part}"
            if self.weights == "initializers":
                operands.append(self.graph.initializer(name, value))
            else:
                operands.append(self.graph.input(name, value, list(value.shape)))
        return operands

    # --- the recurrent ops -----------------------------------------------------------------

    def _op(self, site_name: str, site: Site, x: str, initial: list[str], masked: bool) -> list[str]:
        """One RNN/GRU/LSTM node on batch-major ``x``: its Y, Y_h[, Y_c] in the op's own layout."""
        graph, layer, dirs = self.graph, site[0][1], len(site)
        op_x = graph.one("Transpose", x, perm=[1, 0, 2]) if self.layout == 0 else x
        direction = "bidirectional" if dirs == 2 else ("reverse" if layer.go_backwards else "forward")
        attributes = dict(hidden_size=layer.units, direction=direction, layout=self.layout,
                          **activation_attributes([sub for _, sub in site]))
        if layer.cell == "gru":
            attributes["linear_before_reset"] = int(layer.reset_after)
        lengths = self._lengths if masked else ""
        operands = [op_x, *self._weights(site_name, site), lengths, *initial]
        return graph.node(ONNX_OP[layer.cell], operands, 3 if layer.cell == "lstm" else 2, **attributes)

    def _direction(self, y: str, d: int) -> str:
        """Direction ``d`` of Y as a batch-major (batch, T, H) sequence in input order."""
        graph = self.graph
        if self.layout == 1:
            return graph.pick(y, 2, d)
        return graph.one("Transpose", graph.pick(y, 1, d), perm=[1, 0, 2])

    def _state(self, state: str, d: int) -> str:
        return self.graph.pick(state, 0 if self.layout == 0 else 1, d)

    # --- Keras's values at padded steps, processing order ----------------------------------

    def _time_and_lengths(self, sequence: str) -> tuple[str, str]:
        """Step indices (1, T, 1) and row lengths (batch, 1, 1), both int64."""
        graph = self.graph
        steps = graph.one("Gather", graph.one("Shape", sequence), graph.constant(1), axis=0)
        time = graph.unsqueeze(graph.one("Range", graph.constant(0), steps, graph.constant(1)), [0, 2])
        lengths = graph.unsqueeze(graph.one("Cast", self._lengths, to=graph.int64), [1, 2])
        return time, lengths

    def _keras_sequence(self, y: str, layer: LayerSpec, masked: bool) -> str:
        """A layer's outputs as Keras returns them, in processing order.

        Under a mask Keras writes zeros at padded steps where
        ``zero_output_for_mask`` is set, and otherwise repeats the previous
        output — the last real one, or the initial zeros before any (with
        ``go_backwards`` every padded step comes first, so zeros either way).
        """
        graph = self.graph
        if masked:
            time, lengths = self._time_and_lengths(y)
            if layer.zero_output_for_mask or layer.go_backwards:
                y = graph.one("Where", graph.one("Less", time, lengths), y, graph.zero())
            else:
                last_real = graph.one("Max", graph.one("Min", time, graph.one("Sub", lengths, graph.constant(1))),
                                      graph.constant(0))
                index = graph.one("Expand", last_real, graph.one("Shape", y))
                repeated = graph.one("GatherElements", y, index, axis=1)
                y = graph.one("Where", graph.one("Greater", lengths, graph.constant(0)), repeated, graph.zero())
        return graph.reverse(y, 1) if layer.go_backwards else y

    # --- the Keras output list -------------------------------------------------------------

    def outputs(self) -> dict[str, tuple[str, int]]:
        """Graph output name -> (tensor, rank), in the Keras list's order."""
        case, spec = self.case, self.case.spec
        x, initial = self._inputs()
        sites = op_sites(spec)
        if isinstance(spec, EncoderDecoderSpec):
            encoder = self._op("encoder", sites["encoder"], x, initial, "encoder" in self.masked)
            decoder_shape = ["batch", "decoder_time", case.decoder_x.shape[2]]
            decoder_x = self.graph.input("decoder_x", case.decoder_x, decoder_shape)
            runs = self._runs("decoder", sites["decoder"], decoder_x, encoder[1:])
        else:
            runs, sequence = {}, x
            for index, (name, site) in enumerate(sites.items()):
                runs = self._runs(name, site, sequence, initial if index == 0 else [])
                if isinstance(spec, StackedSpec):
                    sequence = runs[name][0]
        return self._output_list(spec, runs)

    def _runs(self, site_name: str, site: Site, x: str, initial: list[str]) -> dict[str, tuple[str, list[str]]]:
        """Each direction's (Keras sequence in processing order, final states), by sub-layer name."""
        masked = site[0][0] in self.masked
        y, *states = self._op(site_name, site, x, initial, masked)
        return {name: (self._keras_sequence(self._direction(y, d), layer, masked),
                       [self._state(state, d) for state in states])
                for d, (name, layer) in enumerate(site)}

    def _output_list(self, spec: AnySpec, runs: dict[str, tuple[str, list[str]]]) -> dict[str, tuple[str, int]]:
        """``semantics.output_list`` as nodes: heads (sequence or last step), merged, then the states."""
        graph, layers = self.graph, semantics.output_layers(spec)
        heads = {}
        for name, layer in layers.items():
            sequence = runs[name][0]
            if layer.return_sequences:
                heads[name] = (graph.reverse(sequence, 1) if name == "backward" else sequence, 3)
            else:
                heads[name] = (graph.pick(sequence, 1, -1), 2)
        if isinstance(spec, BidirectionalSpec) and spec.merge_mode is not None:
            (forward, rank), (backward, _) = heads["forward"], heads["backward"]
            tensors = [(self._merge(spec.merge_mode, forward, backward), rank)]
        else:
            tensors = list(heads.values())
        top = next(iter(layers.values()))
        if top.return_state:
            tensors += [(state, 2) for name in layers for state in runs[name][1]]
        return dict(zip(spec.output_names(), tensors))

    def _merge(self, merge_mode: str, forward: str, backward: str) -> str:
        """``semantics.MERGES`` as nodes (``ave`` is ``(a + b) / 2`` as in Keras)."""
        graph = self.graph
        if merge_mode == "concat":
            return graph.one("Concat", forward, backward, axis=-1)
        if merge_mode == "mul":
            return graph.one("Mul", forward, backward)
        total = graph.one("Add", forward, backward)
        return graph.one("Div", total, graph.constant(2.0, graph.dtype)) if merge_mode == "ave" else total
