"""``conformance export onnx DIR``: every case as an ONNX model in the ONNX backend-test data layout.

    DIR/index.json                                  what was written and skipped, with tolerances
    DIR/<weights>/test_<case_id>_<dtype>/model.onnx
                                        /data.json  {"atol": ..., "rtol": ...} (onnx's loader reads it)
                                        /test_data_set_0/input_N.pb, output_N.pb

``<weights>`` is the weight placement (``initializers`` or ``inputs``), so
``onnx.backend.test.loader.load_model_tests(data_dir=DIR, kind=<weights>)``
loads one placement, each case with its own tolerance. input_N / output_N
follow the graph's input / output order and carry their names; the outputs
are the golden values (float64, from the oracle) in the row's dtype.

A vendor's runner consumes the directory with no code of ours, so the
directory is written whole or not at all: it is built beside ``DIR`` and
renamed into place, replacing an earlier export (recognised by its index)
but nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from conformance.commands.exits import EXIT_OK, UsageError
from conformance.files import check_output_dir
from conformance.matrix.case import DTYPES, Case

INDEX = "index.json"
FORMAT = "rnn-conformance onnx export"
FORMAT_VERSION = 1
DATA_SET = "test_data_set_0"


def export_command(args: argparse.Namespace) -> int:
    from conformance.commands.run import check_keyword
    from conformance.fixtures import load_cases

    check_keyword(args.keyword)
    target = Path(args.directory)
    check_target(target)
    selects = case_selector(args.keyword)
    cases = [case for case in load_cases(args.fixtures_dir) if selects(case.id)]
    placements = placements_of(args.weights)
    dtypes = DTYPES if args.dtype == "all" else (args.dtype,)
    index = install(target, lambda staging: write_export(staging, cases, placements, dtypes, args))
    print(f"exported {len(index['tests'])} ONNX test(s) to {target} ({len(index['skipped'])} skipped as not "
          f"expressible; see {target / INDEX})")
    return EXIT_OK


def placements_of(choice: str) -> tuple[str, ...]:
    from conformance.onnx import WEIGHT_PLACEMENTS

    return WEIGHT_PLACEMENTS if choice == "both" else (choice,)


def case_selector(expression: str) -> Callable[[str], bool]:
    """Whether pytest's ``-k`` grammar selects a case id (``plugin.keyword_selects`` on the id alone)."""
    from conformance.plugin import keyword_selects

    selects = keyword_selects(expression)

    def selects_case(case_id: str) -> bool:
        try:
            return selects([case_id.lower()])
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    return selects_case


def test_name(case_id: str, dtype: str) -> str:
    """The backend-test name: onnx's runner requires ``test_`` and appends ``_cpu`` / ``_cuda``."""
    return f"test_{case_id.replace('-', '_')}_{dtype}"


# --- the target directory --------------------------------------------------------------------

def check_target(target: Path) -> None:
    """UsageError unless ``target`` is new, empty, or an earlier export of ours (which is replaced),
    and its parent can take the directory built beside it. Creates nothing."""
    if target.is_symlink():
        raise UsageError(f"{target}: is a symbolic link; give the directory itself")
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target}: exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not is_export(target):
        raise UsageError(f"{target}: not empty and not an earlier 'conformance export onnx' (no {INDEX} of "
                         "ours); refusing to replace it")
    check_output_dir(target)
    check_output_dir(target.absolute().parent)


def is_export(directory: Path) -> bool:
    try:
        index = json.loads((directory / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(index, dict) and index.get("format") == FORMAT


def install(target: Path, write: Callable[[Path], dict]) -> dict:
    """``write`` into a fresh directory beside ``target``, then rename it into place; an earlier
    export there is moved aside first and removed after, so a reader sees one or the other."""
    parent = target.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.export-", dir=parent))
    try:
        result = write(staging)
        os.chmod(staging, 0o755)
        if target.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{target.name}.previous-", dir=parent))
            os.replace(target, previous / target.name)
            os.replace(staging, target)
            shutil.rmtree(previous)
        else:
            os.replace(staging, target)
    except OSError as exc:
        raise UsageError(f"{target}: cannot write the export ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


# --- writing ---------------------------------------------------------------------------------

def write_export(directory: Path, cases: list[Case], placements: tuple[str, ...], dtypes: tuple[str, ...],
                 args: argparse.Namespace) -> dict:
    """Every selected case x dtype x placement written under ``directory``; returns the index."""
    import conformance
    from conformance.fixtures import manifest_sha256
    from conformance.onnx import model_versions

    opset, ir_version = model_versions()
    tests, skipped = [], []
    for placement in placements:
        for case in cases:
            for dtype in (d for d in case.dtypes if d in dtypes):
                entry = write_case(directory, case, dtype, placement)
                (skipped if "reason" in entry else tests).append(entry)
    index = {"format": FORMAT, "format_version": FORMAT_VERSION, "suite_version": conformance.__version__,
             "fixtures_sha256": manifest_sha256(args.fixtures_dir), "opset": opset, "ir_version": ir_version,
             "keyword": args.keyword, "weights": list(placements), "dtypes": list(dtypes),
             "tolerance_rule": "|got - expected| <= atol + rtol * |expected| for every value",
             "tests": tests, "skipped": skipped}
    (directory / INDEX).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    return index


def write_case(directory: Path, case: Case, dtype: str, placement: str) -> dict:
    """One case's test directory; its index entry (with ``reason`` and no directory when ONNX
    cannot express the case)."""
    from conformance.onnx import export, not_expressible

    bound = case.for_dtype(dtype)
    name = test_name(case.id, dtype)
    entry = {"test": name, "case_id": case.id, "dtype": dtype, "weights": placement}
    reason = not_expressible(bound)
    if reason is not None:
        return {**entry, "reason": reason}
    exported = export(bound, weights=placement)
    tolerance = case.tolerance(dtype).to_dict()
    test_dir = directory / placement / name
    (test_dir / DATA_SET).mkdir(parents=True)
    (test_dir / "model.onnx").write_bytes(exported.model_bytes)
    (test_dir / "data.json").write_text(json.dumps(tolerance) + "\n", encoding="utf-8")
    inputs = [value.name for value in exported.model.graph.input]
    write_tensors(test_dir / DATA_SET, "input", {name: exported.feeds[name] for name in inputs})
    expected = {name: np.asarray(value, dtype=dtype) for name, value in zip(exported.output_names, case.expected)}
    write_tensors(test_dir / DATA_SET, "output", expected)
    return {**entry, "dir": f"{placement}/{name}", **tolerance, "describe": case.describe(),
            "inputs": inputs, "outputs": list(exported.output_names)}


def write_tensors(directory: Path, kind: str, tensors: dict[str, np.ndarray]) -> None:
    """``<kind>_N.pb`` TensorProtos named as the graph's inputs or outputs, N in graph order."""
    from onnx import numpy_helper

    for n, (name, value) in enumerate(tensors.items()):
        (directory / f"{kind}_{n}.pb").write_bytes(numpy_helper.from_array(value, name).SerializeToString())
