"""The adapter contract: the one indirection between a test and a framework.

A vendor plugs a runtime into the suite by writing one small class with these
members (subclassing ``Adapter`` is optional; the suite only calls them):

- ``name``: a short, stable identifier, e.g. ``keras-tensorflow``;
- ``available() -> str | None``: None when the framework imports, else why not;
- ``devices() -> list[str]``: ``"cpu"``, plus ``"cuda"`` when the framework
  really sees a GPU (reports list these devices; a row for another is skipped);
- ``supports(case) -> str | None``: None, or why ``case`` cannot be expressed
  in this framework (a true, specific reason: it is reported as ``unsupported``);
- ``run(case, device) -> list[np.ndarray]``: the outputs in Keras output-list
  order (``case.output_names``), computed by the framework in ``case.dtype``
  and returned in the dtype the framework gave: never cast, so that a
  framework computing in another dtype fails the dtype check.

Optional members the suite uses when present:

- ``versions() -> dict[str, str]``: framework name -> version, for reports;
- ``device_name(device) -> str``: e.g. the GPU's marketing name;
- ``last_run_info() -> dict``: facts about the last ``run`` (the kernel that
  ran, e.g. ``{"kernel": "cudnn"}``), stored with the result.

An adapter converts *conventions* (transposes, gate reorders, bias splits, a
time flip, list assembly); it never computes values the framework didn't.
Framework imports belong inside methods, so listing adapters imports nothing.
"""

from __future__ import annotations

import numpy as np

from conformance.matrix.case import Case


class Adapter:
    """Convenience base class; see the module docstring for the contract."""

    name: str = "unnamed"

    def available(self) -> str | None:
        return None

    def devices(self) -> list[str]:
        return ["cpu"]

    def supports(self, case: Case) -> str | None:
        return None

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        return {}

    def device_name(self, device: str) -> str:
        return device

    def last_run_info(self) -> dict:
        return {}


TF32_VARIABLE = "CONFORMANCE_TF32"


def tf32_allowed() -> bool:
    """The labelled TF32 mode (``conformance run --tf32``); off for the float32 verdict (SEMANTICS.md §6)."""
    import os

    return os.environ.get(TF32_VARIABLE) == "1"


def missing_module_reason(*modules: str) -> str | None:
    """None when every module imports, else 'module X is not installed (...)'."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure is the reason
            return f"{module} does not import: {type(exc).__name__}: {exc}".splitlines()[0]
    return None
