"""Facts about the machine and the installed frameworks, for report headers.

Versions come from package metadata, so nothing here imports a framework.
"""

from __future__ import annotations

import platform
from importlib import metadata

FRAMEWORK_PACKAGES = ("numpy", "tensorflow-cpu", "tensorflow", "keras", "tf-keras", "torch", "jax",
                      "jaxlib", "flax", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "tf2onnx")


def package_versions() -> dict[str, str]:
    versions = {}
    for package in FRAMEWORK_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, str]:
    return {"os": platform.platform(), "python": platform.python_version(), "cpu": cpu_name(),
            "node": platform.node()}
