"""The torch adapter's modules exported with ``torch.export``, lowered to ExecuTorch's XNNPACK
delegate and run by the ExecuTorch runtime (``executorch.runtime``), on the CPU.

Same Keras -> torch plan as the torch adapter, by composition (like onnx-torch):
its ``supports`` (``unsupported_reason``), weight mapping and Keras structure on
modules (``keras_outputs``, ``RecordedCalls``); only the framework call differs.

One program per structure: a wrapper module whose ``forward(x, [lengths,] h0,
[c0,] *weights)`` takes the module's parameters as inputs
(``torch.func.functional_call``), so the weights are not part of what is
lowered and one ``.pte`` serves every case of a structure. Observed on
executorch 1.5.1 / torch 2.13: ``to_edge_transform_and_lower`` decomposes
``aten.lstm/gru/rnn`` into one group of ops per time step (the time loop is
unrolled), so the time length is part of the structure; the batch is too:
with ``Dim("batch")`` an LSTM program runs at other batch sizes, but a GRU
program fails at run time (``Attempted to resize a static tensor``, error
0x12): torch's ``ExportedProgram.run_decompositions`` (the default Python-loop
``aten.gru`` decomposition) leaves the batch static. A program is
``ModuleKey`` + batch + time; lowering costs 2-30 s a program at T <= 7 and
30 s to 2 min at T=48 (2-core CPU; about 1 s per XNNPACK partition), so
programs are kept on disk (``conformance.caches``, keyed by structure and the
torch/executorch versions) and in memory (one loaded method per program).

Partitioner: ``XnnpackPartitioner(config_precisions=ConfigPrecisionType.FP32)``
(no quantizer, no fp16 conversion: a float32 module stays float32, every
tensor in XNNPACK's partitions float32; XNNPACK takes float16 graphs natively
and leaves float64 and bfloat16 wholly to the portable kernels).
With the weights as inputs, XNNPACK does not take the input projections
(``addmm`` with a runtime weight): those run on ExecuTorch's portable kernels,
as do the shape ops between the delegate's partitions. ``last_run_info`` says
how many graph nodes XNNPACK took and which ops were left to the portable
kernels, per program.

What torch expresses but ``torch.export`` or the lowering refuses (packed
sequences) is ``unsupported`` with the tool's own first line; ``supports``
finds that out by lowering the case's programs (cached), so ``compilations``
counts the lowerings and runtime loads made since the previous ``run``.

``repro_model`` / ``REPRO_RUNNER``: one case's program and inputs for a
standalone reproducer; ``reproducer`` packs them for ``conformance repro``
(cases that run one program).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from conformance.adapters.contract import Adapter, Reproducer, missing_module_reason
from conformance.adapters.torch.adapter import (
    ModuleCallRow,
    ModuleKey,
    RecordedCalls,
    build_module,
    forward_rnn,
    host_array,
    keras_outputs,
    to_tensor,
    unsupported_reason,
)
from conformance.caches import cached_file, read_or_make
from conformance.matrix.case import Case
from conformance.matrix.spec import LayerSpec

CACHE_FORMAT = 1
PRECISION = "XNNPACK ConfigPrecisionType.FP32 (no quantizer, no fp16 conversion)"


@dataclass(frozen=True)
class ProgramKey:
    """One lowered program: the module structure and the (static) batch and time sizes."""

    module: ModuleKey
    batch: int
    steps: int


@dataclass
class Program:
    """A lowered program: the .pte bytes, what the lowering reported, and the loaded method."""

    pte: bytes
    info: dict
    origin: str  # "lowered" or "read from disk cache"; "in memory" once a run has used it
    method: Any = None
    runtime_program: Any = None


class Refusal(Exception):
    """torch.export or the lowering refused a module: the tool's words."""


class ExecutorchAdapter(ModuleCallRow, Adapter):
    """torch.export -> XNNPACK -> ExecuTorch runtime; see the module docstring."""

    name = "executorch"
    declared_devices = ("cpu",)
    compiles_per_structure = True  # a lowering per structure and length (10 s to minutes)
    export_cache = True  # False: lower and load on every call
    requires = ("torch", "executorch")

    def __init__(self) -> None:
        self._programs: dict[ProgramKey, Program] = {}
        self._refusals: dict[ProgramKey, str] = {}
        self._made = {"lowerings": 0, "loads": 0}  # since the previous run
        self._info: dict = {}
        self._calls = RecordedCalls(self)

    def available(self) -> str | None:
        with quiet():  # executorch's imports warn (DeprecationWarning, torchao's CUDA kernels)
            return missing_module_reason("torch", "executorch.exir", "executorch.runtime",
                                         "executorch.backends.xnnpack.partition.xnnpack_partitioner")

    def versions(self) -> dict[str, str]:
        import torch

        with quiet():
            import executorch.version

        return {"torch": torch.__version__, "executorch": executorch.version.__version__}

    def devices(self) -> list[str]:
        return ["cpu"]

    def last_run_info(self) -> dict:
        return dict(self._info)

    def supports(self, case: Case) -> str | None:
        reason = unsupported_reason(case)  # what torch's modules cannot express
        if reason:
            return reason
        for key in program_keys(case):
            try:
                self._program(key)
            except Refusal as refusal:
                return str(refusal)
        return None

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        self._info = {}
        try:
            outputs = keras_outputs(case, device, self._run_module)
        finally:
            made, self._made = self._made, {"lowerings": 0, "loads": 0}
        self._info.update(compilations=made["lowerings"] + made["loads"], lowerings=made["lowerings"])
        return outputs



    # --- the framework call (torch.adapter.ModuleCall) -------------------------------------

    def prepare(self, key: ModuleKey, params: dict[str, np.ndarray], x: np.ndarray, lengths: np.ndarray | None,
                states: list[np.ndarray] | None, fresh: bool) -> Callable[[], list]:
        """The loaded method and its inputs: a closure of ``method.execute`` alone."""
        program_key = ProgramKey(replace(key, device="cpu"), x.shape[0], x.shape[1])
        program = self._program(program_key)
        if program.method is None:
            program.runtime_program, program.method = load_method(program.pte)
            self._made["loads"] += 1
        inputs = [to_tensor(array) for array in program_inputs(key, params, x, lengths, states)]
        self._info = {"runtime": "executorch", "delegate": "XnnpackBackend", "precision": PRECISION,
                      **program.info, "program": program.origin,
                      "programs_called": self._info.get("programs_called", 0) + 1}
        program.origin = "in memory"
        method = program.method
        if not self.export_cache:  # bench: nothing kept between calls
            self._programs.pop(program_key, None)
        return lambda: method.execute(inputs)

    def host_array(self, raw) -> np.ndarray:
        # A copy: the runtime's outputs may live in the method's planned memory, which the
        # next execute of the same method (a stack's second layer) overwrites.
        return np.array(host_array(raw), copy=True)

    def _program(self, key: ProgramKey) -> Program:
        """The lowered program for ``key`` (memory, then disk cache, then a lowering), or Refusal."""
        if key in self._refusals:
            raise Refusal(self._refusals[key])
        if key in self._programs:
            return self._programs[key]
        versions = self.versions()
        path = (cached_file("executorch", [CACHE_FORMAT, versions, asdict(key.module), key.batch, key.steps],
                            ".etcache") if self.export_cache else None)
        try:
            data, from_cache = read_or_make(path, lambda: pack(*lower(key)))
        except Refusal as refusal:
            self._refusals[key] = str(refusal)
            raise
        self._made["lowerings"] += not from_cache
        pte, info = unpack(data)
        program = Program(pte, info, "read from disk cache" if from_cache else "lowered")
        self._programs[key] = program
        return program

    # --- reproducer --------------------------------------------------------------------------

    def repro_model(self, case: Case, device: str) -> tuple[bytes, list[np.ndarray]]:
        """The .pte of ``case``'s one program and its inputs in the program's input order
        (ValueError for a case that runs several programs: a stack, an encoder-decoder)."""
        calls = recorded_calls(case)
        if len(calls) != 1:
            raise ValueError(f"{case.id} runs {len(calls)} executorch programs (one per layer); "
                             "a reproducer packs cases of one program")
        key, params, x, lengths, states = calls[0]
        program = self._program(ProgramKey(replace(key, device="cpu"), x.shape[0], x.shape[1]))
        return program.pte, program_inputs(key, params, x, lengths, states)

    def reproducer(self, case: Case, device: str) -> Reproducer:
        """``repro_model`` packed for ``conformance repro``: the runner assembles the Keras list
        from the program's ``(output, h_n[, c_n])`` (plain layers only)."""
        if not isinstance(case.spec, LayerSpec) or case.mask is not None:
            raise ValueError(f"{case.id}: the executorch reproducer covers single unmasked layers")
        pte, inputs = self.repro_model(case, device)
        key = recorded_calls(case)[0][0]
        names = input_names(key)
        layer = case.spec
        runner = REPRO_RUNNER + KERAS_LIST.format(names=names, sequences=layer.return_sequences,
                                                  state=layer.return_state)
        how = ("torch.export of torch.nn." + key.cell.upper().replace("SIMPLE_RNN", "RNN") + " (weights as program "
               "inputs) lowered with XnnpackPartitioner(FP32); the inputs are the program's: x"
               + (" reversed in time (go_backwards)" if layer.go_backwards else "") + ", h0/c0 (directions, batch, "
               "units), then the torch state dict")
        return Reproducer("model.pte", pte, dict(zip(names, inputs)), list(case.output_names), runner,
                          "executorch", how)


# --- programs ---------------------------------------------------------------------------------


def input_names(key: ModuleKey) -> list[str]:
    """The program's inputs, in order."""
    names = ["x"] + (["lengths"] if key.packed else []) + ["h0", "c0"][:key.n_states]
    return names + parameter_names(key)


def parameter_names(key: ModuleKey) -> list[str]:
    names = ["weight_ih_l0", "weight_hh_l0"] + (["bias_ih_l0", "bias_hh_l0"] if key.bias else [])
    return names + [name + "_reverse" for name in names] if key.bidirectional else names


def program_inputs(key: ModuleKey, params: dict[str, np.ndarray], x: np.ndarray, lengths: np.ndarray | None,
                   states: list[np.ndarray] | None) -> list[np.ndarray]:
    """The arrays the program takes, in ``input_names`` order; absent states are zeros (torch's default)."""
    if states is None:
        states = [np.zeros((key.directions, x.shape[0], key.units), dtype=x.dtype) for _ in range(key.n_states)]
    head = [np.ascontiguousarray(x)] + ([np.asarray(lengths, dtype=np.int64)] if key.packed else [])
    return head + [np.ascontiguousarray(s) for s in states] + [np.ascontiguousarray(params[n])
                                                               for n in parameter_names(key)]


def recorded_calls(case: Case) -> list[tuple]:
    """Every module call ``case`` makes, ``(key, params, x, lengths, states)``, without running one
    (zeros stand for the outputs: the calls' shapes do not depend on values)."""
    calls = []

    def record(key, params, x, lengths, states):
        calls.append((key, params, x, lengths, states))
        batch, steps = x.shape[:2]
        zeros = np.zeros((key.directions, batch, key.units), dtype=x.dtype)
        return np.zeros((batch, steps, key.directions * key.units), dtype=x.dtype), [zeros] * key.n_states

    keras_outputs(case, "cpu", record)
    return calls


def program_keys(case: Case) -> list[ProgramKey]:
    keys = [ProgramKey(replace(key, device="cpu"), x.shape[0], x.shape[1]) for key, _, x, _, _ in recorded_calls(case)]
    return list(dict.fromkeys(keys))


def program_wrapper(key: ModuleKey):
    """``forward(x, [lengths,] h0, [c0,] *weights) -> (output, h_n[, c_n])``: the module with the
    weights as inputs (``functional_call``), packed by ``lengths`` when the key says so."""
    import torch

    names = parameter_names(key)

    class Inner(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = build_module(key)

        def forward(self, x, lengths, hx):
            return forward_rnn(self.rnn, x, lengths, hx)

    class ProgramWrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Inner()

        def forward(self, x, *rest):
            lengths, rest = (rest[0], rest[1:]) if key.packed else (None, rest)
            hx, weights = list(rest[:key.n_states]), rest[key.n_states:]
            params = {"rnn." + name: weight for name, weight in zip(names, weights)}
            return tuple(torch.func.functional_call(self.inner, params, (x, lengths, hx)))

    return ProgramWrapper().eval()


def lower(key: ProgramKey) -> tuple[bytes, dict]:
    """``key``'s program, lowered to XNNPACK, and what the lowering did; Refusal with the tool's
    first line where torch.export or the lowering refuses."""
    import torch

    with quiet():
        from executorch.backends.xnnpack.partition.config.xnnpack_config import ConfigPrecisionType
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

    module_key = key.module
    dtype = getattr(torch, module_key.dtype)
    example = [torch.zeros(key.batch, key.steps, module_key.input_size, dtype=dtype)]
    if module_key.packed:
        example.append(torch.tensor([max(1, key.steps - n % key.steps) for n in range(key.batch)]))
    # Distinct tensors: torch.export binds one input to an object passed twice.
    example += [torch.zeros(module_key.directions, key.batch, module_key.units, dtype=dtype)
                for _ in range(module_key.n_states)]
    wrapper = program_wrapper(module_key)
    example += [torch.zeros_like(p) for p in wrapper.inner.rnn.parameters()]
    start = time.perf_counter()
    with quiet():
        try:
            exported = torch.export.export(wrapper, tuple(example))
        except Exception as exc:  # noqa: BLE001 - the exporter's refusal is the reason
            what = ("the packed module (pack_padded_sequence, a right-padded mask)" if module_key.packed
                    else "the module")
            raise Refusal(f"torch.export.export refuses {what}: {failure_summary(exc)}") from None
        exported_s = time.perf_counter() - start
        try:
            edge = to_edge_transform_and_lower(
                exported, partitioner=[XnnpackPartitioner(config_precisions=ConfigPrecisionType.FP32)])
            info = delegation_info(edge.exported_program())
            pte = edge.to_executorch().buffer
        except Exception as exc:  # noqa: BLE001 - the lowering's refusal is the reason
            raise Refusal(f"executorch lowering refuses the module: {failure_summary(exc)}") from None
    info.update(export_s=round(exported_s, 2), lower_s=round(time.perf_counter() - start - exported_s, 2))
    return pte, info


def delegation_info(program) -> dict:
    """How many graph nodes XNNPACK took (in how many partitions) and what was left to the
    portable kernels."""
    graph_module = program.graph_module
    partitions, delegated, portable = 0, 0, {}
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        target = str(getattr(node.target, "__name__", node.target))
        if "executorch_call_delegate" in target:
            lowered = getattr(graph_module, node.args[0].target)
            partitions += 1
            delegated += sum(1 for n in lowered.original_module.graph.nodes if n.op == "call_function"
                             and "getitem" not in str(n.target))
        elif "getitem" not in target:
            match = re.match(r"<EdgeOpOverload: ([^>]+)>", str(node.target))
            name = match.group(1) if match else str(node.target)
            portable[name] = portable.get(name, 0) + 1
    return {"xnnpack_partitions": partitions, "xnnpack_nodes": delegated,
            "portable_nodes": sum(portable.values()), "portable_ops": ",".join(sorted(portable))}


def pack(pte: bytes, info: dict) -> bytes:
    """One cache file (``.etcache``): the lowering's facts as one JSON line, then the .pte's bytes."""
    return json.dumps(info, sort_keys=True).encode() + b"\n" + pte


def unpack(data: bytes) -> tuple[bytes, dict]:
    header, pte = data.split(b"\n", 1)
    return pte, json.loads(header)


def load_method(pte: bytes):
    """The runtime's program (kept alive beside it) and its ``forward`` method."""
    with quiet():
        from executorch.runtime import Runtime

    program = Runtime.get().load_program(pte)
    return program, program.load_method("forward")


@contextlib.contextmanager
def quiet():
    """Silence executorch's imports, torch.export's and the lowering's warnings and progress lines
    (Python-level only: the runtime's C++ log lines still reach stderr)."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def failure_summary(exc: Exception) -> str:
    """The line of an export or lowering error that says what went wrong."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


# --- standalone reproducer ----------------------------------------------------------------------

REPRO_RUNNER = '''
def run_model(model_path, inputs, device):
    """The .pte's outputs for ``inputs`` (numpy arrays in the program's input order), on the CPU.

    ExecuTorch's Python runtime (executorch.runtime) takes and gives torch tensors;
    torch is a dependency of that runtime, not a second framework in the loop.
    """
    import numpy as np
    import torch
    from executorch.runtime import Runtime

    if device != "cpu":
        raise SystemExit(f"the executorch XNNPACK program runs on the cpu, not {device}")

    def tensor(array):
        array = np.ascontiguousarray(array)
        if array.dtype.name == "bfloat16":
            return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
        return torch.from_numpy(array)

    def host(value):
        value = value.detach()
        if value.dtype == torch.bfloat16:
            import ml_dtypes
            return value.float().numpy().astype(ml_dtypes.bfloat16)
        return np.array(value.numpy(), copy=True)

    with open(model_path, "rb") as file:
        method = Runtime.get().load_program(file.read()).load_method("forward")
    return [host(value) for value in method.execute([tensor(array) for array in inputs])]
'''

# Appended to REPRO_RUNNER by ``reproducer``: the Keras list of one plain layer from torch's
# (output, h_n[, c_n]); the feeds are the program's inputs by name.
KERAS_LIST = '''

_program_outputs = run_model
INPUT_NAMES = {names!r}
RETURN_SEQUENCES, RETURN_STATE = {sequences!r}, {state!r}


def run_model(model_path, feeds, device):
    """torch's (output, h_n[, c_n]) as the Keras list: the sequence or its last step, then the states."""
    output, *finals = _program_outputs(model_path, [feeds[name] for name in INPUT_NAMES], device)
    head = [output if RETURN_SEQUENCES else output[:, -1]]
    return head + [final[0] for final in finals] if RETURN_STATE else head
'''
