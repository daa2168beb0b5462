"""The torch adapter's ``nn.RNN/LSTM/GRU`` modules run through ``torch.compile`` (Inductor).

Same Keras -> torch plan as the torch adapter, by composition (like
onnx-torch): its ``supports`` (``unsupported_reason``), weight mapping, Keras
structure on modules (``keras_outputs``), ``build_module``, ``forward_rnn``
and ``RecordedCalls``; only the framework call differs (``prepare``): each
module structure gets one ``torch.compile(forward, backend=..., fullgraph=True,
dynamic=True)`` of a function that calls the module, kept for the process.

Capture. torch 2.13's Dynamo graph-breaks on every ``nn.RNN/GRU/LSTM``
("Attempted to wrap RNN, GRU, or LSTM", torch/_dynamo/variables/builder.py)
unless ``torch._dynamo.config.allow_rnn`` is True ("experimental support");
with ``fullgraph=True`` that break would raise instead of quietly running the
module eagerly. Every compiled call runs under ``CAPTURE_CONFIG`` (``allow_rnn``
on, a per-function recompile limit that raises instead of falling back to
eager). The backend is Inductor's own entry point, ``compile_fx`` (what
``backend="inductor"`` names), wrapped by ``CaptureBackend``, which records for
every graph Dynamo hands it: the recurrent call it holds (``torch.lstm``,
``torch.gru``, ``torch.rnn_tanh``, ``torch.rnn_relu``), what AOTAutograd's
decompositions lowered it to (``aten.mkldnn_rnn_layer``, or the cell unrolled
over the time steps), and counts the graph's executions. ``last_run_info``
records per run: ``capture`` (the ops of the graphs that ran), ``graph_runs``
(graph executions == module calls: no call ran outside a compiled graph),
``graph_breaks`` (0: Dynamo's own counter), ``compilations`` (Dynamo graphs
compiled during the run; 0 when every call reused one), ``lowering``, and the
caches that served the compilations. A run where a module call ran outside a
compiled graph, or a graph without a recurrent op ran, raises (an error, never
a pass).

Not capturable: right-padded masks, which the torch adapter runs as packed
sequences. Dynamo refuses ``pack_padded_sequence`` (torch/nn is on its skip
list); ``supports`` asks torch once per process (``packed_refusal``) and
reports its words as the reason, so a torch that learns to capture it runs
those cases.

Shapes: ``dynamic=True`` with duck shaping off (a batch equal to the number of
units would otherwise share its symbol and be specialised). LSTM in float32 /
bfloat16 on the CPU lowers to oneDNN's ``mkldnn_rnn_layer``, whose graph
serves every batch and length; the other cells and dtypes are unrolled over
time (torch/_decomp/decompositions.py ``one_layer_rnn`` / ``one_layer_lstm``
iterate over the time axis), so a new length compiles a new graph, a new
batch does not. Observed on torch 2.13: the decomposition takes oneDNN for a
bfloat16 LSTM without eager's CPU check (RNN.cpp ``use_mkldnn`` asks
``mkldnn_bf16_device_check``), so on a CPU without oneDNN bfloat16 those runs
raise where eager torch runs (FINDINGS). Each structure's function has its own code object, so that
Dynamo's per-code recompile limit counts that structure's graphs only.

Compiled code is cached on disk by Inductor itself (FX graph cache and
AOTAutograd cache, under ``TORCHINDUCTOR_CACHE_DIR``); ``use_inductor_cache``
points it at ``torch-inductor/`` under the suite's cache root
(``conformance.caches``) unless the user set the variable.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import re
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from conformance.adapters.contract import Adapter, missing_module_reason, reduced_precision_allowed
from conformance.adapters.torch.adapter import (
    ModuleCallRow,
    ModuleKey,
    RecordedCalls,
    TorchAdapter,
    build_module,
    forward_rnn,
    host_array,
    keras_outputs,
    to_tensor,
    unsupported_reason,
)
from conformance.adapters.torch.repro import repro_arrays, repro_runner
from conformance.caches import cache_root
from conformance.matrix.case import Case

COMPILE_OPTIONS = {"fullgraph": True, "dynamic": True}
# torch._dynamo.config while a compiled function runs (Dynamo traces on the call).
CAPTURE_CONFIG = {"allow_rnn": True, "recompile_limit": 64, "fail_on_recompile_limit_hit": True}
RECURRENT_CALLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
INDUCTOR_CACHE_VARIABLE = "TORCHINDUCTOR_CACHE_DIR"
HOW = "torch.compile(backend=inductor (compile_fx), fullgraph=True, dynamic=True), torch._dynamo.config.allow_rnn=True"


def inductor_cache_dir():
    """``torch-inductor/`` under the suite's cache root; None when the caches are off."""
    root = cache_root()
    return None if root is None else root / "torch-inductor"


def use_inductor_cache() -> None:
    """Point Inductor's on-disk caches (FX graph, AOTAutograd, compiled C++ modules) at the
    suite's cache root: Inductor reads ``TORCHINDUCTOR_CACHE_DIR`` when it first needs its
    cache directory (torch/_inductor/runtime/cache_dir_utils.py), so this must run before the
    first compilation. A directory the user set is kept; ``CONFORMANCE_CACHE_DIR=off`` leaves
    Inductor's default (``/tmp/torchinductor_$USER``)."""
    directory = inductor_cache_dir()
    if directory is not None:
        os.environ.setdefault(INDUCTOR_CACHE_VARIABLE, str(directory))


# --- what the backend saw ---------------------------------------------------------------------


@dataclass
class GraphFacts:
    """One graph Dynamo compiled: the recurrent call it holds, its lowering, its runs."""

    recurrent: list[str]
    lowering: str = "not lowered here (AOTAutograd cache hit)"
    runs: int = 0


@dataclass
class CompiledStructure:
    """One structure's module, its compiled forward, and the graphs the backend made for it."""

    module: Any
    forward: Callable
    graphs: list[GraphFacts] = field(default_factory=list)


def recurrent_calls(graph) -> list[str]:
    """The recurrent ops a Dynamo FX graph calls (``torch.lstm``...), as ``torch.NAME``."""
    found = []
    for node in graph.nodes:
        if node.op == "call_function":
            name = getattr(node.target, "__name__", str(node.target))
            if name in RECURRENT_CALLS:
                found.append(f"torch.{name}")
    return found


def lowering(graph) -> str:
    """What AOTAutograd's decompositions made of the recurrent op, from the aten graph Inductor
    compiles: a fused kernel, or the cell unrolled (its recurrent matmuls counted)."""
    ops = collections.Counter(str(node.target) for node in graph.nodes if node.op == "call_function")
    fused = sorted(name for name in ops if re.search(r"rnn|lstm|gru", name))
    if fused:
        return ", ".join(fused)
    matmuls = sum(count for name, count in ops.items() if re.match(r"aten\.(mm|addmm|bmm|linear)\b", name))
    return f"unrolled over time, no recurrent op left ({matmuls} aten.mm/addmm)"


class CaptureBackend:
    """Inductor (``compile_fx``, the callable behind ``backend="inductor"``) with a record of
    every graph it is handed (``GraphFacts``) and a count of each compiled graph's runs."""

    def __init__(self, graphs: list[GraphFacts]) -> None:
        self.graphs = graphs

    def __call__(self, gm, example_inputs):
        compile_fx, compile_fx_inner = inductor_entry_points()
        facts = GraphFacts(recurrent_calls(gm.graph))
        self.graphs.append(facts)

        def inner(aten_graph, inputs, **kwargs):
            facts.lowering = lowering(aten_graph.graph)
            return compile_fx_inner(aten_graph, inputs, **kwargs)

        compiled = compile_fx(gm, example_inputs, inner_compile=inner)

        def run(*args):
            facts.runs += 1
            return compiled(*args)

        return run


def inductor_entry_points():
    """``compile_fx`` and ``compile_fx_inner``. Importing them imports torch/utils/mkldnn.py, whose
    ``@torch.jit.script_method`` warns DeprecationWarning (torch 2.13): torch's own, silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch._inductor.compile_fx import compile_fx, compile_fx_inner
    return compile_fx, compile_fx_inner


_serial = itertools.count()


def structure_forward(module, n_states: int, name: str) -> Callable:
    """``forward(x, h0, c0) -> (output, h_n[, c_n])`` on ``module``: what a user compiles.

    ``h0`` None: no initial state (the module's zeros). A new code object per call, so that
    Dynamo's cache and recompile limit, which hang on the code object, are this structure's.
    """

    def forward(x, h0, c0):
        hx = None if h0 is None else ([h0, c0] if n_states == 2 else [h0])
        return forward_rnn(module, x, None, hx)

    code = forward.__code__.replace(co_name=name, co_qualname=name)
    return types.FunctionType(code, forward.__globals__, name, forward.__defaults__, forward.__closure__)


@contextlib.contextmanager
def capture_config():
    """``CAPTURE_CONFIG`` for Dynamo, duck shaping off, while a compiled function runs."""
    import torch._dynamo
    import torch.fx.experimental._config as fx_config

    with torch._dynamo.config.patch(**CAPTURE_CONFIG), fx_config.patch(use_duck_shape=False):
        yield


def counter_totals() -> dict[str, int]:
    """torch._dynamo.utils.counters that say what a call compiled and from where."""
    from torch._dynamo.utils import counters

    return {"graphs": counters["stats"]["unique_graphs"],
            "graph_breaks": sum(counters["graph_break"].values()),
            "fx_graph_cache_hit": counters["inductor"]["fxgraph_cache_hit"],
            "fx_graph_cache_miss": counters["inductor"]["fxgraph_cache_miss"],
            "aot_autograd_cache_hit": counters["aot_autograd"]["autograd_cache_hit"],
            "aot_autograd_cache_miss": counters["aot_autograd"]["autograd_cache_miss"]}


# --- masks: what Dynamo refuses ---------------------------------------------------------------

_packed_refusal: list[str | None] = []


def packed_refusal() -> str | None:
    """torch's own refusal of a masked (packed) call under ``torch.compile(fullgraph=True)``,
    asked once per process on a tiny LSTM; None if torch captures it."""
    if not _packed_refusal:
        import torch

        module = build_module(ModuleKey("lstm", 2, 2, True, "", False, True, "float32", "cpu"))

        def packed(x, lengths):
            return forward_rnn(module, x, lengths, None)

        compiled = torch.compile(packed, backend="eager", **COMPILE_OPTIONS)
        try:
            with capture_config(), torch.no_grad():
                compiled(torch.zeros(2, 3, 2), torch.tensor([3, 2]))
            _packed_refusal.append(None)
        except Exception as exc:  # noqa: BLE001 - torch's refusal, whatever its type, is the reason
            _packed_refusal.append(refusal_text(exc))
    return _packed_refusal[0]


def refusal_text(exc: BaseException) -> str:
    """The lines of a Dynamo error that say what it refused, without paths or hint boilerplate."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    kept = [line for line in lines[:4] if not line.startswith(("Hint:", "Developer debug context", "For more"))]
    text = " ".join(kept)
    text = re.sub(r" in file `?/[^`\s]*/site-packages/", " in file `", text)
    return f"{type(exc).__name__}: {text}"[:400]


# --- the adapter --------------------------------------------------------------------------------


class TorchCompileAdapter(ModuleCallRow, Adapter):
    """``torch.compile`` of the torch adapter's modules; see the module docstring."""

    name = "torch-compile"
    declared_devices = ("cpu", "cuda")
    requires = ("torch",)
    compiles_per_structure = True  # an Inductor compilation per structure (seconds each)

    def __init__(self) -> None:
        use_inductor_cache()  # before anything imports Inductor (it sets the variable to its default)
        self._compiled: dict[ModuleKey, CompiledStructure] = {}
        self._info: dict = {}
        self._used: list[CompiledStructure] = []  # the structures the current run called, once a call
        self._runs_before: dict[int, int] = {}
        self._calls = RecordedCalls(self)
        self._eager = TorchAdapter()  # versions, devices, device names: the torch adapter's

    def available(self) -> str | None:
        reason = missing_module_reason("torch")
        if reason is None:
            try:
                inductor_entry_points()
            except Exception as exc:  # noqa: BLE001 - any import failure is the reason
                return f"torch._inductor does not import: {type(exc).__name__}: {exc}".splitlines()[0]
        return reason

    def versions(self) -> dict[str, str]:
        return self._eager.versions()

    def devices(self) -> list[str]:
        return self._eager.devices()

    def device_name(self, device: str) -> str:
        return self._eager.device_name(device)

    def last_run_info(self) -> dict:
        return dict(self._info)

    def supports(self, case: Case) -> str | None:
        reason = unsupported_reason(case)  # what torch's modules cannot express
        if reason is None and case.mask is not None:
            refusal = packed_refusal()
            if refusal:
                return ("a right-padded mask runs as a packed sequence, which torch.compile(fullgraph=True) "
                        f"does not capture: {refusal}")
        return reason

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        self._used = []
        self._runs_before = {id(graph): graph.runs for structure in self._compiled.values()
                             for graph in structure.graphs}
        before = counter_totals()
        outputs = keras_outputs(case, device, self._run_module)
        after = counter_totals()
        self._info = self._run_info(device, {name: after[name] - before[name] for name in after})
        return outputs  # never cast: a wrong dtype is torch's



    def _run_info(self, device: str, delta: dict[str, int]) -> dict:
        """The proof of capture for this run; RuntimeError where a module call ran outside a
        compiled graph holding its recurrent op (the result is then an error, never a pass)."""
        ran = []  # (graph, runs this run)
        for structure in {id(s): s for s in self._used}.values():
            for graph in structure.graphs:
                runs = graph.runs - self._runs_before.get(id(graph), 0)
                if runs:
                    ran.append((graph, runs))
        graph_runs = sum(runs for _, runs in ran)
        uncaptured = [graph for graph, _ in ran if not graph.recurrent]
        if graph_runs != len(self._used) or uncaptured or delta["graph_breaks"]:
            raise RuntimeError(f"not captured: {len(self._used)} module calls, {graph_runs} compiled graph runs, "
                               f"{len(uncaptured)} graphs without a recurrent op, {delta['graph_breaks']} graph breaks")
        info = {"compiler": HOW,
                "capture": sorted({call for graph, _ in ran for call in graph.recurrent}),
                "graph_runs": graph_runs,
                "graph_breaks": delta["graph_breaks"],
                "compilations": delta["graphs"],
                "lowering": sorted({graph.lowering for graph, _ in ran}),
                **precision_info(device)}
        if delta["graphs"]:
            info["inductor_cache"] = (f"fx graph {delta['fx_graph_cache_hit']} hit / "
                                      f"{delta['fx_graph_cache_miss']} miss, "
                                      f"AOTAutograd {delta['aot_autograd_cache_hit']} hit / "
                                      f"{delta['aot_autograd_cache_miss']} miss, in "
                                      f"{os.environ.get(INDUCTOR_CACHE_VARIABLE, 'torch default dir')}")
        return info

    # --- the framework call (torch.adapter.ModuleCall) -------------------------------------

    def prepare(self, key: ModuleKey, params: dict[str, np.ndarray], x: np.ndarray, lengths: np.ndarray | None,
                states: list[np.ndarray] | None, fresh: bool) -> Callable[[], tuple]:
        import torch

        if lengths is not None:  # supports() refused it unless torch learnt to capture packing
            raise NotImplementedError("packed calls are not compiled by this adapter")
        structure = self._structure(key, fresh)
        self._used.append(structure)
        device = torch.device(key.device)
        with torch.no_grad():
            for name, parameter in structure.module.named_parameters():
                parameter.copy_(to_tensor(params[name]))
        h0, c0 = (None, None) if states is None else [*(to_tensor(s).to(device) for s in states), None][:2]
        x_t = to_tensor(x).to(device)
        forward = structure.forward

        def call() -> tuple:
            with capture_config(), torch.no_grad():
                outputs = forward(x_t, h0, c0)
            if key.device == "cuda":
                torch.cuda.synchronize()
            return outputs

        return call

    def host_array(self, raw) -> np.ndarray:
        return host_array(raw)

    def _structure(self, key: ModuleKey, fresh: bool) -> CompiledStructure:
        key = replace(key, packed=False)
        if not fresh and key in self._compiled:
            return self._compiled[key]
        structure = self.compile_structure(key)
        if not fresh:
            self._compiled[key] = structure
        return structure

    def compile_structure(self, key: ModuleKey) -> CompiledStructure:
        """The module for ``key`` and its compiled forward (compiled lazily, on the first call).
        A subclass may change the module or the function handed to ``torch.compile`` here."""
        import torch

        module = build_module(key)
        set_precision(key.device)
        graphs: list[GraphFacts] = []
        name = f"{key.cell}_{key.dtype}_{key.device}_{next(_serial)}"
        forward = torch.compile(structure_forward(module, key.n_states, name), backend=CaptureBackend(graphs),
                                **COMPILE_OPTIONS)
        return CompiledStructure(module, forward, graphs)

    # --- conformance repro ----------------------------------------------------------------------

    def repro_arrays(self, case: Case) -> dict[str, np.ndarray]:
        """``inputs.npz`` for ``repro_script`` (``torch.repro.repro_arrays``)."""
        return repro_arrays(case, keras_outputs)

    def repro_script(self, case: Case, device: str) -> str:
        """A standalone script (torch + numpy) that builds the module as ``run`` does, loads
        ``repro_arrays(case)`` from ``inputs.npz`` beside it, compiles, runs and prints the raw
        torch outputs, then the Keras outputs in ``case.output_names`` order, and eager's beside them."""
        return REPRO_HEADER + repro_runner(case, keras_outputs, compiled=True) + REPRO_MAIN.format(
            test=case.id, device=device, output_names=list(case.output_names))

    def reproducer(self, case: Case, device: str):
        """The contract's ``Reproducer`` (``conformance repro``): no model file, the script builds it."""
        from conformance.adapters.contract import Reproducer

        return Reproducer(None, None, repro_arrays(case, keras_outputs), list(case.output_names),
                          repro_runner(case, keras_outputs, compiled=True), "torch", HOW)


def set_precision(device: str) -> None:
    """The float32 verdict needs true float32 matmuls (SEMANTICS.md §6): TF32 off for cuBLAS and
    cuDNN (``build_module`` does that) and for Inductor, which reads
    ``torch.get_float32_matmul_precision()`` for its own matmul templates."""
    import torch

    if device == "cuda":
        torch.set_float32_matmul_precision("high" if reduced_precision_allowed() else "highest")


def precision_info(device: str) -> dict[str, str]:
    import torch
    import torch._inductor.config as inductor_config

    if device == "cuda":
        return {"precision": f"allow_tf32={reduced_precision_allowed()}, "
                             f"float32_matmul_precision={torch.get_float32_matmul_precision()}, "
                             f"emulate_precision_casts={inductor_config.emulate_precision_casts}"}
    return {"precision": f"inductor cpp: unsafe_math={inductor_config.cpp.enable_unsafe_math_opt_flag}, "
                         f"fp_contract={inductor_config.cpp.enable_floating_point_contract_flag}, "
                         f"emulate_precision_casts={inductor_config.emulate_precision_casts}"}


# --- repro ----------------------------------------------------------------------------------------


REPRO_HEADER = '''#!/usr/bin/env python3
"""Standalone torch.compile reproducer written by rnn-conformance's torch-compile adapter.

Needs torch and numpy. Reads inputs.npz beside it (call0.x, call0.h0/c0, call0.weight_ih_l0...),
builds the nn module as the adapter does, compiles it with Inductor (allow_rnn=True,
fullgraph=True, dynamic=True), runs it, and prints the Keras outputs it makes of torch's.
"""

import sys
from pathlib import Path

import numpy as np
'''

REPRO_MAIN = '''

if __name__ == "__main__":
    feeds = dict(np.load(Path(__file__).resolve().parent / "inputs.npz"))
    outputs = run_model(None, feeds, sys.argv[1] if len(sys.argv) > 1 else "{device}")
    for name, value in zip({output_names!r}, outputs):
        print(name, value.shape, value.ravel()[:6])
    print("case {test}")
'''
