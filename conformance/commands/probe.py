"""Ask each adapter, in a process of its own, whether it is available and what it sees.

A process per adapter because ``available()`` imports the framework, and
Keras fixes its backend at the first import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from conformance.adapters import adapter_paths, load_adapter

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
