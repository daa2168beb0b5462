"""Adapters for testing the suite itself, plugged in through the public contract.

``OracleAdapter`` answers with the oracle's own numbers rounded to the case
dtype: a stand-in *runtime* for exercising the harness (never a stand-in for a
framework: it is not registered and the conformance matrix never uses it).
The faulty adapters in ``faulty_adapters.py`` derive from it.
"""

from __future__ import annotations

import numpy as np

from conformance.adapters.base import Adapter
from conformance.case import Case
from conformance.reference import expected_outputs


class OracleAdapter(Adapter):
    name = "oracle"

    def versions(self) -> dict[str, str]:
        return {"oracle": "float64 numpy"}

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        return [np.asarray(out, dtype=case.dtype) for out in expected_outputs(case)]
