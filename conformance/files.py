"""Output files: written so that a reader never sees one half-written (a temporary file, then a
rename), and their paths checked before a command writes anything (``check_output_file``,
``check_output_dir``), so that a bad path costs one line, not a half-replaced report."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

REPORT_FILES = ("results.json", "junit.xml", "index.html")
"""The three files of a report, written into one directory; they always describe the same run."""


def write_text_atomic(path: str | Path, text: str) -> None:
    write_texts_atomic({Path(path): text})


def write_bytes_atomic(path: str | Path, content: bytes) -> None:
    """``content`` at ``path``, written beside it and renamed in: a reader sees the old file or the new one."""
    _write_all_atomic({Path(path): content})


def write_texts_atomic(texts: Mapping[Path, str]) -> None:
    """Several files replaced together: every one is written beside its path first, and only when
    all are written whole are they renamed in. A write that fails (a full disk: ENOSPC, EFBIG)
    leaves every earlier file as it was, so that the files never describe two different runs."""
    # backslashreplace: a lone surrogate in an adapter's message (undecodable bytes
    # decoded with surrogateescape) must not lose the whole report.
    _write_all_atomic({Path(path): text.encode("utf-8", errors="backslashreplace") for path, text in texts.items()})


def _write_all_atomic(contents: Mapping[Path, bytes]) -> None:
    temporaries: dict[Path, str] = {}
    try:
        for path, content in contents.items():
            temporaries[path] = _written_beside(path, content)
        for path, temporary in temporaries.items():
            os.replace(temporary, path)
    except BaseException:
        for temporary in temporaries.values():
            Path(temporary).unlink(missing_ok=True)
        raise


def _written_beside(path: Path, content: bytes) -> str:
    """A temporary file in ``path``'s directory holding ``content``; removed if it can't be written whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        os.chmod(temporary, 0o644)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return temporary


class OutputPathError(ValueError):
    """An output path that cannot be written, found before anything is written (one line, exit 2)."""


def check_output_file(path: Path) -> None:
    """OutputPathError unless a file can be written at ``path``: it is no directory, and its
    nearest existing ancestor is a writable directory (a regular file there is replaced).
    Checked before a command writes anything, so that no output is half-replaced; creates nothing."""
    path = Path(path)
    if _existing(path, path) and path.is_dir():
        raise OutputPathError(f"output file {path} is not writable: it is a directory")
    _check_writable_ancestor(path, path.parent, "output file")


def check_output_dir(path: Path) -> None:
    """OutputPathError unless ``path`` is a writable directory or can be created as one
    (its nearest existing ancestor is a writable directory). Creates nothing."""
    path = Path(path)
    _check_writable_ancestor(path, path, "output directory")


def check_outputs_in(directory: Path, names: Sequence[str]) -> None:
    """``check_output_dir(directory)`` and ``check_output_file`` for each of ``names`` in it: a
    command that writes several files checks them all first, so none is replaced if one can't be."""
    check_output_dir(directory)
    for name in names:
        check_output_file(Path(directory) / name)


def _existing(path: Path, candidate: Path) -> bool:
    """Whether ``candidate`` exists; a parent that is a file means it does not (the walk up finds it)."""
    try:
        os.stat(candidate)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise OutputPathError(f"{path} is not writable: cannot look at {candidate} ({exc.strerror or exc})") from None
    return True


def _check_writable_ancestor(path: Path, start: Path, kind: str) -> None:
    """The nearest existing one of ``start`` and its ancestors must be a directory we may write in."""
    ancestor = next(candidate for candidate in (start, *start.parents) if _existing(path, candidate))
    subject = "it" if ancestor == path else str(ancestor)
    if not ancestor.is_dir():
        raise OutputPathError(f"{kind} {path} is not writable: {subject} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f"{kind} {path} is not writable: no permission to write in {subject}")
