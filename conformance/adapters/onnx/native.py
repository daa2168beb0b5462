"""ONNX's own RNN / GRU / LSTM operators, built with ``onnx.helper`` and run by onnxruntime.

One graph per structure (spec, dtype, device, mask or not, initial state or
not): weights, inputs, ``sequence_lens`` and initial states are graph
*inputs*, so a new case only feeds new arrays to a cached InferenceSession.

What the adapter converts (conventions, see ``onnx_mapping``): batch-first to
``layout=0`` time-major tensors and back, Keras weights to W/R/B, a right-padded
mask to ``sequence_lens``, and a time flip for ``go_backwards`` (Keras returns a
backward sequence in processing order, ONNX ``direction="reverse"`` in input
order). Everything else, including Bidirectional's merge, the hand-over
between stacked layers and the encoder states fed to the decoder, is graph
nodes that onnxruntime computes; the Keras list is ``semantics.output_list``
of the output op's Y, Y_h and Y_c, with the graph's merged output as it is.

``OnnxNativeLayout1Adapter`` builds the same graphs with ``layout=1``
(batch-major X, Y and states), the natural mapping of Keras's tensors;
onnxruntime 1.32 refuses it ("Batchwise recurrent operations (layout == 1)
are not supported"), which that adapter reports as errors, not unsupported.
"""

from __future__ import annotations

import time

import numpy as np

from conformance import semantics
from conformance.adapters.contract import Adapter, missing_module_reason
from conformance.adapters.onnx import runtime as onnx_runtime
from conformance.adapters.onnx.graph import ONNX_OP, activation_attributes, onnx_weights
from conformance.matrix.case import Case
from conformance.matrix.spec import AnySpec, BidirectionalSpec, EncoderDecoderSpec, LayerSpec, StackedSpec, top_layer

OPSET = 22
IR_VERSION = 10
INT64_MIN = -(2**63)

Site = list[tuple[str, LayerSpec]]  # one ONNX op: (sub-layer name, layer) per direction


def op_sites(spec: AnySpec) -> dict[str, Site]:
    """The recurrent ops of a spec's graph, in order: one per layer, one for a Bidirectional pair."""
    if isinstance(spec, BidirectionalSpec):
        return {"bidirectional": list(spec.sublayers().items())}
    return {name: [(name, layer)] for name, layer in spec.sublayers().items()}


class _Axes:
    """Where time and direction sit in Y and in the states, per ``layout``."""

    def __init__(self, layout: int) -> None:
        self.layout = layout
        self.y_time, self.y_dirs = (0, 1) if layout == 0 else (1, 2)
        self.state_dirs = 0 if layout == 0 else 1

    def x_shape(self, features: str) -> list:
        return ["time", "batch", features] if self.layout == 0 else ["batch", "time", features]

    def state_shape(self, dirs: int, units: int) -> list:
        return [dirs, "batch", units] if self.layout == 0 else ["batch", dirs, units]

    def x_feed(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.transpose(1, 0, 2)) if self.layout == 0 else x

    def state_feed(self, states: list[np.ndarray]) -> np.ndarray:
        return np.stack(states, axis=self.state_dirs)

    def y_batch_major(self, y: np.ndarray) -> np.ndarray:
        """Y as (batch, T, dirs, H)."""
        return y.transpose(2, 0, 1, 3) if self.layout == 0 else y

    def state_dirs_first(self, state: np.ndarray) -> np.ndarray:
        """Y_h / Y_c as (dirs, batch, H)."""
        return state if self.layout == 0 else state.transpose(1, 0, 2)

    def seq_batch_major(self, seq: np.ndarray) -> np.ndarray:
        """A (T, batch, H) or (batch, T, H) sequence as (batch, T, H)."""
        return seq.transpose(1, 0, 2) if self.layout == 0 else seq


class _Graph:
    """An ONNX graph under construction; node outputs are named as they are added."""

    def __init__(self, dtype: str, axes: _Axes) -> None:
        from onnx import TensorProto, helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.elem = TensorProto.FLOAT if dtype == "float32" else TensorProto.DOUBLE
        self.int32 = TensorProto.INT32
        self.dtype, self.axes = dtype, axes
        self.nodes, self.inputs, self.initializers = [], [], []
        self.count = 0

    def input(self, name: str, shape: list, elem: int | None = None) -> str:
        self.inputs.append(self.helper.make_tensor_value_info(name, elem or self.elem, shape))
        return name

    def constant(self, value, dtype: str = "int64") -> str:
        name = f"const_{len(self.initializers)}"
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: int = 1, **attributes) -> list[str]:
        names = [f"{op}_{self.count}_{k}" for k in range(outputs)]
        self.count += 1
        while inputs and inputs[-1] == "":
            inputs = inputs[:-1]
        self.nodes.append(self.helper.make_node(op, inputs, names, **attributes))
        return names

    def pick(self, tensor: str, axis: int, index: int) -> str:
        """``tensor`` at ``index`` along ``axis``, that axis removed."""
        return self.node("Gather", [tensor, self.constant(index)], axis=axis)[0]

    def model(self, outputs: dict[str, str], ranks: dict[str, int]) -> bytes:
        import onnx

        helper = self.helper
        graph_outputs = [helper.make_tensor_value_info(name, self.elem, [None] * ranks[role])
                         for role, name in outputs.items()]
        graph = helper.make_graph(self.nodes, "keras_recurrent", self.inputs, graph_outputs,
                                  initializer=self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="rnn-conformance")
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model.SerializeToString()


def recurrent_op(graph: _Graph, site_name: str, site: Site, x: str, lengths: str,
                 initial: list[str]) -> list[str]:
    """One ONNX RNN/GRU/LSTM node; weights are graph inputs named ``{site}.W`` etc. Returns Y, Y_h[, Y_c]."""
    layers = [layer for _, layer in site]
    layer, dirs = layers[0], len(layers)
    width = len(layer.gates) * layer.units
    w = graph.input(f"{site_name}.W", [dirs, width, f"{site_name}.features"])
    r = graph.input(f"{site_name}.R", [dirs, width, layer.units])
    b = graph.input(f"{site_name}.B", [dirs, 2 * width])
    direction = "bidirectional" if dirs == 2 else ("reverse" if layer.go_backwards else "forward")
    attributes = dict(hidden_size=layer.units, direction=direction, layout=graph.axes.layout,
                      **activation_attributes(layers))
    if layer.cell == "gru":
        attributes["linear_before_reset"] = int(layer.reset_after)
    outputs = 3 if layer.cell == "lstm" else 2
    return graph.node(ONNX_OP[layer.cell], [x, w, r, b, lengths, *initial], outputs, **attributes)


def initial_inputs(graph: _Graph, site: Site) -> list[str]:
    layer = site[0][1]
    shape = graph.axes.state_shape(len(site), layer.units)
    return [graph.input(f"initial_{state}", shape) for state in layer.state_names]


MERGE_OPS = {"concat": "Concat", "sum": "Add", "mul": "Mul", "ave": "Add"}


def merge(graph: _Graph, merge_mode: str, forward: str, backward: str) -> str:
    """Keras Bidirectional's merge as graph nodes (``ave`` is ``(a + b) / 2`` as in Keras)."""
    attributes = {"axis": -1} if merge_mode == "concat" else {}
    merged = graph.node(MERGE_OPS[merge_mode], [forward, backward], **attributes)[0]
    if merge_mode == "ave":
        merged = graph.node("Div", [merged, graph.constant(2.0, graph.dtype)])[0]
    return merged


def next_layer_input(graph: _Graph, y: str, layer: LayerSpec) -> str:
    """A stacked layer's Y as the next layer's X; a go_backwards layer's is flipped to
    processing order, which is what Keras hands on."""
    x = graph.pick(y, graph.axes.y_dirs, 0)
    if not layer.go_backwards:
        return x
    time_axis = graph.constant([graph.axes.y_time])
    return graph.node("Slice", [x, graph.constant([-1]), graph.constant([INT64_MIN]), time_axis,
                                graph.constant([-1])])[0]


def build_graph(spec: AnySpec, dtype: str, axes: _Axes, masked: bool,
                with_initial_state: bool) -> tuple[bytes, dict[str, str]]:
    """The model for one structure, and its outputs by role (Y, Y_h, Y_c, merged)."""
    graph = _Graph(dtype, axes)
    x = graph.input("x", axes.x_shape("features"))
    lengths = graph.input("sequence_lens", ["batch"], graph.int32) if masked else ""
    sites = op_sites(spec)
    first_site = next(iter(sites.values()))
    initial = initial_inputs(graph, first_site) if with_initial_state else []
    if isinstance(spec, EncoderDecoderSpec):
        encoder = recurrent_op(graph, "encoder", sites["encoder"], x, lengths, initial)
        decoder_x = graph.input("decoder_x", axes.x_shape("decoder_features"))
        outputs = recurrent_op(graph, "decoder", sites["decoder"], decoder_x, "", encoder[1:])
    else:
        previous: LayerSpec | None = None
        for name, site in sites.items():
            if previous is not None:
                x = next_layer_input(graph, outputs[0], previous)
            outputs = recurrent_op(graph, name, site, x, lengths, initial if previous is None else [])
            previous = site[0][1]
    roles = dict(zip(("Y", "Y_h", "Y_c"), outputs))
    ranks = {"Y": 4, "Y_h": 3, "Y_c": 3, "merged": 3 if top_layer(spec).return_sequences else 2}
    if isinstance(spec, BidirectionalSpec) and spec.merge_mode is not None:
        if spec.layer.return_sequences:
            pair = tuple(graph.pick(roles["Y"], axes.y_dirs, d) for d in (0, 1))
        else:  # semantics.keras_sublayers: zero_output_for_mask is off here, y_T is each direction's Y_h
            pair = tuple(graph.pick(roles["Y_h"], axes.state_dirs, d) for d in (0, 1))
        roles["merged"] = merge(graph, spec.merge_mode, *pair)
    return graph.model(roles, ranks), roles


class OnnxNativeAdapter(Adapter):
    """Keras layers as ONNX RNN/GRU/LSTM nodes in onnxruntime (``layout=0``)."""

    name = "onnx-native"
    layout = 0

    def __init__(self) -> None:
        self._sessions: dict[tuple, tuple] = {}
        self._info: dict = {}
        self._axes = _Axes(self.layout)

    def available(self) -> str | None:
        return missing_module_reason("onnx", "onnxruntime")

    def devices(self) -> list[str]:
        return onnx_runtime.devices()

    def versions(self) -> dict[str, str]:
        return onnx_runtime.versions()

    def device_name(self, device: str) -> str:
        return onnx_runtime.device_name(device)

    def last_run_info(self) -> dict:
        return dict(self._info)

    def supports(self, case: Case) -> str | None:
        mask = case.mask
        if mask is None:
            return None
        if semantics.right_padded_lengths(mask) is None:
            return ("mask has masked steps before real ones; ONNX sequence_lens expresses "
                    "right-padded masks only")
        spec = case.spec
        if isinstance(spec, StackedSpec) and any(layer.go_backwards for layer in spec.layers[:-1]):
            return ("a go_backwards layer inside a masked stack hands on its sequence in processing "
                    "order while the mask stays in input order; sequence_lens cannot follow it")
        # With go_backwards the padded steps come first in processing order, where Keras
        # "repeats" its initial zeros.
        repeats = any(layer.return_sequences and not layer.zero_output_for_mask and not layer.go_backwards
                      for layer in semantics.masked_output_layers(spec))
        if repeats and not mask.all():
            return ("Keras (zero_output_for_mask=False) repeats the last output at padded steps; "
                    "onnxruntime writes zeros in Y past sequence_lens (the ONNX spec leaves them open)")
        return None

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        masked = case.mask is not None
        session, roles = self._session(case, device, masked)
        outputs = dict(zip(roles, session.run(list(roles.values()), self._feeds(case, masked))))
        return self._output_list(case, outputs, masked)

    def _session(self, case: Case, device: str, masked: bool):
        key = (case.spec, case.dtype, device, masked, case.initial_state is not None)
        cached = key in self._sessions
        start = time.perf_counter()
        if not cached:
            self._sessions[key] = self._build(key)
        session, roles, error = self._sessions[key]
        self._info = {"provider": onnx_runtime.PROVIDERS[device], "layout": self.layout,
                      "session": "cached" if cached else f"built in {time.perf_counter() - start:.3f}s"}
        if error is not None:
            raise error.with_traceback(None)
        return session, roles

    def _build(self, key: tuple) -> tuple:
        """(session, roles, None), or (None, None, the refusal) so a refused model fails fast."""
        spec, dtype, device, masked, with_initial_state = key
        model, roles = build_graph(spec, dtype, self._axes, masked, with_initial_state)
        try:
            return onnx_runtime.make_session(model, device), roles, None
        except Exception as exc:  # noqa: BLE001 - onnxruntime's refusal is the result
            return None, None, exc

    def _feeds(self, case: Case, masked: bool) -> dict[str, np.ndarray]:
        axes = self._axes
        feeds = {"x": axes.x_feed(case.x)}
        if case.decoder_x is not None:
            feeds["decoder_x"] = axes.x_feed(case.decoder_x)
        if masked:
            feeds["sequence_lens"] = semantics.right_padded_lengths(case.mask).astype(np.int32)
        for site_name, site in op_sites(case.spec).items():
            w, r, b = onnx_weights([(layer, case.weights[name]) for name, layer in site])
            feeds.update({f"{site_name}.W": w, f"{site_name}.R": r, f"{site_name}.B": b})
        if case.initial_state is not None:
            first_site = next(iter(op_sites(case.spec).values()))
            names = first_site[0][1].state_names
            for k, state in enumerate(names):
                per_direction = list(case.initial_state[k::len(names)])
                feeds[f"initial_{state}"] = axes.state_feed(per_direction)
        return feeds

    def _output_list(self, case: Case, outputs: dict[str, np.ndarray], masked: bool) -> list[np.ndarray]:
        """The Keras list from the output op's Y, Y_h[, Y_c] and any merged output."""
        merged = outputs.get("merged")
        if merged is not None and case.layer.return_sequences:
            merged = self._axes.seq_batch_major(merged)
        lengths = semantics.right_padded_lengths(case.mask) if masked else None
        listed = semantics.output_list(case.spec, self._runs(case.spec, outputs), lengths, merged=merged)
        return [np.ascontiguousarray(a) for a in listed]

    def _runs(self, spec: AnySpec, outputs: dict[str, np.ndarray]) -> dict[str, semantics.LayerRun]:
        """The output op's directions as runs, by sub-layer name, sequences in processing order.

        ORT's Y is in input order for a reverse direction and zero past
        ``sequence_lens``; Y_h is each row's state at its last real step.
        """
        axes = self._axes
        y = axes.y_batch_major(outputs["Y"])
        states = [axes.state_dirs_first(outputs[role]) for role in ("Y_h", "Y_c") if role in outputs]
        names = list(semantics.output_layers(spec))
        runs = {}
        for d, name in enumerate(names):
            sequence = y[:, ::-1, d] if spec.sublayers()[name].go_backwards else y[:, :, d]
            runs[name] = semantics.LayerRun(sequence, [state[d] for state in states])
        return runs


class OnnxNativeLayout1Adapter(OnnxNativeAdapter):
    """The same graphs with ``layout=1`` (batch-major), the direct image of Keras's tensors."""

    name = "onnx-native-layout1"
    layout = 1
