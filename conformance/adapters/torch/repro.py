"""The standalone reproducer of a torch-module result (``conformance repro``), shared by the torch
and torch-compile adapters: the module call ``run`` makes for a case, recorded through
``keras_outputs``, its arrays for ``inputs.npz``, and a ``run_model`` source that builds the
``nn.RNN/LSTM/GRU`` as the adapters do, runs it (eager, or ``torch.compile``d) and assembles the
Keras output list from torch's tensors with index gathers the suite derives. Single-call,
unmasked cases only: a stack or encoder-decoder feeds one call's output to the next, and a
mask runs as packed sequences. Each function takes the torch adapter's ``keras_outputs`` (the
Keras rules around torch's module calls) as an argument: this module sits below the adapter,
which imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from conformance.adapters.gathers import gather_source, labelled
from conformance.matrix.case import Case


def repro_arrays(case: Case, keras_outputs: Callable) -> dict[str, np.ndarray]:
    """``inputs.npz``: per module call ``k`` ``call{k}.x`` (the module's input as ``run`` feeds it:
    time-reversed for go_backwards), ``call{k}.h0`` / ``.c0`` (when the call has initial states)
    and ``call{k}.weight_ih_l0``... (torch layout)."""
    arrays = {}
    for index, (_, params, x, states) in enumerate(repro_calls(case, keras_outputs)):
        prefix = f"call{index}."
        arrays[prefix + "x"] = np.ascontiguousarray(x)
        if states is not None:
            for name, state in zip(("h0", "c0"), states):
                arrays[prefix + name] = np.ascontiguousarray(state)
        arrays.update({prefix + name: value for name, value in params.items()})
    return {name: float32_if_bfloat16(value) for name, value in arrays.items()}


def float32_if_bfloat16(array: np.ndarray) -> np.ndarray:
    """npz holds no ml_dtypes bfloat16: such arrays travel as float32 (exact) and the script casts back."""
    return array.astype(np.float32) if array.dtype.name == "bfloat16" else array


def repro_calls(case: Case, keras_outputs: Callable) -> list[tuple[Any, dict, np.ndarray, list | None]]:
    """The module calls ``run`` makes for ``case``, each (key, torch params, x, states), by
    recording them through ``keras_outputs`` with a module call that returns zeros (key: the
    adapter's ``ModuleKey``)."""
    calls = []

    def record(key, params, x, lengths, states):
        if lengths is not None:
            raise NotImplementedError(f"{case.id}: a masked case runs packed sequences; repro packs unmasked "
                                      "cases only")
        calls.append((key, params, x, states))
        batch, steps = x.shape[:2]
        y = np.zeros((batch, steps, key.directions * key.units), dtype=x.dtype)
        return y, [np.zeros((key.directions, batch, key.units), dtype=x.dtype)] * key.n_states

    keras_outputs(case, "cpu", record)
    if len(calls) != 1:
        raise NotImplementedError(f"{case.id}: {len(calls)} module calls (a stack or encoder-decoder feeds one "
                                  "call's output to the next); repro packs single-call cases only")
    return calls


def repro_runner(case: Case, keras_outputs: Callable, compiled: bool) -> str:
    """``run_model(model_path, feeds, device)``: the module call (``torch.compile``d as the
    torch-compile adapter does, or eager as the torch adapter runs it) and the conversion of its
    outputs to the Keras list, as source needing only torch and numpy."""
    ((key, _, _, _),) = repro_calls(case, keras_outputs)
    return RUNNER.format(adapter="torch-compile" if compiled else "torch",
                         call=COMPILED_CALL if compiled else EAGER_CALL,
                         cell={"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[key.cell],
                         input_size=key.input_size, units=key.units, bias=key.bias,
                         nonlinearity=repr(key.nonlinearity or "tanh"), bidirectional=key.bidirectional,
                         dtype=key.dtype, n_states=key.n_states, keras=keras_list_source(case, key, keras_outputs))


def keras_list_source(case: Case, key: Any, keras_outputs: Callable) -> str:
    """Source of ``keras_list(output, finals)``: the Keras outputs from torch's, as ``keras_outputs``
    would assemble them for this single-call case, written out as index gathers
    (``conformance.adapters.gathers``)."""
    batch, steps = case.x.shape[:2]
    shapes = [(batch, steps, key.directions * key.units)] + [(key.directions, batch, key.units)] * key.n_states
    y, *finals = labelled(shapes)
    try:
        return gather_source(keras_outputs(case, "cpu", lambda k, p, x, lengths, states: (y, finals)),
                             [y, *finals], ["output", "h_n", "c_n"])
    except NotImplementedError as exc:
        raise NotImplementedError(f"{case.id}: {exc}") from None


RUNNER = '''
def run_model(model_path, feeds, device):
    """The module as the suite's {adapter} adapter builds and runs it.
    Returns the Keras layer's outputs (torch's output, h_n[, c_n] rearranged)."""
    import torch

    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dtype = getattr(torch, "{dtype}")
    kwargs = dict(batch_first=True, bias={bias}, bidirectional={bidirectional})
    if "{cell}" == "RNN":
        kwargs["nonlinearity"] = {nonlinearity}
    module = torch.nn.{cell}({input_size}, {units}, **kwargs).to(device=device, dtype=dtype).eval()

    def tensor(name):
        return torch.from_numpy(np.ascontiguousarray(feeds[name])).to(device=device, dtype=dtype)

    with torch.no_grad():
        for name, parameter in module.named_parameters():
            parameter.copy_(tensor("call0." + name))
    x = tensor("call0.x")  # as the adapter feeds the module: go_backwards already reversed in time
    h0 = tensor("call0.h0") if "call0.h0" in feeds else None
    c0 = tensor("call0.c0") if "call0.c0" in feeds else None

    def forward(x, h0, c0):
        hx = None if h0 is None else ((h0, c0) if {n_states} == 2 else h0)
        output, final = module(x, hx)
        return (output, *final) if {n_states} == 2 else (output, final)

{call}    # numpy has no bfloat16: such tensors come back as float32 (exact); every other dtype as torch gave it
    host = [t.detach().cpu() for t in raw]
    output, h_n, c_n = [(t.float() if t.dtype == torch.bfloat16 else t).numpy() for t in host] + [None] * (3 - len(raw))

    def take(source, index):
        return source.ravel()[np.asarray(index, dtype=np.int64)]

    return {keras}
'''

EAGER_CALL = """    with torch.no_grad():
        raw = forward(x, h0, c0)
"""

COMPILED_CALL = """    import torch._dynamo
    import torch.fx.experimental._config as fx_config

    compiled = torch.compile(forward, backend="inductor", fullgraph=True, dynamic=True)
    with torch._dynamo.config.patch(allow_rnn=True), fx_config.patch(use_duck_shape=False), torch.no_grad():
        raw = compiled(x, h0, c0)
        eager = forward(x, h0, c0)
    for name, got, want in zip(["output", "h_n", "c_n"], raw, eager):
        print(f"torch {name}: compiled vs eager max abs difference "
              f"{(got.double() - want.double()).abs().max().item():.3g}")
"""
