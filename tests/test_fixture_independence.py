"""The golden fixtures are the same bytes whoever builds them, whatever the kernels.

The default variant rebuilds the whole fixture set with ``conformance fixtures
build`` and must give the checked-in bytes. Each other variant forces numpy's
and OpenBLAS's kernel choice another way (SIMD dispatch switched off level by
level, another OpenBLAS core type, one thread or two) in a fresh process and
rebuilds the case files of the covering plan (``conformance.matrix.covering``:
every factor value and pair of values of the matrix, a tenth of its cases),
which must hash as the manifest says. The float64 oracle ``forward`` is run on
the same cases under the same variants as the control: its last bits do change with the kernels (that is why the
fixtures store correctly rounded values), and how many distinct answers it gave
is written to ``reports/fixture-independence.json`` as evidence that the
variants really ran different kernels on this machine. It is recorded, not
asserted: on another CPU the same variants may all select one kernel.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
REPO_FIXTURES = REPO / "fixtures"
EVIDENCE = REPO / "reports" / "fixture-independence.json"
MANIFEST_FILES = json.loads((REPO_FIXTURES / "manifest.json").read_text())["files"]

# Prints the covering plan's case files' hashes (as the manifest lists them), then the float64
# oracle's digest over the same cases: the control that shows the kernels really changed.
COVERING_REBUILD = """
import hashlib, json
from conformance.fixtures import CASES_DIR, case_arrays, npz_bytes
from conformance.matrix.cases import build_cases
from conformance.matrix.covering import covering_plan
from conformance.reference import exact_expected_outputs, expected_outputs
cases = build_cases()
chosen = {case_id for case_id, _ in covering_plan(cases).pairs}
files, digest = {}, hashlib.sha256()
for case in cases:
    if case.id in chosen:
        data = npz_bytes(case_arrays(case, exact_expected_outputs(case)))
        files[f"{CASES_DIR}/{case.id}.npz"] = hashlib.sha256(data).hexdigest()
        for output in expected_outputs(case):
            digest.update(output.tobytes())
print(json.dumps({"files": files, "control": digest.hexdigest()}))
"""


def _cpu_dispatch_targets() -> list[str]:
    """numpy's dispatchable SIMD targets that this CPU has, lowest first."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # numpy < 2
        from numpy.core import _multiarray_umath as umath
    return [name for name in umath.__cpu_dispatch__ if umath.__cpu_features__.get(name)]


def _openblas_core_types() -> list[str]:
    """Older kernels that OpenBLAS's DYNAMIC_ARCH builds carry for this architecture."""
    if platform.machine().lower() in ("x86_64", "amd64"):
        return ["Prescott", "Sandybridge"]
    if platform.machine().lower() in ("aarch64", "arm64"):
        return ["ARMV8"]
    return []


def kernel_variants() -> dict[str, dict[str, str]]:
    """Environment overrides, each selecting other float64 kernels than the default."""
    variants: dict[str, dict[str, str]] = {"default": {}}
    targets = _cpu_dispatch_targets()
    for n in range(len(targets) - 1, -1, -1):  # switch off the top targets, then all of them
        disabled = targets[n:]
        variants[f"numpy without {disabled[0]}+"] = {"NPY_DISABLE_CPU_FEATURES": ",".join(disabled)}
        if len(variants) > 3:
            break
    if targets:
        variants["numpy baseline only"] = {"NPY_DISABLE_CPU_FEATURES": ",".join(targets)}
    for core in _openblas_core_types():
        variants[f"OpenBLAS {core}"] = {"OPENBLAS_CORETYPE": core}
    variants["one thread"] = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    variants["two threads"] = {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    return variants


def snapshot(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _environment(overrides: dict[str, str]) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS")}
    return {**environment, **overrides}


def _rebuild(name: str, overrides: dict[str, str], target: Path) -> tuple[str, dict[str, str], str]:
    """The default variant: the whole set through the command; the others: the covering plan's files."""
    environment = _environment(overrides)
    if not overrides:
        subprocess.run([sys.executable, "-m", "conformance", "fixtures", "build", "--fixtures-dir", str(target)],
                       env=environment, check=True, capture_output=True, text=True)
    rebuilt = json.loads(subprocess.run([sys.executable, "-c", COVERING_REBUILD], env=environment, check=True,
                                        capture_output=True, text=True).stdout)
    return name, snapshot(target) if not overrides else rebuilt["files"], rebuilt["control"]


@pytest.fixture(scope="module")
def rebuilds(tmp_path_factory) -> dict[str, tuple[dict[str, str], str]]:
    variants = kernel_variants()
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(_rebuild, name, overrides, tmp_path_factory.mktemp("fixtures"))
                for name, overrides in variants.items()]
        results = {name: (files, control) for name, files, control in (job.result() for job in jobs)}
    EVIDENCE.parent.mkdir(exist_ok=True)
    EVIDENCE.write_text(json.dumps({
        "machine": platform.machine(), "processor": platform.processor(), "numpy": np.__version__,
        "variants": {name: {"environment": variants[name], "forward_sha256": control}
                     for name, (_, control) in results.items()},
        "distinct_float64_oracle_answers": len({control for _, control in results.values()}),
    }, indent=1) + "\n")
    return results


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(kernel_variants()))
def test_a_rebuild_under_other_kernels_is_byte_identical_to_the_checked_in_fixtures(rebuilds, variant):
    files, _ = rebuilds[variant]
    expected = snapshot(REPO_FIXTURES)
    if variant != "default":  # the covering plan's case files, against the manifest's hashes
        expected = {name: digest for name, digest in MANIFEST_FILES.items() if name in files}
        assert len(files) * 10 > len(MANIFEST_FILES), "the covering plan's cases went missing"
    differing = sorted(name for name in expected.keys() | files.keys() if expected.get(name) != files.get(name))
    assert not differing, f"{variant}: {len(differing)} files differ, e.g. {differing[:3]}"

