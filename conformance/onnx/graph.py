"""An ONNX graph under construction: inputs with their feeds, initializers, nodes named as added.

The opset is the lowest that expresses every graph of the matrix: ``layout``
on RNN / GRU / LSTM arrived in opset 14, and every other operator used here
(Gather, GatherElements, Slice, Where, Range, Unsqueeze with axes as an input,
Expand, Min, Max, Concat, Add, Mul, Div, Cast, Less, Greater, Transpose,
Identity) has had its current form since opset 13. IR version 7 is the one
onnx 1.9 wrote for opset 14, so runtimes from that era on read the models.

``conformance run --onnx-opset N`` (the ``CONFORMANCE_ONNX_OPSET`` variable) stamps the
models with a later opset instead, for a runtime that wants one; the IR version is then
the lowest onnx assigns to that opset. Every adapter that runs these models records both
(``run_info["onnx_opset"]``, ``["onnx_ir_version"]``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conformance.matrix.case import numpy_dtype

OPSET = 14
IR_VERSION = 7
# The ONNX element type of each case dtype (TensorProto's names); whether an operator takes
# it at a given opset is the operator schema's business (``export.unsupported_element_type``).
ELEMENT_TYPES = {"float32": "FLOAT", "float64": "DOUBLE", "float16": "FLOAT16", "bfloat16": "BFLOAT16"}
OPSET_VARIABLE = "CONFORMANCE_ONNX_OPSET"
INT64_MIN = -(2**63)


def check_opset(opset: int) -> None:
    """An opset the graphs can be stamped with: from ``OPSET`` up to the newest this onnx knows."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not OPSET <= opset <= newest:
        raise ValueError(f"--onnx-opset {opset}: expected {OPSET} (the lowest that expresses every graph) "
                         f"to {newest} (the newest onnx {onnx.__version__} knows)")


def model_versions() -> tuple[int, int]:
    """(opset, IR version) the models are written with: ``OPSET``/``IR_VERSION`` unless
    ``CONFORMANCE_ONNX_OPSET`` asks for another opset."""
    import os

    from onnx import helper

    chosen = os.environ.get(OPSET_VARIABLE, "")
    if not chosen:
        return OPSET, IR_VERSION
    opset = int(chosen)
    check_opset(opset)
    return opset, helper.find_min_ir_version_for([helper.make_opsetid("", opset)])


class Graph:
    """Nodes, graph inputs (with the arrays to feed them) and initializers of one model."""

    def __init__(self, dtype: str) -> None:
        from onnx import TensorProto, helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.elem = getattr(TensorProto, ELEMENT_TYPES[dtype])
        self.int32 = TensorProto.INT32
        self.int64 = TensorProto.INT64
        self.dtype = dtype
        self.nodes: list[Any] = []
        self.inputs: list[Any] = []
        self.initializers: list[Any] = []
        self.feeds: dict[str, np.ndarray] = {}
        self.count = 0

    def input(self, name: str, value: np.ndarray, shape: list, elem: int | None = None) -> str:
        """A graph input named ``name``, fed with ``value``; ``shape`` may name symbolic dims."""
        self.inputs.append(self.helper.make_tensor_value_info(name, elem or self.elem, shape))
        self.feeds[name] = _contiguous(value)
        return name

    def initializer(self, name: str, value: np.ndarray) -> str:
        """A constant tensor stored in the model under ``name``."""
        self.initializers.append(self.numpy_helper.from_array(_contiguous(value), name))
        return name

    def constant(self, value, dtype: str = "int64") -> str:
        return self.initializer(f"const_{len(self.initializers)}", np.asarray(value, dtype=numpy_dtype(dtype)))

    def zero(self) -> str:
        """A scalar zero of the graph's float type."""
        return self.constant(0.0, self.dtype)

    def node(self, op: str, inputs: list[str], outputs: int = 1, **attributes) -> list[str]:
        names = [f"{op}_{self.count}_{k}" for k in range(outputs)]
        self.count += 1
        while inputs and inputs[-1] == "":
            inputs = inputs[:-1]
        self.nodes.append(self.helper.make_node(op, inputs, names, **attributes))
        return names

    def one(self, op: str, *inputs: str, **attributes) -> str:
        """A node with one output, that output's name."""
        return self.node(op, list(inputs), 1, **attributes)[0]

    def pick(self, tensor: str, axis: int, index: int) -> str:
        """``tensor`` at ``index`` along ``axis``, that axis removed."""
        return self.one("Gather", tensor, self.constant(index), axis=axis)

    def unsqueeze(self, tensor: str, axes: list[int]) -> str:
        return self.one("Unsqueeze", tensor, self.constant(axes))

    def reverse(self, tensor: str, axis: int) -> str:
        """``tensor`` with ``axis`` reversed."""
        return self.one("Slice", tensor, self.constant([-1]), self.constant([INT64_MIN]), self.constant([axis]),
                        self.constant([-1]))

    def model(self, outputs: dict[str, tuple[str, int]]):
        """The checked ModelProto; ``outputs``: graph output name -> (tensor, rank), in order."""
        import onnx

        helper = self.helper
        for name, (tensor, _) in outputs.items():
            self.nodes.append(helper.make_node("Identity", [tensor], [name]))
        graph_outputs = [helper.make_tensor_value_info(name, self.elem, [None] * rank)
                         for name, (_, rank) in outputs.items()]
        graph = helper.make_graph(self.nodes, "keras_recurrent", self.inputs, graph_outputs,
                                  initializer=self.initializers)
        opset, ir_version = model_versions()
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name="rnn-conformance")
        model.ir_version = ir_version
        # full_check adds strict type and shape inference: a node given an element type its
        # schema does not take (float16 or bfloat16 where the opset lacks it) is refused here.
        onnx.checker.check_model(model, full_check=True)
        return model


def _contiguous(value) -> np.ndarray:
    """``value`` C-contiguous with its rank kept (``np.ascontiguousarray`` turns a scalar into shape (1,))."""
    array = np.asarray(value)
    return array if array.flags.c_contiguous else array.copy(order="C")
