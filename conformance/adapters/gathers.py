"""The Keras output list as index gathers from a framework's own tensors, for a standalone script.

A reproducer (``conformance repro``) must assemble the Keras list from what the framework returns
without this suite's code, yet each Keras rule is written once, in ``conformance.semantics`` or an
adapter. So the suite runs its own rule on *labelled* arrays (every element its own index, each
source in its own range) and reads back, for every Keras output, which elements of which source it
holds: a list of ``take(source, index)`` expressions the script evaluates on the real tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def labelled(shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    """One float64 array per shape, every element its own label: consecutive ranges, one per source."""
    arrays, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        arrays.append(np.arange(start, start + size, dtype=np.float64).reshape(shape))
        start += size
    return arrays


def gather_source(outputs: Sequence[np.ndarray], sources: Sequence[np.ndarray], names: Sequence[str]) -> str:
    """Source of a list expression ``[take(name, index), ...]`` giving ``outputs`` from the sources
    (``labelled`` arrays) named ``names``; NotImplementedError where an output is computed from the
    sources rather than gathered (a Bidirectional merge that sums or multiplies)."""
    lines = []
    for out in outputs:
        out = np.asarray(out)
        flat = out.astype(np.int64).ravel()
        source = next(i for i, s in enumerate(sources) if s.size and s.min() <= flat[0] <= s.max())
        base = sources[source].ravel().astype(np.int64)
        index = (flat - int(base[0])).reshape(out.shape)
        if index.min() < 0 or index.max() >= base.size or not np.array_equal(base[index], out):
            raise NotImplementedError("a Keras output computed from the framework's (a Bidirectional merge_mode "
                                      "other than concat or None); repro writes gathers only")
        lines.append(f"        take({names[source]}, {index.tolist()!r})")
    return "[\n" + ",\n".join(lines) + ",\n    ]"
