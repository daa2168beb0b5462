"""``conformance repro TEST_ID -o DIR``: one adapter's result as a standalone reproducer.

    DIR/model.*        the model as the adapter ran it (model.onnx, model.tflite, model.pte, model.keras,
                       OpenVINO IR model.xml + model.bin;
                       none where the script builds it itself, as for torch.compile)
    DIR/inputs.npz     the feeds the script's run_model takes
    DIR/expected.npz   the Keras outputs (float64 golden values), by output name
    DIR/repro.py       needs only numpy and the runtime: runs the model, prints expected
                       against got and the max error; exit 1 while the difference stands,
                       0 once every value is within the case's tolerance

What a vendor attaches to a bug report: nothing of this suite is needed to
run it. The adapter-specific part is the contract's optional ``reproducer``
(``conformance.adapters.contract.Reproducer``): every ONNX consumer has it
(``OnnxConsumerAdapter``), and so do the deployment rows; an adapter without
it gets one line and exit 2.
"""

from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path

import numpy as np

from conformance.adapters.contract import LoadedAdapter, Reproducer
from conformance.commands.exits import EXIT_OK, UsageError
from conformance.files import check_outputs_in, write_bytes_atomic, write_text_atomic
from conformance.matrix.case import DTYPES, Case

MODEL_FILES = ("model.onnx", "model.tflite", "model.pte", "model.keras", "model.xml", "model.bin")
FILES = (*MODEL_FILES, "inputs.npz", "expected.npz", "repro.py")
TEST_ID = re.compile(r"(?P<case>[^\[\]]+)\[(?P<adapter>.+)-(?P<device>cpu|cuda)-(?P<dtype>" + "|".join(DTYPES) + r")\]")


def repro_command(args: argparse.Namespace) -> int:
    case_id, adapter_name, device, dtype = parse_test_id(args.test_id)
    adapter = reproducing_adapter(adapter_name, args.adapter)
    case = find_case(case_id, dtype, args.fixtures_dir)
    check_outputs_in(args.output_dir, FILES)
    write_repro(args.output_dir, args.test_id, case.for_dtype(dtype), case, adapter, device)
    print(f"reproducer for {args.test_id} in {args.output_dir}: run python {args.output_dir / 'repro.py'}")
    return EXIT_OK


def parse_test_id(test_id: str) -> tuple[str, str, str, str]:
    """(case id, adapter, device, dtype) of ``case[adapter-device-dtype]`` (``records.test_id``)."""
    match = TEST_ID.fullmatch(test_id)
    if match is None:
        raise UsageError(f"{test_id!r} is not a conformance test id: expected CASE[ADAPTER-DEVICE-DTYPE], e.g. "
                         "'lstm-seq1-state0-random-b3t5[onnx-native-cpu-float32]'")
    return match["case"], match["adapter"], match["device"], match["dtype"]


def reproducing_adapter(name: str, path: str | None = None) -> LoadedAdapter:
    """The adapter named in the test id (or loaded from ``path``, a third-party ``module:Class`` whose
    name the id holds), if it has a ``reproducer``; UnknownAdapterError or UsageError (one line) otherwise."""
    from conformance.adapters import UnknownAdapterError, adapter_paths, load_adapter

    if path is None and name not in adapter_paths() and ":" not in name:
        raise UnknownAdapterError(f"unknown adapter {name!r}: for a third-party adapter give its class, "
                                  f"--adapter package.module:Class")
    adapter = load_adapter(path or name)
    if adapter.name != name and path is not None:
        raise UsageError(f"--adapter {path} is named {adapter.name!r}, the test id names {name!r}")
    if adapter.reproducer is None:
        raise UsageError(f"{name} has no reproducer: repro needs the adapter's reproducer(case, device) "
                         "(conformance.adapters.contract.Reproducer; every ONNX consumer and deployment row has one)")
    return adapter


def find_case(case_id: str, dtype: str, fixtures_dir: Path | None) -> Case:
    """The fixture case ``case_id``, or the unseen case it names (``unseen_case_of``)."""
    from conformance.fixtures import load_cases
    from conformance.matrix.unseen import is_unseen

    if is_unseen(case_id):
        cases = {case_id: unseen_case_of(case_id)}
    else:
        cases = {case.id: case for case in load_cases(fixtures_dir)}
    if case_id not in cases:
        raise UsageError(f"unknown case {case_id!r} (conformance export onnx DIR writes index.json with every "
                         "case id)")
    if dtype not in cases[case_id].dtypes:
        raise UsageError(f"case {case_id} has no {dtype} row (its dtypes: {', '.join(cases[case_id].dtypes)})")
    return cases[case_id]


def unseen_case_of(case_id: str) -> Case:
    """The unseen case ``case_id`` drawn again from its id's seed and index, with the answer a run judges
    it by (the float64 oracle's, ``conformance.fixtures.load_unseen``); UsageError where no such case
    has that id."""
    from conformance.matrix.unseen import redrawn
    from conformance.reference import answered

    case = redrawn(case_id)
    if case is None:
        raise UsageError(f"unknown case {case_id!r}: the unseen case of its seed and index has another id")
    return answered(case)


def write_repro(directory: Path, test_id: str, bound: Case, case: Case, adapter: LoadedAdapter,
                device: str) -> None:
    reason = adapter.supports(bound)
    if reason is not None:
        raise UsageError(f"{test_id}: nothing to reproduce, {adapter.name} does not support the case: {reason}")
    try:
        made = adapter.reproducer(bound, device)
    except Exception as exc:  # noqa: BLE001 - the adapter's refusal, in its words
        raise UsageError(f"{test_id}: no model to reproduce: {' '.join(str(exc).split())}") from None
    expected = dict(zip(made.output_names, case.expected))
    directory.mkdir(parents=True, exist_ok=True)
    if made.model_file is not None:
        write_bytes_atomic(directory / made.model_file, made.model_bytes)
    for name, data in made.side_files.items():
        write_bytes_atomic(directory / name, data)
    write_bytes_atomic(directory / "inputs.npz", npz(made.feeds))
    write_bytes_atomic(directory / "expected.npz", npz(expected))
    write_text_atomic(directory / "repro.py", script(test_id, bound, adapter, made, device))


def npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def runtime_versions(adapter: LoadedAdapter) -> str:
    """The versions the adapter reports, or why it could not (an unavailable runtime still gets its files)."""
    try:
        return ", ".join(f"{k} {v}" for k, v in adapter.versions().items()) or "not reported"
    except Exception as exc:  # noqa: BLE001 - a missing runtime must not stop the reproducer
        return f"not known here ({type(exc).__name__})"


def script(test_id: str, case: Case, adapter: LoadedAdapter, made: Reproducer, device: str) -> str:
    tolerance = case.tolerance()
    model = f"{made.model_file} (the case as {adapter.name} ran it), " if made.model_file else ""
    return SCRIPT.format(test_id=test_id, describe=case.describe(), runtime=made.runtime,
                         versions=runtime_versions(adapter), how=made.how, model=model,
                         model_path=repr(made.model_file), device=json.dumps(device),
                         atol=repr(tolerance.atol), rtol=repr(tolerance.rtol),
                         output_names=json.dumps(made.output_names), runner=made.runner.strip("\n"))


SCRIPT = '''\
#!/usr/bin/env python3
"""Reproducer for {test_id}, written by rnn-conformance's `conformance repro`.

Case:    {describe}
Runtime: {runtime} ({versions}); device {device}
Model:   {how}
Files:   {model}inputs.npz (the feeds run_model takes), expected.npz (the Keras
         layer's outputs, float64 golden values, by output name)

Run `python repro.py` (needs only numpy and {runtime}). It prints, per output, expected
against got and the max abs error against the bound; it exits 1 while any value differs
by more than atol + rtol * |expected|, and 0 once every value is within it.
"""

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEVICE = {device}
MODEL = {model_path}
ATOL, RTOL = {atol}, {rtol}
OUTPUT_NAMES = {output_names}
SHOWN = 4


{runner}


def compare(name, want, got):
    """Whether ``got`` matches ``want`` within the bound; prints a few values and the worst error."""
    got = np.asarray(got)
    if got.shape != want.shape:
        print(f"{{name}}: shape {{got.shape}}, expected {{want.shape}}")
        return False
    error = np.abs(got.astype(np.float64) - want)
    error = np.where(np.isnan(error), np.inf, error)
    bad = error > ATOL + RTOL * np.abs(want)
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(error)), error.shape)) if error.size else ()
    print(f"{{name}}: expected {{want.ravel()[:SHOWN]}}")
    print(f"{{' ' * len(name)}}  got      {{got.ravel()[:SHOWN]}} ({{got.dtype}})")
    if error.size:
        print(f"{{' ' * len(name)}}  max abs error {{error.max():.3g}} at {{worst}} (expected {{want[worst]:.9g}}, "
              f"got {{got[worst]:.9g}}); {{int(bad.sum())}}/{{error.size}} values outside atol={{ATOL:g}} "
              f"rtol={{RTOL:g}}")
    return not bad.any()


def main():
    feeds = dict(np.load(HERE / "inputs.npz"))
    expected = np.load(HERE / "expected.npz")
    try:
        outputs = list(run_model(None if MODEL is None else str(HERE / MODEL), feeds, DEVICE))
    except Exception as exc:
        print(f"the runtime failed on the model: {{type(exc).__name__}}: {{exc}}")
        return 1
    if len(outputs) != len(OUTPUT_NAMES):
        print(f"the runtime returned {{len(outputs)}} outputs; expected {{len(OUTPUT_NAMES)}} ({{OUTPUT_NAMES}})")
        return 1
    matches = [compare(name, expected[name], got) for name, got in zip(OUTPUT_NAMES, outputs)]
    print("within tolerance" if all(matches) else "DIFFERENT from the expected outputs")
    return 0 if all(matches) else 1


if __name__ == "__main__":
    sys.exit(main())
'''
