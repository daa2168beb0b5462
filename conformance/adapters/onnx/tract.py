"""tract (Sonos's inference engine, the ``tract`` package) on the exported cases, both weight placements.

tract reads an ONNX file into an *inference* model whose input shapes must
all be concrete before it can be typed: a symbolic ``batch`` left in the
model makes its RNN importer panic (``UndeterminedSymbol("batch")`` in
onnx/src/ops/rec/common.rs), and a panic inside its C API aborts the whole
Python process. So ``load`` only keeps the model, and ``infer`` compiles it
for the feeds' shapes (one compile per shape set, a few milliseconds) with
every input fact set from the feed. ``into_runnable`` is tract's default
CPU runtime, which optimizes the model; it has no reduced-precision default
(float16 only through the opt-in ``float_precision`` transform), so there is
nothing to switch off for the float32 verdict.

tract's errors are Rust error chains ("Translating node #5 ...", blank,
"Caused by:", numbered causes): the adapter raises them with the root cause
first, so the one line a report shows says what tract refused; the whole
chain follows it.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any

import numpy as np

from conformance.adapters.onnx.consumer import OnnxConsumerAdapter
from conformance.matrix.case import Case

FACT_TYPES = {"float16": "f16", "float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64"}
NUMBERED_CAUSE = re.compile(r"^\s+\d+: ")


class TractModel:
    """One ONNX model, compiled by tract once per set of input shapes."""

    def __init__(self, model: bytes) -> None:
        self.model = model
        self.runnables: dict[tuple, tuple[Any, list[str]]] = {}

    def outputs(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """tract's outputs for ``feeds``, in the graph's output order."""
        import tract

        signature = tuple((name, a.shape, a.dtype.str) for name, a in feeds.items())
        try:
            if signature not in self.runnables:
                self.runnables[signature] = self._compile(feeds)
            runnable, names = self.runnables[signature]
            return [tensor.to_numpy() for tensor in runnable.run([feeds[name] for name in names])]
        except tract.TractError as exc:
            raise tract.TractError(root_cause_first(str(exc))) from None

    def _compile(self, feeds: dict[str, np.ndarray]) -> tuple[Any, list[str]]:
        """The runnable for these shapes, and its input names in tract's order."""
        inference = self._inference_model()
        names = [inference.input_name(k) for k in range(inference.input_count())]
        for k, name in enumerate(names):
            array = feeds[name]
            inference.set_input_fact(k, ",".join([*map(str, array.shape), FACT_TYPES[str(array.dtype)]]))
        return inference.into_model().into_runnable(), names

    def _inference_model(self) -> Any:
        """The model as tract reads it; its Python API loads ONNX from a path only."""
        import tract

        handle, path = tempfile.mkstemp(suffix=".onnx")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(self.model)
            return tract.onnx().load(path)
        finally:
            os.unlink(path)


def root_cause_first(text: str) -> str:
    """A tract error chain with its root cause (the last numbered cause's first line) on a first line
    of its own; the chain ends where a "Stack backtrace:" (anyhow's, when one was captured) begins."""
    lines = [line.rstrip() for line in text.splitlines()]
    stripped = [line.strip() for line in lines]
    if "Caused by:" not in stripped:
        return text
    end = stripped.index("Stack backtrace:") if "Stack backtrace:" in stripped else len(lines)
    causes = [line for line in lines[stripped.index("Caused by:") + 1:end] if line.strip()]
    numbered = [line for line in causes if NUMBERED_CAUSE.match(line)]
    cause = NUMBERED_CAUSE.sub("", numbered[-1]) if numbered else causes[0] if causes else ""
    return f"tract: {cause.strip()} (in: {stripped[0]})\n{text}"


class TractAdapter(OnnxConsumerAdapter):
    """The exported cases in tract on the CPU, weights as initializers (as exported models hold them)."""

    name = "tract"
    runtime = "tract"
    compiles_per_structure = True  # a model loaded and optimized per case
    requires = ("onnx", "tract")
    weights = "initializers"
    declared_devices = ("cpu",)
    # load + infer's settings, standalone: every input fact concrete (a symbolic batch panics in tract).
    repro_runner = '''
def run_model(model_path, feeds, device):
    import tract

    model = tract.onnx().load(model_path)
    names = [model.input_name(k) for k in range(model.input_count())]
    types = {"float16": "f16", "float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64"}
    for k, name in enumerate(names):
        array = feeds[name]
        model.set_input_fact(k, ",".join([*map(str, array.shape), types[str(array.dtype)]]))
    runnable = model.into_model().into_runnable()
    return [tensor.to_numpy() for tensor in runnable.run([feeds[name] for name in names])]
'''


    def versions(self) -> dict[str, str]:
        import tract

        return {"tract": tract.version()}

    def supports(self, case: Case) -> str | None:
        reason = super().supports(case)
        if reason is None and case.mask is not None:
            # tract 0.23 onnx/src/ops/rec/common.rs: a non-constant sequence_lens is refused, a constant one
            # must be uniform and equal to the full length; the export feeds it as a graph input.
            return ("tract refuses a mask: \"Non constant seq_len is not supported\" (its RNN/GRU/LSTM "
                    "import takes only a constant sequence_lens equal to the full length)")
        return reason

    def load(self, model: bytes, device: str) -> TractModel:
        return TractModel(model)

    def infer(self, compiled: TractModel, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return compiled.outputs(feeds)

    def precision(self, device: str) -> dict:
        return {"reduced precision": "none on tract's CPU runtime (float16 is an opt-in transform)"}


class TractInputsAdapter(TractAdapter):
    """The same, with the weights as graph inputs: tract's non-constant-weight path."""

    name = "tract-inputs"
    weights = "inputs"
