"""Adapters for the device-row and message tests, plugged in through the public contract.

Each is the oracle (``tests/oracle_adapters.py``) with one thing changed: the
devices it declares, or the error text it raises.
"""

from __future__ import annotations

import numpy as np

from conformance.matrix.case import Case
from tests.oracle_adapters import OracleAdapter


class DeclaresCudaOracle(OracleAdapter):
    """A GPU adapter on a machine without a GPU: cuda declared, only cpu seen."""

    name = "declares-cuda"
    declared_devices = ("cpu", "cuda")


class UnavailableOracle(OracleAdapter):
    """A framework that does not import here (what keras-jax says in a venv without jax)."""

    name = "unavailable-oracle"

    def available(self) -> str | None:
        return "frobnicate does not import: ModuleNotFoundError: No module named 'frobnicate'"


class LstmNamedOracle(OracleAdapter):
    """An adapter whose name holds a cell's name, as a port's often does (torch-lstmcell-swapped)."""

    name = "oracle-lstmcell"


class StringDeclaredOracle(OracleAdapter):
    """``declared_devices`` as a bare string, a vendor's likely slip for ``("cuda",)``."""

    name = "string-declared"
    declared_devices = "cuda"


class BacktraceRaisingOracle(OracleAdapter):
    """Raises what a runtime raises: tract's text for a file that is no ONNX model, backtrace and all."""

    name = "backtrace-raising"

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        import tempfile

        import tract

        with tempfile.NamedTemporaryFile(suffix=".onnx") as model:
            model.write(b"\x08\x07 not an ONNX model")
            model.flush()
            tract.onnx().load(model.name)
        raise AssertionError("tract loaded a file that is no ONNX model")
