"""The suite's on-disk caches: one root, one rule for a cached file.

``$CONFORMANCE_CACHE_DIR`` (default ``~/.cache/rnn-conformance``; ``off``
disables every cache) holds what is costly to make and the same on every run
of the same library versions: the exports of onnx-keras and onnx-torch and
executorch's lowered programs (files named by a hash of the structure and the
versions), JAX's persistent compilation cache (``jax/``, laid out and keyed by
JAX itself), torch-compile's Inductor caches (``torch-inductor/``, keyed by
Inductor: the graph, torch's version, the compiler flags, the CPU), and the
fixtures' replay stamps (``fixtures-replayed/``: a manifest the float64 oracle
has replayed, keyed by the manifest, the oracle's source and the machine;
``conformance.fixtures.load_cases``). A CI cache
that keeps this directory turns a cold matrix into a warm one; a cached file
holds the very bytes the exporter wrote, so results do not depend on it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

VARIABLE = "CONFORMANCE_CACHE_DIR"


def cache_root() -> Path | None:
    """The caches' directory; None when ``$CONFORMANCE_CACHE_DIR`` says ``off``."""
    root = os.environ.get(VARIABLE, str(Path.home() / ".cache" / "rnn-conformance"))
    return None if root == "off" else Path(root)


def cached_file(kind: str, key: Any, suffix: str) -> Path | None:
    """Where the cache keeps what ``key`` (JSON-able, library versions included) makes."""
    root = cache_root()
    if root is None:
        return None
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return root / kind / f"{digest}{suffix}"


def read_or_make(path: Path | None, make: Callable[[], bytes]) -> tuple[bytes, bool]:
    """The bytes at ``path`` if there (True), else ``make()``'s, stored whole (False).

    Written beside and renamed in: a reader never sees half a file, and two
    processes making the same file at once both leave a whole one.
    """
    if path is not None and path.exists():
        return path.read_bytes(), True
    data = make()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(data)
        os.replace(partial, path)
    return data, False
