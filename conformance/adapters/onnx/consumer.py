"""The base for any runtime that consumes ONNX: a vendor writes ``load`` and ``infer``, nothing else.

    class MyRuntimeAdapter(OnnxConsumerAdapter):
        name = "my-runtime"
        runtime = "MyRuntime"            # named in every reason and record
        weights = "initializers"         # or "inputs" (one model per structure)

        def available(self):
            return missing_module_reason("my_runtime")

        def load(self, model: bytes, device: str):
            import my_runtime
            return my_runtime.compile(model)

        def infer(self, compiled, feeds):
            return compiled.run(feeds)    # outputs in the graph's output order

The base exports each case with ``conformance.onnx.export`` (the models whose
inputs and outputs are the Keras layer's own), compiles a model once per
structure when the weights are graph inputs (once per case when they are
initializers), and returns the runtime's outputs as the Keras list. A
``load`` that raises is the runtime refusing the model: the result is an
error carrying the runtime's message, and later cases of the same structure
fail fast with it. ``precision(device)`` reports what reduced-precision
default the adapter switched off, and ``compiled_info(compiled)`` what the compiled model
itself says it computes in; both are recorded with every result.

``repro_runner`` (optional) is what ``conformance repro`` pastes into the
standalone reproducer it writes for one of the adapter's results: Python
source defining ``run_model(model_path, feeds, device)`` that returns the
outputs in graph order (a list of arrays), with its imports inside, needing
only the runtime and numpy, and making the settings ``load`` makes (the
reduced-precision switches above), so the script sees what the row saw::

    repro_runner = '''
    def run_model(model_path, feeds, device):
        import my_runtime
        return my_runtime.compile(open(model_path, "rb").read()).run(feeds)
    '''

Without it the reproducer still holds the model, the feeds and the expected
outputs, and its script says in one line that ``run_model`` needs filling in.
The base's ``reproducer`` (the contract's) packs the case's ONNX export with it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from conformance.adapters.contract import Adapter, Reproducer
from conformance.matrix.case import Case
from conformance.onnx import export, model_versions, not_expressible

MISSING_RUNNER = '''
def run_model(model_path, feeds, device):
    print("repro.py: the {adapter} adapter has no repro_runner: fill in run_model(model_path, feeds, device) "
          "with {runtime}'s load-and-run (outputs in graph order)", file=sys.stderr)
    raise SystemExit(2)
'''


class OnnxConsumerAdapter(Adapter):
    """An ONNX runtime as a conformance adapter: ``load`` and ``infer`` are the runtime's part."""

    runtime: str = "the ONNX runtime"
    weights: str = "initializers"
    layout: int = 0
    declared_devices: tuple[str, ...] = ("cpu",)
    repro_runner: str | None = None  # run_model's source for conformance repro (module docstring)

    def load(self, model: bytes, device: str) -> Any:
        """``model`` (serialized ModelProto) compiled for ``device``; raise if the runtime refuses it."""
        raise NotImplementedError

    def infer(self, compiled: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray] | dict[str, np.ndarray]:
        """The outputs of ``compiled`` for ``feeds`` (graph input name -> array): a list in the graph's
        output order, or a dict by output name."""
        raise NotImplementedError

    def precision(self, device: str) -> dict:
        """What the adapter set about the runtime's reduced-precision defaults on ``device`` (recorded)."""
        return {}

    def compiled_info(self, compiled: Any) -> dict:
        """Facts read back from ``compiled`` itself (e.g. the precision it really computes in), recorded
        with every run that uses it; ``{}`` by default."""
        return {}

    def __init__(self) -> None:
        self._compiled: dict[tuple, tuple[Any, BaseException | None]] = {}
        self._info: dict = {}

    def supports(self, case: Case) -> str | None:
        return not_expressible(case)

    def last_run_info(self) -> dict:
        return dict(self._info)

    def reproducer(self, case: Case, device: str) -> Reproducer:
        """The case's ONNX model as this adapter exports it (NotExpressible where there is none)."""
        exported = export(case, self.weights, self.layout)
        runner = self.repro_runner or MISSING_RUNNER.format(adapter=self.name, runtime=self.runtime)
        return Reproducer("model.onnx", exported.model_bytes, exported.feeds, list(exported.output_names), runner,
                          self.runtime, f"the suite's ONNX export, weights as {self.weights}, layout={self.layout}")

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        exported = export(case, self.weights, self.layout)
        compiled = self._compiled_model(exported, device)
        return exported.keras_outputs(self.infer(compiled, exported.feeds))

    def _compiled_model(self, exported, device: str) -> Any:
        """The compiled model for ``exported``'s structure on ``device``, or the runtime's refusal raised."""
        key = (exported.structure, device)
        cached = key in self._compiled
        start = time.perf_counter()
        if not cached:
            entry = self._compile(exported.model_bytes, device)
            if self.weights == "inputs":  # with initializers every case is its own model: nothing to reuse
                self._compiled[key] = entry
        else:
            entry = self._compiled[key]
        opset, ir_version = model_versions()
        self._info = {"runtime": self.runtime, "weights": self.weights, "layout": self.layout,
                      "onnx_opset": opset, "onnx_ir_version": ir_version,
                      "model": "cached" if cached else f"compiled in {time.perf_counter() - start:.3f}s",
                      # A model not cached was assembled (an export: model_bytes) and loaded: two.
                      "compilations": 0 if cached else 2,
                      **self.precision(device)}
        compiled, refusal = entry
        if refusal is not None:
            raise refusal.with_traceback(None)
        self._info.update(self.compiled_info(compiled))
        return compiled

    def _compile(self, model: bytes, device: str) -> tuple[Any, BaseException | None]:
        try:
            return self.load(model, device), None
        except Exception as exc:  # noqa: BLE001 - the runtime's refusal is the result
            return None, exc
