"""Adapters by name: the built-in ones, entry points, and ``module:Class`` paths.

Built-ins are listed as import paths so that listing them imports no framework.
Third-party adapters register under the ``conformance.adapters`` entry-point
group (name -> ``package.module:ClassName``) or are named on the command line
as ``package.module:ClassName``. ``load_adapter`` instantiates the class, checks
the contract's required members and fills in the optional ones
(``conformance.adapters.contract.LoadedAdapter``).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from importlib import metadata

from conformance.adapters.contract import Adapter, LoadedAdapter, missing_members, missing_module_reason

ENTRY_POINT_GROUP = "conformance.adapters"

BUILTIN_ADAPTERS: dict[str, str] = {
    "keras-tensorflow": "conformance.adapters.keras.keras3:KerasTensorflowAdapter",
    "keras-jax": "conformance.adapters.keras.keras3:KerasJaxAdapter",
    "keras-torch": "conformance.adapters.keras.keras3:KerasTorchAdapter",
    "tf-keras": "conformance.adapters.keras.tf_keras:TfKerasAdapter",
    "torch": "conformance.adapters.torch.adapter:TorchAdapter",
    "flax": "conformance.adapters.flax.adapter:FlaxAdapter",
    "onnx-keras": "conformance.adapters.onnx.keras_export:OnnxKerasAdapter",
    "onnx-keras-jax": "conformance.adapters.onnx.keras_export:OnnxKerasJaxAdapter",
    "onnx-keras-torch": "conformance.adapters.onnx.keras_export:OnnxKerasTorchAdapter",
    "onnx-torch": "conformance.adapters.onnx.torch_export:OnnxTorchAdapter",
    "onnx-native": "conformance.adapters.onnx.native:OnnxNativeAdapter",
    "onnx-native-layout1": "conformance.adapters.onnx.native:OnnxNativeLayout1Adapter",
    "openvino": "conformance.adapters.onnx.openvino:OpenvinoAdapter",
    "openvino-inputs": "conformance.adapters.onnx.openvino:OpenvinoInputsAdapter",
    "openvino-torch": "conformance.adapters.openvino.torch_frontend:OpenvinoTorchAdapter",
    "openvino-keras": "conformance.adapters.openvino.keras_frontend:OpenvinoKerasAdapter",
    "tract": "conformance.adapters.onnx.tract:TractAdapter",
    "tract-inputs": "conformance.adapters.onnx.tract:TractInputsAdapter",
    "executorch": "conformance.adapters.torch.executorch:ExecutorchAdapter",
    "torch-compile": "conformance.adapters.torch.compiled:TorchCompileAdapter",
    "litert-keras": "conformance.adapters.litert.keras3:LiteRTKerasAdapter",
    "litert-tf-keras": "conformance.adapters.litert.tf_keras:LiteRTTfKerasAdapter",
}


class UnknownAdapterError(ValueError):
    """A name that is neither built in, an entry point, nor a ``module:Class`` that loads as an
    adapter: its message is one line naming the module, the name and what is wrong."""


def entry_point_adapters() -> dict[str, str]:
    found = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.value
    return found


def adapter_paths() -> dict[str, str]:
    """Every known adapter name -> its ``module:Class`` path (built-ins win ties)."""
    return {**entry_point_adapters(), **BUILTIN_ADAPTERS}


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line: a vendor's exception may span lines, and a bad
    ``--adapter`` must still be one line on stderr."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def importable_from_cwd() -> None:
    """The current directory on the import path, last (installed packages still win), as pytest
    makes a test's own directory importable: ``--adapter my_adapter:MyAdapter`` finds the file the
    user saved where they run the command. The adapter processes (``python -m pytest``) have it
    already."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


def _adapter_class(label: str, path: str) -> Callable[[], object]:
    """The class at ``module:Class`` ``path``; UnknownAdapterError if the module does not
    import (whatever it raises: an adapter module is third-party code) or has no such class."""
    module_name, _, class_name = path.partition(":")
    if not module_name or not class_name:
        raise UnknownAdapterError(f"adapter path {path!r} is not of the form package.module:ClassName")
    importable_from_cwd()
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure at import is the reason
        where = (" (looked in the current directory and on the Python path)"
                 if isinstance(exc, ModuleNotFoundError) and exc.name == module_name.split(".")[0] else "")
        raise UnknownAdapterError(f"adapter {label}: module {module_name!r} does not import: "
                                  f"{one_line(exc)}{where}") from None
    try:
        found = getattr(module, class_name)
    except AttributeError:
        raise UnknownAdapterError(f"adapter {label}: module {module_name!r} has no class {class_name!r}") from None
    if not callable(found):
        raise UnknownAdapterError(f"adapter {label}: {class_name!r} in module {module_name!r} is not a class "
                                  f"(it is a {type(found).__name__})")
    return found


def _instance(label: str, path: str) -> object:
    """The adapter class at ``path``, instantiated; its ``__init__`` failing is UnknownAdapterError."""
    adapter_class = _adapter_class(label, path)
    try:
        return adapter_class()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure in a vendor's __init__ is the reason
        raise UnknownAdapterError(f"adapter {label}: {path.partition(':')[2]}() raised {one_line(exc)}") from None


def load_adapter(name_or_path: str) -> LoadedAdapter:
    """The adapter registered as ``name_or_path`` or at that ``module:Class`` path, loaded:
    its optional members filled in; UnknownAdapterError (one line) for anything that is no
    adapter: an unknown name, a module that does not import, a missing class, something
    that is not a class, an ``__init__`` that raises, required members missing (all named)."""
    paths = adapter_paths()
    if name_or_path in paths:
        path = paths[name_or_path]
    elif ":" in name_or_path:
        path = name_or_path
    else:
        raise UnknownAdapterError(
            f"unknown adapter {name_or_path!r}; known: {', '.join(sorted(paths))} "
            "(or give package.module:ClassName)"
        )
    label = repr(name_or_path) if path == name_or_path else f"{name_or_path!r} ({path})"
    adapter = _instance(label, path)
    missing = missing_members(adapter)
    if missing:
        raise UnknownAdapterError(f"adapter {label} lacks {', '.join(missing)}")
    try:
        return LoadedAdapter.of(adapter)
    except ValueError as exc:  # an optional member in a form the suite cannot use
        raise UnknownAdapterError(f"adapter {label}: {exc}") from None


__all__ = ["Adapter", "BUILTIN_ADAPTERS", "LoadedAdapter", "UnknownAdapterError", "adapter_paths",
           "load_adapter", "missing_module_reason"]
