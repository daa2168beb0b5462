"""What the JAX adapters (flax, keras-jax) share: XLA compilations counted, and one transfer per case.

Compilations: a jitted function compiles once per argument shape and dtype,
so counting one's own traces would miss what JAX compiles around them (and
what it reuses). JAX reports every real backend compilation as the
monitoring event ``BACKEND_COMPILE_EVENT`` (jax/_src/dispatch.py, recorded
around ``compile_or_get_cached`` in jax/_src/interpreters/pxla.py, jax
0.10.2); listeners registered on first use count them all, less the reads
from JAX's persistent compilation cache (``CACHE_HIT_EVENT``, recorded inside
that same timed call; the cache is off unless configured), which compile
nothing. An adapter reads ``compilations()`` before and after its call: the
difference is what that call compiled, for ``run_info["compilations"]``.

Transfers: each ``jax.device_put`` costs ~25 us of Python dispatch here (jax
0.10.2, CPU), whatever the array's size, so one per weight and input is most
of a small case's time. ``pack`` puts a case's arrays into one host buffer,
moved in one ``device_put``; ``unpack``, inside the jitted function, slices
and reshapes it back (exact: the function sees the same values). The layout
is a static argument: another set of shapes is another trace, as separate
arguments of those shapes would be.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from conformance.caches import cache_root

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"  # jax/_src/compiler.py

# The shapes in a packed buffer, in groups (e.g. parameters, inputs): hashable, for jax.jit's static arguments.
Layout = tuple[tuple[tuple[int, ...], ...], ...]

_count = 0
_listening = False

# JAX's persistent compilation cache, on by default under the suite's cache root: a second run
# (a CI cache kept) reads its executables instead of compiling them again. The same executables:
# the key holds the HLO, the compile options, the device and the jax/jaxlib versions.
CACHE_SETTINGS = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",  # default 1 s: ours take ~0.1 s
                  "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}


def persistent_cache_dir() -> Path | None:
    """``jax/`` under the suite's cache root (``conformance.caches``); None when off."""
    root = cache_root()
    return None if root is None else root / "jax"


def use_persistent_cache() -> None:
    """Point JAX at the persistent cache, through the variables JAX reads at its import: call it
    before ``import jax`` (JAX decides at its first compilation whether a cache is used). A
    directory the user set (``JAX_COMPILATION_CACHE_DIR``) is kept; nothing is set once jax is
    imported."""
    directory = persistent_cache_dir()
    if directory is None or "jax" in sys.modules:
        return
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(directory))
    for name, value in CACHE_SETTINGS.items():
        os.environ.setdefault(name, value)


def compilations() -> int:
    """XLA compilations in this process since the first call (which registers the listener)."""
    global _listening
    if not _listening:
        import jax

        jax.monitoring.register_event_duration_secs_listener(_on_duration)
        jax.monitoring.register_event_listener(_on_event)
        _listening = True
    return _count


def _on_duration(event: str, duration_secs: float, **metadata: Any) -> None:
    global _count
    if event == BACKEND_COMPILE_EVENT:
        _count += 1


def _on_event(event: str, **metadata: Any) -> None:
    global _count
    if event == CACHE_HIT_EVENT:
        _count -= 1


def pack(groups: Sequence[Sequence[np.ndarray]], dtype: str) -> tuple[np.ndarray, Layout]:
    """Every array of ``groups`` flattened, in order, into one buffer of ``dtype``; and the layout."""
    layout = tuple(tuple(tuple(int(n) for n in np.shape(a)) for a in group) for group in groups)
    buffer = np.concatenate([np.ravel(a) for group in groups for a in group]).astype(dtype, copy=False)
    return buffer, layout


def unpack(buffer: Any, layout: Layout) -> list[list[Any]]:
    """``pack``'s buffer (a traced array) back into its groups of arrays."""
    groups, offset = [], 0
    for shapes in layout:
        group = []
        for shape in shapes:
            size = math.prod(shape)
            group.append(buffer[offset:offset + size].reshape(shape))
            offset += size
        groups.append(group)
    return groups
