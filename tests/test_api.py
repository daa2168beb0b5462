"""The public API (``conformance.api``) is declared, documented and light: what a vendor may rely on."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys

import conformance.api as api


def public_objects():
    return {name: getattr(api, name, None) for name in api.__all__}


def own_docstring(obj) -> str | None:
    """The object's own docstring: not inherited, and not the signature dataclasses write in for a class
    without one."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    if doc and dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}("):
        return None
    return doc


def test_every_name_in_all_exists():
    assert [name for name, obj in public_objects().items() if obj is None] == []


def test_every_public_class_and_function_says_what_it_is():
    undocumented = [name for name, obj in public_objects().items()
                    if (inspect.isclass(obj) or inspect.isfunction(obj)) and not own_docstring(obj)]
    assert undocumented == []


def test_the_api_names_each_public_name_once():
    assert len(api.__all__) == len(set(api.__all__))


def test_importing_the_api_loads_no_framework():
    frameworks = ("torch", "tensorflow", "jax", "keras", "tf_keras", "flax", "onnx", "onnxruntime", "openvino",
                  "tract", "executorch", "ai_edge_litert")
    code = ("import sys, conformance.api; "
            f"print(','.join(m for m in {frameworks!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""

