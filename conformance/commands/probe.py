"""What ``conformance adapters`` says: a listing from metadata, or each adapter asked in its process.

The listing (the default) imports no framework: each adapter's ``requires``
(the modules it imports) is looked up in the installed packages' metadata.
``--check`` asks each adapter itself, a process per adapter because
``available()`` imports the framework, and Keras fixes its backend at the
first import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from conformance.adapters import UnknownAdapterError, adapter_paths, load_adapter
from conformance.adapters.contract import LoadedAdapter, installed_distributions

PROBE_TIMEOUT = 300


def describe(name: str) -> dict:
    adapter = load_adapter(name)
    reason = adapter.available()
    row = {"name": adapter.name, "available": reason is None, "reason": reason,
           "versions": {}, "devices": []}
    if reason is None:
        row["versions"] = adapter.versions()
        row["devices"] = adapter.devices()
    return row


def listing() -> list[str]:
    """A line per adapter: name, what it requires and whether it is installed, its devices, its plan."""
    rows = []
    for name in adapter_paths():
        try:
            adapter = load_adapter(name)
        except UnknownAdapterError as exc:
            rows.append((name, "broken", str(exc), "", ""))
            continue
        rows.append((name, *requirement_state(adapter), ",".join(adapter.declared_devices),
                     "covering plan by default" if adapter.compiles_per_structure else "full plan"))
    width = max(len(row[0]) for row in rows)
    return [f"{name:<{width}}  {state:<13} {detail}" + (f"  devices: {devices}  {plan}" if devices else "")
            for name, state, detail, devices, plan in rows]


def requirement_state(adapter: LoadedAdapter) -> tuple[str, str]:
    """('installed', 'keras 3.15.1, tensorflow-cpu 2.21.0'), ('missing', ...) or ('not declared', ...)."""
    requires = getattr(adapter.adapter, "requires", ())
    if not requires:
        return "not declared", "(no requires: conformance adapters --check imports it)"
    found = installed_distributions(tuple(requires))
    missing = [module for module, version in found.items() if version is None]
    versions = ", ".join(f"{dist} {version}" for dist, version in found.items() if version is not None)
    if missing:
        return "missing", f"{', '.join(missing)} not installed" + (f" (has {versions})" if versions else "")
    return "installed", versions


def probe(name: str) -> dict:
    command = [sys.executable, "-m", "conformance.commands.probe", name]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"name": name, "available": False, "reason": f"probe timed out after {PROBE_TIMEOUT}s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"name": name, "available": False, "reason": f"probe failed: {tail}"}
    return json.loads(lines[-1])


def probe_all(names: list[str] | None = None) -> list[dict]:
    names = names or list(adapter_paths())
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(probe, names))


if __name__ == "__main__":
    print(json.dumps(describe(sys.argv[1])))
