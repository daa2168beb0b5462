"""Facts about the machine and the installed frameworks, for report headers.

Versions come from package metadata, so nothing here imports a framework.

A results file keeps its machines by id (``machine_id``): the CI runner's name
where a CI runner ran it (GitHub Actions sets ``RUNNER_NAME``), else the host
name. Results merged from several machines keep each machine under its own id
(``add_machine``), so every record can say which machine produced it.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

FRAMEWORK_PACKAGES = ("numpy", "tensorflow-cpu", "tensorflow", "keras", "tf-keras", "torch", "jax",
                      "jaxlib", "flax", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "tf2onnx")
# machine_info key -> the variable a GitHub Actions runner sets in every job's environment
RUNNER_VARIABLES = {"runner_name": "RUNNER_NAME", "runner_os": "RUNNER_OS", "runner_arch": "RUNNER_ARCH"}


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


def runner_info() -> dict[str, str]:
    """The CI runner's identity, only what the runner set: a host name alone says little on CI's VMs."""
    return {key: os.environ[name] for key, name in RUNNER_VARIABLES.items() if os.environ.get(name)}


# set by ``conformance sweep``: how the frameworks were installed ("forced --no-deps overlay: ...")
INSTALL_VARIABLE = "CONFORMANCE_INSTALL"


def install_info() -> dict[str, str]:
    """How the frameworks were installed, where a sweep said so: a forced overlay must show in the results."""
    return {"install": os.environ[INSTALL_VARIABLE]} if os.environ.get(INSTALL_VARIABLE) else {}


def machine_info() -> dict[str, str]:
    return {"os": platform.platform(), "python": platform.python_version(), "cpu": cpu_name(),
            "node": platform.node(), **runner_info(), **install_info()}


def machine_id(info: Mapping[str, Any]) -> str:
    """A machine's readable id: its CI runner's name, else its host name ('machine' when neither is known)."""
    return str(info.get("runner_name") or info.get("node") or "machine")


def add_machine(machines: dict[str, dict[str, Any]], info: dict[str, Any]) -> str:
    """``info``'s id in ``machines`` (id -> facts), added if new; another machine of that name gets a suffix.

    Two machines are one when every fact agrees (a matrix's tox envs run on one
    machine); CI runners may share a name ('GitHub Actions 2'), so ``-2``, ``-3``
    tells them apart.
    """
    base = machine_id(info)
    candidate, number = base, 1
    while candidate in machines and machines[candidate] != info:
        number += 1
        candidate = f"{base}-{number}"
    machines.setdefault(candidate, info)
    return candidate


def shared_facts(machines: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The facts every machine has alike (all of them for one machine): what a merged run's ``machine`` says."""
    machines = list(machines)
    if not machines:
        return {}
    return {key: value for key, value in machines[0].items() if all(m.get(key) == value for m in machines[1:])}
