"""``conformance history RESULTS... -o DIR``: the history report over runs you already have.

``conformance sweep`` makes the runs and their history in one go; this command draws
the history of any results files or report dirs, in the order given (oldest first):

    conformance history reports/ort-1.18/results.json reports/ort-1.32/ -o reports/history

Each RESULTS is one column (a directory stands for its ``*/results.json`` merged, or its own
``results.json``: ``conformance.results.reading.load_any``), labelled by ``--label`` (once per
RESULTS) or else by its adapters' framework versions. ``--by-case`` lines up results of
different adapters by case, device and dtype (tf-keras beside keras-tensorflow).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from conformance.commands.exits import EXIT_OK, UsageError
from conformance.files import check_outputs_in
from conformance.report.history import HTML_NAME, JSON_NAME
from conformance.results.regression import check_growth_factor

DEFAULT_OUTPUT = Path("reports/history")


def default_label(document: dict[str, Any], path: Path) -> str:
    """'onnx-native onnxruntime 1.18.1 onnx 1.17.0': each adapter and its versions; else the path."""
    parts = []
    for name, info in (document.get("adapters") or {}).items():
        versions = " ".join(f"{package} {version}" for package, version in ((info or {}).get("versions") or {}).items())
        parts.append(f"{name} {versions}".strip())
    return "; ".join(parts) or str(path)


def check_options(args: argparse.Namespace) -> None:
    """Everything about the command line that can be wrong, before anything is read or written."""
    try:
        check_growth_factor(args.drift_factor)
    except ValueError:
        raise UsageError(f"--drift-factor {args.drift_factor:g}: expected a finite number > 1") from None
    if args.labels and len(args.labels) != len(args.results):
        raise UsageError(f"{len(args.labels)} --label values for {len(args.results)} RESULTS: "
                         "give it once per RESULTS, in the same order, or not at all")
    sources = {path.resolve() for path in args.results}
    for name in (JSON_NAME, HTML_NAME):
        if (args.output / name).resolve() in sources:
            raise UsageError(f"{args.output / name}: the history would overwrite one of its RESULTS")
    check_outputs_in(args.output, (JSON_NAME, HTML_NAME))


def history_command(args: argparse.Namespace) -> int:
    """Exit 0 with the report written; 2 on bad input, nothing written."""
    from conformance.report import render_history
    from conformance.results.history import HistoryRun, build_history
    from conformance.results.reading import load_any

    check_options(args)
    documents = [load_any([path]) for path in args.results]
    labels = args.labels or [default_label(d, p) for d, p in zip(documents, args.results)]
    try:
        history = build_history([HistoryRun(label, document) for label, document in zip(labels, documents)],
                                drift_factor=args.drift_factor, by_case=args.by_case)
    except ValueError as exc:  # by case: one run holding two adapters' results of one case
        raise UsageError(str(exc)) from None
    path = render_history(history, args.output)
    print(f"history: {path} ({len(history.columns)} runs, {len(history.rows)} rows, "
          f"{len(history.changed_rows())} changed)")
    return EXIT_OK
