"""Adapters for testing the suite itself, plugged in through the public contract.

``OracleAdapter`` answers with the oracle's own numbers rounded to the case
dtype: a stand-in *runtime* for exercising the harness (never a stand-in for a
framework: it is not registered and the conformance matrix never uses it).
The faulty adapters in ``faulty_adapters.py`` derive from it.
"""

from __future__ import annotations

import numpy as np

from conformance.adapters.contract import Adapter
from conformance.matrix.case import Case, numpy_dtype
from conformance.reference import expected_outputs


class OracleAdapter(Adapter):
    name = "oracle"

    def versions(self) -> dict[str, str]:
        return {"oracle": "float64 numpy"}

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        return [np.asarray(out).astype(numpy_dtype(case.dtype)) for out in expected_outputs(case)]


class Tf32ProbeAdapter(OracleAdapter):
    """Reports whether the labelled TF32 mode reached the adapter's process."""

    name = "tf32-probe"

    def last_run_info(self) -> dict:
        from conformance.adapters.contract import reduced_precision_allowed

        return {"tf32_seen": reduced_precision_allowed()}


class BareOracleAdapter:
    """The oracle through the five required members alone: no base class, no optional member."""

    name = "bare-oracle"

    def available(self) -> str | None:
        return None

    def devices(self) -> list[str]:
        return ["cpu"]

    def supports(self, case: Case) -> str | None:
        return None

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        return OracleAdapter().run(case, device)


class RunlessAdapter:
    """Every required member but ``run``: not an adapter, and loading must say so."""

    name = "runless"

    def available(self) -> str | None:
        return None

    def devices(self) -> list[str]:
        return ["cpu"]

    def supports(self, case: Case) -> str | None:
        return None


class CachingOracleAdapter(OracleAdapter):
    """An export-based adapter's ``export_cache`` switch, counting the calls made without it."""

    name = "caching-oracle"
    export_cache = True

    def __init__(self) -> None:
        self.uncached_runs = 0

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        self.uncached_runs += not self.export_cache
        return super().run(case, device)


class CompilingOracleAdapter(OracleAdapter):
    """The oracle declaring a per-structure cost: ``conformance run`` runs it on the covering plan."""

    name = "compiling-oracle"
    compiles_per_structure = True
