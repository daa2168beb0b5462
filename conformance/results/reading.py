"""Reading results for the report and compare commands: documents or raw streams.

A ``.jsonl`` stream is what an interrupted run leaves behind; it is read as an
incomplete document so that everything finished can still be rendered.
"""

from __future__ import annotations

from pathlib import Path

from conformance.results.records import (
    ResultsFileError,
    load_results,
    merge_documents,
    read_jsonl,
    results_document,
    validate_document,
)


def load_stream(path: Path) -> dict:
    try:
        lines = read_jsonl(path)
    except FileNotFoundError:
        raise ResultsFileError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise ResultsFileError(f"{path}: not a results stream (not UTF-8 text)") from None
    records = [line for line in lines if isinstance(line, dict) and line.get("record") == "result"]
    if lines and not records and not any(isinstance(line, dict) and line.get("record") for line in lines):
        raise ResultsFileError(f"{path}: not a conformance results stream")
    document = results_document(records, complete=False, created="", fixtures_sha256="",
                                machine={}, adapters={})
    return validate_document(document, str(path))


def expand(paths: list[Path]) -> list[Path]:
    """A directory stands for the results.json of each of its sub-directories (tox envs)."""
    expanded = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*/results.json"))
            if not found:
                raise ResultsFileError(f"{path}: a directory with no */results.json in it")
            expanded.extend(found)
        else:
            expanded.append(path)
    return expanded


def load_any(paths: list[Path]) -> dict:
    """One merged, validated document from results.json files, .jsonl streams or directories."""
    documents = [load_stream(p) if p.suffix == ".jsonl" else load_results(p) for p in expand(paths)]
    return documents[0] if len(documents) == 1 else merge_documents(documents)
