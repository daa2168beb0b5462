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
    numbered_jsonl,
    results_document,
    validate_stream_line,
)


def load_stream(path: Path) -> dict:
    """A stream as an incomplete, validated document: every line checked against the schema's ``stream_line``."""
    try:
        lines = numbered_jsonl(path)
    except FileNotFoundError:
        raise ResultsFileError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise ResultsFileError(f"{path}: not a results stream (not UTF-8 text)") from None
    except OSError as exc:
        raise ResultsFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if lines and not any(isinstance(line, dict) and "record" in line for _, line in lines):
        raise ResultsFileError(f"{path}: not a conformance results stream")
    records = [validate_stream_line(line, str(path), number) for number, line in lines]
    # the records were checked line by line; results_document builds a valid document of them
    return results_document([r for r in records if r["record"] == "result"], complete=False, created="",
                            fixtures_sha256="", machine={}, adapters={})


def expand(paths: list[Path]) -> list[Path]:
    """A directory stands for the results.json of each of its sub-directories (tox envs, CI artifacts).

    One with none but a results.json of its own stands for that: a lone CI artifact
    downloaded by pattern lands flat in the download directory.
    """
    expanded = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*/results.json")) or sorted(path.glob("results.json"))
            if not found:
                raise ResultsFileError(f"{path}: a directory with no */results.json in it")
            expanded.extend(found)
        else:
            expanded.append(path)
    return expanded


def load_any(paths: list[Path]) -> dict:
    """One merged, validated document from results.json files, .jsonl streams or directories.

    Each record keeps its machine; parts on other fixtures, or two results of one test, are a
    ResultsFileError (``merge_documents``).
    """
    sources = expand(paths)
    documents = [load_stream(p) if p.suffix == ".jsonl" else load_results(p) for p in sources]
    return documents[0] if len(documents) == 1 else merge_documents(documents, [str(p) for p in sources])
