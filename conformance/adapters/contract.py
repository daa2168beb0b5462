"""The adapter contract: the one indirection between a test and a framework.

A vendor plugs a runtime into the suite by writing one small class with the
five members of ``AdapterProtocol`` (subclassing ``Adapter`` is optional; the
suite only calls the members). Optional members, used when present:

- ``versions() -> dict[str, str]``: framework name -> version, for reports
  (default ``{}``);
- ``device_name(device) -> str``: e.g. the GPU's marketing name (default: the
  device itself);
- ``last_run_info() -> dict``: facts about the last ``run`` (the kernel that
  ran, e.g. ``{"kernel": "cudnn"}``), stored with the result (default ``{}``);
  one that compiles or exports adds ``"compilations": N``, the XLA compilations,
  exports and runtime loads that this ``run`` made (0: it reused earlier ones),
  which ``conformance bench`` sums;
- ``bare_forward(case, device) -> Callable[[], Any]``: the framework's forward
  pass alone, on the model and inputs ``run`` would prepare, as a closure that
  ``conformance bench`` times beside ``run`` (it returns the framework's raw
  result; without it bench reports no overhead figure);
- ``export_cache: bool``: an export-based adapter's switch for keeping its
  exports and sessions between calls (True) or exporting on every call
  (False); bench times the adapter both ways;
- ``declared_devices: tuple[str, ...]``: every device the adapter can ever run
  on (default ``("cpu",)``; a GPU adapter declares ``("cpu", "cuda")``). A
  static attribute: ``conformance run`` plans its rows from it in the parent
  process, where no framework is imported. A device it never declares gets
  no row at all; a declared device the machine lacks (not in ``devices()``)
  gets ``skipped`` rows that say so.
- ``reproducer(case, device) -> Reproducer``: the case as this adapter runs it,
  packed for ``conformance repro``: the converted model file (if the path has
  one), the feeds, and the source of a ``run_model`` needing only the runtime
  and numpy. Without it ``conformance repro`` says the adapter has none.
- ``requires: tuple[str, ...]``: the top-level modules the adapter imports
  (``("keras", "tensorflow")``). A static attribute: ``conformance adapters``
  reads their installed distributions' versions from package metadata, without
  importing a framework (default ``()``: nothing declared, ``--check`` asks).
- ``compiles_per_structure: bool``: the adapter converts, exports or compiles
  a model for every structure it meets (seconds a case, where an eager call
  takes milliseconds). A static attribute (default False): ``conformance run``
  then runs it on the covering plan (``conformance.matrix.covering``) unless
  ``--full`` asks for every case.

``load_adapter`` (``conformance.adapters``) checks the five required members
and fills in the optional ones once, as a ``LoadedAdapter``: everything past
loading calls every member without probing. An answer of ``devices()``,
``device_name()`` or ``versions()`` of another type than the one above is a
``ContractBreach`` (``contract_breach``): every result of that adapter is an
error naming the member and its answer.

An adapter converts *conventions* (transposes, gate reorders, bias splits, a
time flip, list assembly); it never computes values the framework didn't.
A case whose layer is ``stateful`` (``case.earlier_x``: a call before this one
on the same layer) asks for the framework's own stateful layer; a framework
without one answers ``semantics.stateful_reason`` from ``supports``.
Framework imports belong inside methods, so listing adapters imports nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from conformance.matrix.case import Case

BareForward = Callable[[Case, str], Callable[[], Any]]


@runtime_checkable
class AdapterProtocol(Protocol):
    """The five members every adapter has."""

    name: str
    """A short, stable identifier, e.g. ``keras-tensorflow``: it is part of every test id."""

    def available(self) -> str | None:
        """None when the framework imports, else why not (the adapter's tests are skipped with it)."""

    def devices(self) -> list[str]:
        """``"cpu"``, plus ``"cuda"`` when the framework really sees a GPU; a row for another
        device is skipped, and reports list only these."""

    def supports(self, case: Case) -> str | None:
        """None, or why ``case`` cannot be expressed in this framework: a true, specific
        reason, reported as ``unsupported``."""

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        """The outputs in Keras output-list order (``case.output_names``), computed by the
        framework in ``case.dtype`` and returned in the dtype the framework gave: never
        cast, so that a framework computing in another dtype fails the dtype check."""


@dataclass
class Reproducer:
    """One case as an adapter runs it, for a standalone script (``conformance repro``).

    The script loads ``feeds`` from ``inputs.npz`` and calls the ``runner``'s
    ``run_model(model_path, feeds, device)``, which returns the outputs in the
    order of ``output_names`` (the names ``expected.npz`` holds the golden
    values under, one per entry of ``case.output_names``). ``model_file`` is the
    file ``model_bytes`` is written to (``model.onnx``, ``model.tflite``), or
    None where the script builds the model itself from the feeds (an eager or
    compiled framework path: ``model_path`` is then None). ``side_files``: further files the
    model file refers to, written beside it (OpenVINO IR's ``model.bin`` beside ``model.xml``).
    """

    model_file: str | None
    model_bytes: bytes | None
    feeds: dict[str, np.ndarray]
    output_names: list[str]
    runner: str
    runtime: str
    how: str
    side_files: dict[str, bytes] = field(default_factory=dict)


REQUIRED_MEMBERS = ("name", "available", "devices", "supports", "run")


def missing_members(candidate: object) -> list[str]:
    """Every required member ``candidate`` lacks or has in a form the suite cannot use
    (``"name (a non-empty str)"``, ``"run()"``), in contract order: all of them at once,
    so that a vendor fixes their class in one go instead of one member per try."""
    missing = []
    for member in REQUIRED_MEMBERS:
        try:
            value = getattr(candidate, member, None)
        except Exception:  # noqa: BLE001 - a property that raises is a member the suite cannot use
            value = None
        if member == "name":
            if not (isinstance(value, str) and value.strip()):
                missing.append("name (a non-empty str)")
        elif not callable(value):
            missing.append(f"{member}()")
    return missing


DEFAULT_DECLARED_DEVICES = ("cpu",)


class Adapter:
    """Convenience base class: every member with its default; ``run`` left to write."""

    name: str = "unnamed"
    declared_devices: tuple[str, ...] = DEFAULT_DECLARED_DEVICES
    compiles_per_structure: bool = False
    requires: tuple[str, ...] = ()

    def available(self) -> str | None:
        return missing_module_reason(*self.requires)

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


@dataclass
class LoadedAdapter:
    """An adapter with every optional member filled in (see the module docstring).

    ``adapter`` is the object itself; the members are its own, bound once at load
    time, or the defaults. ``bare_forward`` and ``reproducer`` are None where the adapter has none;
    ``export_cache`` reads and writes the adapter's own switch (None: it has none).
    """

    adapter: AdapterProtocol
    name: str
    available: Callable[[], str | None]
    devices: Callable[[], list[str]]
    supports: Callable[[Case], str | None]
    run: Callable[[Case, str], list[np.ndarray]]
    versions: Callable[[], dict[str, str]]
    device_name: Callable[[str], str]
    last_run_info: Callable[[], dict]
    bare_forward: BareForward | None
    declared_devices: tuple[str, ...] = DEFAULT_DECLARED_DEVICES
    compiles_per_structure: bool = False
    reproducer: Callable[[Case, str], Reproducer] | None = None

    @classmethod
    def of(cls, adapter: AdapterProtocol) -> LoadedAdapter:
        """``adapter`` (which has the required members, see ``missing_members``), completed;
        ValueError (one line) for a ``declared_devices`` that is no list of device names."""
        return cls(adapter, adapter.name, adapter.available, adapter.devices, adapter.supports, adapter.run,
                   getattr(adapter, "versions", _no_versions), getattr(adapter, "device_name", _same_device),
                   getattr(adapter, "last_run_info", _no_run_info), getattr(adapter, "bare_forward", None),
                   declared_devices_of(adapter), getattr(adapter, "compiles_per_structure", False) is True,
                   getattr(adapter, "reproducer", None))

    @property
    def export_cache(self) -> bool | None:
        return getattr(self.adapter, "export_cache", None)

    @export_cache.setter
    def export_cache(self, enabled: bool) -> None:
        if self.export_cache is None:
            raise AttributeError(f"adapter {self.name} has no export_cache")
        self.adapter.export_cache = enabled


def declared_devices_of(adapter: object) -> tuple[str, ...]:
    """The adapter's ``declared_devices`` as a tuple (the default where it has none).

    A bare string is refused rather than read as its letters: ``"cuda"`` for
    ``("cuda",)`` would otherwise plan rows for devices "c", "u", "d", "a".
    """
    declared = getattr(adapter, "declared_devices", DEFAULT_DECLARED_DEVICES)
    if isinstance(declared, str) or not isinstance(declared, (list, tuple)) or not declared \
            or not all(isinstance(device, str) and device for device in declared):
        raise ValueError(f"declared_devices must be a non-empty tuple of device names such as "
                         f"('cpu', 'cuda'), not {declared!r}"[:300])
    return tuple(declared)


class ContractBreach(TypeError):
    """An adapter member answered with a type the contract does not allow (``devices()`` None,
    ``versions()`` with a bytes key, ...): an error of that adapter, in one line, never a results
    file the suite's own schema refuses."""


def _breach(adapter: LoadedAdapter, call: str, answer: object, expected: str) -> ContractBreach:
    return ContractBreach(f"adapter {adapter.name!r} broke the contract: {call} returned "
                          f"{_short_repr(answer)}; expected {expected}")


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a repr that raises still names the type
        text = f"a {type(value).__name__}"
    return text if len(text) <= 200 else text[:200] + "..."


def checked_devices(adapter: LoadedAdapter) -> list[str]:
    """``adapter.devices()``, a list of device names, or ContractBreach."""
    devices = adapter.devices()
    if not isinstance(devices, (list, tuple)) or not all(isinstance(device, str) for device in devices):
        raise _breach(adapter, "devices()", devices, "a list of device names such as ['cpu']")
    return list(devices)


def checked_device_name(adapter: LoadedAdapter, device: str) -> str:
    """``adapter.device_name(device)``, a str, or ContractBreach."""
    name = adapter.device_name(device)
    if not isinstance(name, str):
        raise _breach(adapter, f"device_name({device!r})", name, "a str")
    return name


def checked_versions(adapter: LoadedAdapter) -> dict[str, str]:
    """``adapter.versions()``, a dict of str to str, or ContractBreach."""
    versions = adapter.versions()
    if not isinstance(versions, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in versions.items()):
        raise _breach(adapter, "versions()", versions, "a dict of framework name to version, both str")
    return versions


def contract_breach(adapter: LoadedAdapter, device: str) -> str | None:
    """What an available adapter's ``devices()``, ``device_name(device)`` (for a device it sees)
    and ``versions()`` answered against the contract, in one line; None when every answer fits."""
    try:
        if device in checked_devices(adapter):
            checked_device_name(adapter, device)
        checked_versions(adapter)
    except ContractBreach as exc:
        return str(exc)
    return None


def check_distinct_names(adapters: dict[str, LoadedAdapter]) -> None:
    """ValueError (one line) when two adapters asked for (``--adapter`` as given -> adapter) share a
    ``name``: results are keyed by it, and two adapters' results under one key would each pass once
    and fail once."""
    seen: dict[str, str] = {}
    for requested, adapter in adapters.items():
        if adapter.name in seen and seen[adapter.name] != requested:
            raise ValueError(f"adapters {seen[adapter.name]!r} and {requested!r} are both named "
                             f"{adapter.name!r}: results are keyed by the adapter's name, so a run takes "
                             "one adapter of each name")
        seen.setdefault(adapter.name, requested)


def _no_versions() -> dict[str, str]:
    return {}


def _same_device(device: str) -> str:
    return device


def _no_run_info() -> dict:
    return {}


REDUCED_PRECISION_VARIABLE = "CONFORMANCE_REDUCED_PRECISION"


def reduced_precision_allowed() -> bool:
    """The labelled mode ``conformance run --reduced-precision-defaults`` (``--tf32``: deprecated).

    Off, the default, every adapter switches its runtime's reduced-precision
    defaults off for the float32 verdict (SEMANTICS.md §6): TF32 matmuls on
    GPUs, OpenVINO's bfloat16 inference precision hint, and the like. On, it
    leaves them as the runtime ships them, and every record says so.
    """
    import os

    return os.environ.get(REDUCED_PRECISION_VARIABLE) == "1"


def tf32_allowed() -> bool:
    """``reduced_precision_allowed`` under its first name (TF32 was the first such default)."""
    return reduced_precision_allowed()


def installed_distributions(modules: tuple[str, ...]) -> dict[str, str | None]:
    """Each module's installed distribution and its version, read from package metadata (nothing is
    imported): ``{"tensorflow-cpu": "2.21.0"}``; a module no distribution provides maps to None."""
    from importlib import metadata

    providers = metadata.packages_distributions()
    found: dict[str, str | None] = {}
    for module in modules:
        names = providers.get(module.split(".")[0])
        if not names:
            found[module] = None
            continue
        try:
            found[metadata.distribution(names[0]).metadata["Name"]] = metadata.version(names[0])
        except metadata.PackageNotFoundError:
            found[module] = None
    return found


def missing_module_reason(*modules: str) -> str | None:
    """None when every module imports, else 'module X is not installed (...)'."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure is the reason
            return f"{module} does not import: {type(exc).__name__}: {exc}".splitlines()[0]
    return None

