"""``conformance repro TEST_ID -o DIR``: one ONNX adapter's result as a standalone reproducer.

    DIR/model.onnx     the case as the adapter ran it (its weight placement and layout)
    DIR/inputs.npz     the feeds, by graph input name
    DIR/expected.npz   the Keras outputs (float64 golden values), by graph output name
    DIR/repro.py       needs only numpy and the runtime: runs the model, prints expected
                       against got and the max error; exit 1 while the difference stands,
                       0 once every value is within the case's tolerance

What a vendor attaches to a bug report: nothing of this suite is needed to
run it. The runtime-specific part is the adapter's ``repro_runner``
(``conformance.adapters.onnx.consumer``); for an adapter without one the
script is written with a ``run_model`` that says, in one line and exit 2,
that it needs filling in. Only adapters built on ``OnnxConsumerAdapter``
have a reproducer: the others' graphs are not ours to write.
"""

from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path

import numpy as np

from conformance.commands.exits import EXIT_OK, UsageError
from conformance.files import check_outputs_in, write_bytes_atomic, write_text_atomic
from conformance.matrix.case import DTYPES, Case

FILES = ("model.onnx", "inputs.npz", "expected.npz", "repro.py")
TEST_ID = re.compile(r"(?P<case>[^\[\]]+)\[(?P<adapter>.+)-(?P<device>cpu|cuda)-(?P<dtype>" + "|".join(DTYPES) + r")\]")

MISSING_RUNNER = '''
def run_model(model_path, feeds, device):
    print("repro.py: the {adapter} adapter has no repro_runner: fill in run_model(model_path, feeds, device) "
          "with {runtime}'s load-and-run (outputs in graph order)", file=sys.stderr)
    raise SystemExit(2)
'''


def repro_command(args: argparse.Namespace) -> int:
    case_id, adapter_name, device, dtype = parse_test_id(args.test_id)
    adapter = onnx_adapter(adapter_name)
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


def onnx_adapter(name: str):
    """The adapter named in the test id, if it consumes ONNX models; UnknownAdapterError or
    UsageError (one line) otherwise."""
    from conformance.adapters import load_adapter
    from conformance.adapters.onnx.consumer import OnnxConsumerAdapter

    adapter = load_adapter(name).adapter
    if not isinstance(adapter, OnnxConsumerAdapter):
        raise UsageError(f"repro writes ONNX cases; {name} is not an ONNX consumer "
                         "(an adapter built on conformance.adapters.onnx.consumer.OnnxConsumerAdapter)")
    return adapter


def find_case(case_id: str, dtype: str, fixtures_dir: Path | None) -> Case:
    from conformance.fixtures import load_cases

    cases = {case.id: case for case in load_cases(fixtures_dir)}
    if case_id not in cases:
        raise UsageError(f"unknown case {case_id!r} (conformance export onnx DIR writes index.json with every "
                         "case id)")
    if dtype not in cases[case_id].dtypes:
        raise UsageError(f"case {case_id} has no {dtype} row (its dtypes: {', '.join(cases[case_id].dtypes)})")
    return cases[case_id]


def write_repro(directory: Path, test_id: str, bound: Case, case: Case, adapter, device: str) -> None:
    from conformance.onnx import NotExpressible, export

    try:
        exported = export(bound, adapter.weights, adapter.layout)
    except NotExpressible as exc:
        raise UsageError(f"{test_id}: no ONNX model to reproduce: {exc}") from None
    expected = dict(zip(exported.output_names, case.expected))
    directory.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(directory / "model.onnx", exported.model_bytes)
    write_bytes_atomic(directory / "inputs.npz", npz(exported.feeds))
    write_bytes_atomic(directory / "expected.npz", npz(expected))
    write_text_atomic(directory / "repro.py", script(test_id, bound, adapter, device, list(expected)))


def npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def runtime_versions(adapter) -> str:
    """The versions the adapter reports, or why it could not (an unavailable runtime still gets its files)."""
    try:
        return ", ".join(f"{k} {v}" for k, v in adapter.versions().items()) or "not reported"
    except Exception as exc:  # noqa: BLE001 - a missing runtime must not stop the reproducer
        return f"not known here ({type(exc).__name__})"


def script(test_id: str, case: Case, adapter, device: str, output_names: list[str]) -> str:
    tolerance = case.tolerance()
    runner = adapter.repro_runner or MISSING_RUNNER.format(adapter=adapter.name, runtime=adapter.runtime)
    return SCRIPT.format(test_id=test_id, describe=case.describe(), runtime=adapter.runtime,
                         versions=runtime_versions(adapter), weights=adapter.weights, layout=adapter.layout,
                         device=json.dumps(device), atol=repr(tolerance.atol), rtol=repr(tolerance.rtol),
                         output_names=json.dumps(output_names), runner=runner.strip("\n"))


SCRIPT = '''\
#!/usr/bin/env python3
"""Reproducer for {test_id}, written by rnn-conformance's `conformance repro`.

Case:    {describe}
Runtime: {runtime} ({versions}); device {device}; weights as {weights}, layout={layout}
Files:   model.onnx (the case as an ONNX model), inputs.npz (its feeds by graph input name),
         expected.npz (the Keras layer's outputs, float64 golden values, by graph output name)

Run `python repro.py` (needs only numpy and {runtime}). It prints, per output, expected
against got and the max abs error against the bound; it exits 1 while any value differs
by more than atol + rtol * |expected|, and 0 once every value is within it.
"""

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEVICE = {device}
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
        outputs = list(run_model(str(HERE / "model.onnx"), feeds, DEVICE))
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
