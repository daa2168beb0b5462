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
from importlib import metadata

from conformance.adapters.contract import Adapter, LoadedAdapter, missing_member, missing_module_reason

ENTRY_POINT_GROUP = "conformance.adapters"

BUILTIN_ADAPTERS: dict[str, str] = {
    "keras-tensorflow": "conformance.adapters.keras.keras3:KerasTensorflowAdapter",
    "keras-jax": "conformance.adapters.keras.keras3:KerasJaxAdapter",
    "keras-torch": "conformance.adapters.keras.keras3:KerasTorchAdapter",
    "tf-keras": "conformance.adapters.keras.tf_keras:TfKerasAdapter",
    "torch": "conformance.adapters.torch.adapter:TorchAdapter",
    "flax": "conformance.adapters.flax.adapter:FlaxAdapter",
    "onnx-keras": "conformance.adapters.onnx.keras_export:OnnxKerasAdapter",
    "onnx-torch": "conformance.adapters.onnx.torch_export:OnnxTorchAdapter",
    "onnx-native": "conformance.adapters.onnx.native:OnnxNativeAdapter",
    "onnx-native-layout1": "conformance.adapters.onnx.native:OnnxNativeLayout1Adapter",
}


class UnknownAdapterError(ValueError):
    """Raised for a name that is neither built in, an entry point, nor module:Class."""


def entry_point_adapters() -> dict[str, str]:
    found = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.value
    return found


def adapter_paths() -> dict[str, str]:
    """Every known adapter name -> its ``module:Class`` path (built-ins win ties)."""
    return {**entry_point_adapters(), **BUILTIN_ADAPTERS}


def _import_class(path: str):
    module_name, _, class_name = path.partition(":")
    if not module_name or not class_name:
        raise UnknownAdapterError(f"adapter path {path!r} is not of the form package.module:ClassName")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownAdapterError(f"adapter module {module_name!r} does not import: {exc}") from None
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise UnknownAdapterError(f"adapter module {module_name!r} has no class {class_name!r}") from None


def load_adapter(name_or_path: str) -> LoadedAdapter:
    """The adapter registered as ``name_or_path`` or at that ``module:Class`` path, loaded:
    its optional members filled in; UnknownAdapterError for an object that is no adapter."""
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
    adapter = _import_class(path)()
    missing = missing_member(adapter)
    if missing:
        raise UnknownAdapterError(f"adapter {name_or_path!r} lacks {missing}")
    return LoadedAdapter.of(adapter)


__all__ = ["Adapter", "BUILTIN_ADAPTERS", "LoadedAdapter", "UnknownAdapterError", "adapter_paths",
           "load_adapter", "missing_module_reason"]
