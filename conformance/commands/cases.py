"""``conformance cases``: the matrix as the fixtures manifest lists it, a case per line.

Read from ``fixtures/manifest.json`` (validated as every command reads it), so it
shows what a run will check without loading an array: each case's id, the Keras
call, its dtypes, where its mask comes from, and the coverage the oracle measured
(``preactivation_range``: the smallest and largest argument of each kind of
activation anywhere in the case).
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from conformance.commands.exits import EXIT_OK, UsageError
from conformance.fixtures import default_fixtures_dir, read_manifest

COLUMNS = ("id", "layer", "dtypes", "mask_source", "activation", "recurrent_activation")


def case_rows(manifest: dict, pattern: str | None) -> list[dict]:
    """The manifest's cases whose id matches the shell-style ``pattern`` (all without one)."""
    rows = []
    for entry in manifest["cases"]:
        if pattern is None or fnmatch.fnmatchcase(entry["id"], pattern):
            ranges = entry["preactivation_range"]
            rows.append({"id": entry["id"], "layer": entry["describe"], "dtypes": entry["dtypes"],
                         "mask_source": entry.get("mask_source", "argument"), "preactivation_range": ranges})
    return rows


def _range(bounds: list[float] | None) -> str:
    return "" if bounds is None else f"{bounds[0]:g}..{bounds[1]:g}"


def _mask_source(source: str) -> str:
    return "" if source == "argument" else source


def table(rows: list[dict]) -> str:
    """Aligned text columns, a header first; mask_source shown where it is not mask= (the default)."""
    lines = [COLUMNS] + [
        (row["id"], row["layer"], ",".join(row["dtypes"]), _mask_source(row["mask_source"]),
         _range(row["preactivation_range"].get("activation")),
         _range(row["preactivation_range"].get("recurrent_activation")))
        for row in rows]
    widths = [max(len(line[n]) for line in lines) for n in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)


def cases_command(args) -> int:
    directory = Path(args.fixtures_dir or default_fixtures_dir())
    rows = case_rows(read_manifest(directory), args.match)
    if not rows:
        raise UsageError(f"no case id matches {args.match!r} (shell-style: * ? [...])")
    print(json.dumps(rows, indent=1) if args.json else table(rows))
    if not args.json:
        print(f"{len(rows)} cases, {sum(len(row['dtypes']) for row in rows)} case x dtype pairs")
    return EXIT_OK
