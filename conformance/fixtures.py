"""Golden fixtures: every case's inputs, weights and oracle answer, frozen on disk.

Layout: ``fixtures/manifest.json`` plus one ``fixtures/cases/<id>.npz`` per case.
The manifest holds the schema and generator versions, the tolerance rule,
each file's SHA-256, and per case its id, spec, dtypes, tolerances and the
expected output names and shapes.

The stored ``expected.N`` arrays are the correctly rounded float64 of the
exact result of the equations (``conformance.reference.exact_forward``:
interval enclosures in mpmath, each rounded once to the nearest float64), so
``build`` gives byte-for-byte identical files on any CPU, BLAS, thread count
and numpy version (the .npz archives are written with fixed timestamps and no
compression). ``verify`` checks every hash, recomputes every stored answer
exactly (bit for bit), and checks that the fast float64 oracle ``forward``
agrees with it within ``FORWARD_ULPS``. ``load_cases`` and
``verify`` refuse, with one line naming the file, anything missing, truncated,
tampered with or holding a pickled object; they never write.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from conformance.files import write_text_atomic
from conformance.matrix.case import Case
from conformance.matrix.cases import build_cases
from conformance.matrix.spec import spec_from_dict
from conformance.matrix.tolerance import TOLERANCE_RULE
from conformance.reference import exact_expected_outputs, expected_outputs

SCHEMA_VERSION = 1
GENERATOR_VERSION = "conformance-fixtures/2"
EXPECTED_VALUES = ("the correctly rounded float64 of the exact result: mpmath interval enclosures "
                   "(128 bits or more) rounded once to nearest")
MANIFEST = "manifest.json"
CASES_DIR = "cases"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# How far the float64 oracle may sit from the exact answer, in units in the last place
# of the tensor's largest magnitude: its sums and tanh/exp round per CPU and BLAS.
# Measured on the matrix: at most 7 (2026-12-01); a real oracle bug is ~1e10 of them.
FORWARD_ULPS = 32
MANIFEST_KEYS = ("schema_version", "generator_version", "tolerance_rule", "files", "cases")


class FixtureError(ValueError):
    """A fixture problem; the message is one line naming the file and what is wrong."""


def default_fixtures_dir() -> Path:
    """$CONFORMANCE_FIXTURES, else the checkout's fixtures/, else ./fixtures."""
    if os.environ.get("CONFORMANCE_FIXTURES"):
        return Path(os.environ["CONFORMANCE_FIXTURES"])
    beside_package = Path(__file__).resolve().parent.parent / "fixtures"
    return beside_package if beside_package.is_dir() else Path.cwd() / "fixtures"


# --- arrays <-> npz ------------------------------------------------------------------------


def case_arrays(case: Case, expected: list[np.ndarray]) -> dict[str, np.ndarray]:
    arrays = {"x": case.x}
    if case.mask is not None:
        arrays["mask"] = case.mask
    if case.decoder_x is not None:
        arrays["decoder_x"] = case.decoder_x
    for n, state in enumerate(case.initial_state or ()):
        arrays[f"initial_state.{n}"] = state
    for layer, weights in case.weights.items():
        for name, value in weights.items():
            arrays[f"weights.{layer}.{name}"] = value
    for n, value in enumerate(expected):
        arrays[f"expected.{n}"] = value
    return arrays


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A deterministic .npz: sorted members, fixed timestamps, stored uncompressed."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as stream, np.load(stream, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise FixtureError(f"{path}: holds a pickled object array; refusing to load it") from None
        raise FixtureError(f"{path}: not a valid .npz ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise FixtureError(f"{path}: not a valid .npz, truncated or corrupt ({exc})") from None


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- building --------------------------------------------------------------------------------


def manifest_entry(case: Case, file: str, expected: list[np.ndarray]) -> dict[str, Any]:
    return {
        "id": case.id, "file": file, "spec": case.spec.to_dict(), "describe": case.describe(),
        "scheme": case.scheme, "option": case.option, "dtypes": list(case.dtypes),
        "tolerance": {dtype: case.tolerance(dtype).to_dict() for dtype in case.dtypes},
        "output_names": case.output_names, "output_shapes": [list(a.shape) for a in expected],
    }


def build(fixtures_dir: Path | None = None) -> dict[str, Any]:
    """Regenerate every fixture; files land only once all of them were computed."""
    target = Path(fixtures_dir or default_fixtures_dir())
    files: dict[str, str] = {}
    entries = []
    staged: dict[str, bytes] = {}
    for case in build_cases():
        expected = exact_expected_outputs(case)
        file = f"{CASES_DIR}/{case.id}.npz"
        staged[file] = npz_bytes(case_arrays(case, expected))
        files[file] = hashlib.sha256(staged[file]).hexdigest()
        entries.append(manifest_entry(case, file, expected))
    manifest = {"schema_version": SCHEMA_VERSION, "generator_version": GENERATOR_VERSION,
                "expected_values": EXPECTED_VALUES, "forward_ulps": FORWARD_ULPS,
                "tolerance_rule": TOLERANCE_RULE, "files": files, "cases": entries}
    _install(target, staged, manifest)
    return manifest


def _install(target: Path, staged: dict[str, bytes], manifest: dict[str, Any]) -> None:
    """Write each file by atomic rename, drop stale case files, write the manifest last."""
    (target / CASES_DIR).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as scratch:
        for file, content in staged.items():
            temporary = Path(scratch) / Path(file).name
            temporary.write_bytes(content)
            os.replace(temporary, target / file)
    for stale in (target / CASES_DIR).glob("*.npz"):
        if f"{CASES_DIR}/{stale.name}" not in staged:
            stale.unlink()
    write_text_atomic(target / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


# --- loading and verifying -------------------------------------------------------------------


def read_manifest(fixtures_dir: Path) -> dict[str, Any]:
    path = fixtures_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FixtureError(f"{path}: missing (run `conformance fixtures build`)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FixtureError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or any(key not in manifest for key in MANIFEST_KEYS):
        raise FixtureError(f"{path}: malformed manifest (needs keys {', '.join(MANIFEST_KEYS)})")
    if manifest["schema_version"] != SCHEMA_VERSION:
        raise FixtureError(f"{path}: schema_version {manifest['schema_version']!r}, "
                           f"this suite reads {SCHEMA_VERSION}")
    return manifest


def checked_file(fixtures_dir: Path, manifest: dict[str, Any], file: str) -> dict[str, np.ndarray]:
    """The arrays of one listed file, after its hash matched the manifest."""
    path = fixtures_dir / file
    if not path.is_file():
        raise FixtureError(f"{path}: missing (listed in {MANIFEST})")
    digest = sha256_of(path)
    if digest != manifest["files"].get(file):
        raise FixtureError(f"{path}: SHA-256 {digest[:12]}… does not match the manifest's "
                           f"{str(manifest['files'].get(file))[:12]}… (tampered or corrupt)")
    return read_npz(path)


def case_from_arrays(entry: dict[str, Any], arrays: dict[str, np.ndarray], path: str) -> Case:
    try:
        spec = spec_from_dict(entry["spec"])
        weights: dict[str, dict[str, np.ndarray]] = {name: {} for name in spec.sublayers()}
        for key, value in arrays.items():
            if key.startswith("weights."):
                _, layer, name = key.split(".", 2)
                weights[layer][name] = value
        states = sorted((k for k in arrays if k.startswith("initial_state.")), key=lambda k: int(k[14:]))
        expected = tuple(arrays[f"expected.{n}"] for n in range(len(entry["output_names"])))
        return Case(id=entry["id"], spec=spec, x=arrays["x"], weights=weights,
                    mask=arrays.get("mask"), decoder_x=arrays.get("decoder_x"),
                    initial_state=tuple(arrays[k] for k in states) or None,
                    scheme=entry["scheme"], option=entry["option"], dtypes=tuple(entry["dtypes"]),
                    expected=expected)
    except (KeyError, ValueError, TypeError) as exc:
        raise FixtureError(f"{path}: does not match its manifest entry ({type(exc).__name__}: {exc})") \
            from None


def load_cases(fixtures_dir: Path | None = None) -> list[Case]:
    """Every case with its expected outputs, hash-checked, pickle-free."""
    fixtures_dir = Path(fixtures_dir or default_fixtures_dir())
    manifest = read_manifest(fixtures_dir)
    cases = []
    for entry in manifest["cases"]:
        arrays = checked_file(fixtures_dir, manifest, entry.get("file", ""))
        cases.append(case_from_arrays(entry, arrays, str(fixtures_dir / entry["file"])))
    return cases


def manifest_sha256(fixtures_dir: Path | None = None) -> str:
    """The fixture set's identity, shown in reports."""
    path = Path(fixtures_dir or default_fixtures_dir()) / MANIFEST
    return sha256_of(path) if path.is_file() else ""


def scaled_ulps(want: np.ndarray, got: np.ndarray) -> float:
    """max |got - want| in units in the last place of max |want| (0 for empty tensors)."""
    if want.size == 0:
        return 0.0
    unit = np.spacing(max(float(np.abs(want).max()), np.finfo(np.float64).tiny))
    return float(np.abs(got - want).max() / unit)


def check_stored_answer(case: Case, path: Path) -> None:
    """The exact oracle reproduces every stored value bit for bit; ``forward`` is close to it."""
    exact, fast = exact_expected_outputs(case), expected_outputs(case)
    for n, (want, again, quick) in enumerate(zip(case.expected, exact, fast)):
        if want.shape != again.shape or want.tobytes() != again.tobytes():
            raise FixtureError(f"{path}: expected.{n} is not the exact oracle's answer "
                               "(fixture or oracle changed; rebuild and review)")
        if scaled_ulps(want, quick) > FORWARD_ULPS:
            raise FixtureError(f"{path}: expected.{n}: the float64 oracle is {scaled_ulps(want, quick):.0f} "
                               f"ULPs from the exact answer (bound {FORWARD_ULPS})")


def verify(fixtures_dir: Path | None = None) -> int:
    """Hashes, schema, and both oracles' replay of every stored answer; returns the case count."""
    fixtures_dir = Path(fixtures_dir or default_fixtures_dir())
    stored = load_cases(fixtures_dir)
    generated = {case.id: case for case in build_cases()}
    stored_ids = {case.id for case in stored}
    missing = sorted(set(generated) - stored_ids)
    if missing:
        raise FixtureError(f"{fixtures_dir / MANIFEST}: {len(missing)} cases of the matrix are missing, "
                           f"e.g. {missing[0]} (run `conformance fixtures build`)")
    for case in stored:
        path = fixtures_dir / CASES_DIR / f"{case.id}.npz"
        if case.id not in generated:
            raise FixtureError(f"{path}: case {case.id} is no longer in the matrix (rebuild)")
        check_stored_answer(case, path)
    return len(stored)
