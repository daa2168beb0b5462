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
exactly (bit for bit). ``load_cases`` (what ``conformance run`` and every
adapter process trust) makes every other check ``verify`` makes: the
manifest's schema (every field's type, no duplicate case or file, every path
inside the fixtures directory), its entries against the matrix (none missing,
none extra, each saying what the matrix says), every hash, and a replay of the
fast float64 oracle ``forward`` within ``FORWARD_ULPS`` of each stored answer,
so a damaged fixture stops a run with one line naming the file instead of
being blamed on an adapter. Both refuse, with one line naming the file,
anything missing, truncated, tampered with or holding a pickled object; they
never write.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from conformance.caches import cached_file
from conformance.files import write_text_atomic
from conformance.matrix.case import Case
from conformance.matrix.cases import build_cases
from conformance.matrix.spec import spec_from_dict
from conformance.matrix.tolerance import TOLERANCE_RULE
from conformance.matrix.unseen import unseen_cases
from conformance.reference import answered, exact_expected_outputs, expected_outputs, preactivation_range

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
# The manifest's schema: each field and the JSON type it must have.
MANIFEST_FIELDS = {"schema_version": int, "generator_version": str, "expected_values": str,
                   "forward_ulps": int, "tolerance_rule": str, "files": dict, "cases": list}
ENTRY_FIELDS = {"id": str, "file": str, "spec": dict, "describe": str, "scheme": str, "option": str,
                "dtypes": list, "tolerance": dict, "output_names": list, "output_shapes": list,
                "preactivation_range": dict}
OPTIONAL_ENTRY_FIELDS = {"mask_source": str, "reset_states": bool}  # only where not the default (entry_metadata)
# Arrays a case holds only where it has them, by their names in the .npz (Case's fields).
OPTIONAL_ARRAYS = ("mask", "decoder_x", "tokens", "embeddings", "earlier_x")
MANIFEST_KEYS = tuple(MANIFEST_FIELDS)
JSON_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", int: "an integer",
                   float: "a number", bool: "a boolean", type(None): "null"}
SHOWN_IDS = 3  # how many ids a missing/extra message names


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
    for name in OPTIONAL_ARRAYS:
        if getattr(case, name) is not None:
            arrays[name] = getattr(case, name)
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


def entry_metadata(case: Case) -> dict[str, Any]:
    """What a manifest entry says about its case, all of it from the matrix's code."""
    return {
        "id": case.id, "spec": case.spec.to_dict(), "describe": case.describe(),
        "scheme": case.scheme, "option": case.option, "dtypes": list(case.dtypes),
        "tolerance": {dtype: case.tolerance(dtype).to_dict() for dtype in case.dtypes},
        "output_names": case.output_names,
        # Coverage: the range of every activation's argument in the case (reference.preactivation_range).
        "preactivation_range": preactivation_range(case),
        # Only where it is not the layer's mask= argument, so that other entries read as before.
        **({"mask_source": case.mask_source} if case.mask_source != "argument" else {}),
        **({"reset_states": True} if case.reset_states else {}),
    }


def manifest_entry(case: Case, file: str, expected: list[np.ndarray]) -> dict[str, Any]:
    return {**entry_metadata(case), "file": file, "output_shapes": [list(a.shape) for a in expected]}


def build(fixtures_dir: Path | None = None) -> dict[str, Any]:
    """Regenerate every fixture; files land only once all of them were computed."""
    target = Path(fixtures_dir or default_fixtures_dir())
    check_build_target(target)
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
    try:
        _install(target, staged, manifest)
    except OSError as exc:
        raise FixtureError(f"{target}: cannot write the fixtures ({exc.strerror or exc})") from None
    return manifest


def check_build_target(target: Path) -> None:
    """Refuse, before minutes of computing, a target that cannot take a directory of fixtures."""
    for path, is_dir in ((target, True), (target / CASES_DIR, True), (target / MANIFEST, False)):
        if (path.exists() or path.is_symlink()) and path.is_dir() != is_dir:
            what = "is not a directory" if is_dir else "is a directory"
            raise FixtureError(f"{path}: exists and {what}; refusing to build fixtures there")
    ancestor = target.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise FixtureError(f"{ancestor}: not a directory, so {target} cannot be created")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise FixtureError(f"{ancestor}: not writable; cannot build fixtures in {target}")


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

def _json_type(value: Any) -> str:
    return JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _show(value: Any, limit: int = 80) -> str:
    """A value on one line, however long or odd (repr escapes newlines and control characters);
    an exception by its message, escaped the same way."""
    text = repr(value) if not isinstance(value, BaseException) else repr(str(value))[1:-1]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _few(ids: list[str]) -> str:
    shown = ", ".join(_show(i) for i in ids[:SHOWN_IDS])
    return shown + (", …" if len(ids) > SHOWN_IDS else "")


def _count(ids: list[str], noun: str) -> str:
    """``1 case``, ``3 entries``."""
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"1 {noun}" if len(ids) == 1 else f"{len(ids)} {plural}"


def _has_type(value: Any, kind: type) -> bool:
    """JSON's types: true is no integer, and an integer is a number."""
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, kind) or (kind is float and isinstance(value, int))


def check_fields(value: Any, fields: dict[str, type], where: str, optional: dict[str, type] | None = None) -> None:
    """``value`` is an object with exactly these fields (and maybe the ``optional`` ones), each of
    its JSON type."""
    if not isinstance(value, dict):
        raise FixtureError(f"{where}: must be an object, got {_json_type(value)}")
    missing = [key for key in fields if key not in value]
    if missing:
        raise FixtureError(f"{where}: missing field {', '.join(map(repr, missing))}")
    allowed = {**fields, **(optional or {})}
    unknown = sorted(str(key) for key in value if key not in allowed)
    if unknown:
        raise FixtureError(f"{where}: unknown field {_show(unknown[0])}")
    for key, kind in allowed.items():
        if key in value and not _has_type(value[key], kind):
            raise FixtureError(f"{where}: field {key!r} must be {JSON_TYPE_NAMES[kind]}, "
                               f"got {_json_type(value[key])}")


def _check_list_of(items: list, kind: type, field: str, where: str) -> None:
    if not items or not all(_has_type(item, kind) for item in items):
        raise FixtureError(f"{where}: field {field!r} must be a non-empty array of "
                           f"{JSON_TYPE_NAMES[kind][2:] if kind is int else 'strings'}")


def check_entry(entry: Any, where: str) -> None:
    """One case entry: its fields, their types, and the types inside its arrays."""
    check_fields(entry, ENTRY_FIELDS, where, OPTIONAL_ENTRY_FIELDS)
    _check_list_of(entry["dtypes"], str, "dtypes", where)
    _check_list_of(entry["output_names"], str, "output_names", where)
    shapes = entry["output_shapes"]
    if len(shapes) != len(entry["output_names"]) or not all(
            isinstance(shape, list) and all(_has_type(n, int) and n >= 0 for n in shape) for shape in shapes):
        raise FixtureError(f"{where}: field 'output_shapes' must hold one array of non-negative integers "
                           "per output name")


def check_file_hashes(files: dict, where: str) -> None:
    for file, digest in files.items():
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            raise FixtureError(f"{where}: files[{_show(file)}] must be a SHA-256 (64 lowercase hex digits), "
                               f"got {_show(digest, 40)}")


def _first_repeated(values: list[str]) -> str | None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None


def check_unique(manifest: dict[str, Any], where: str) -> None:
    """One entry per case and one case per file: a repeat would run or read a case twice."""
    ids = [entry["id"] for entry in manifest["cases"]]
    repeated = _first_repeated(ids)
    if repeated is not None:
        raise FixtureError(f"{where}: case {_show(repeated)} is listed {ids.count(repeated)} times")
    files = [entry["file"] for entry in manifest["cases"]]
    repeated = _first_repeated(files)
    if repeated is not None:
        sharing = [entry["id"] for entry in manifest["cases"] if entry["file"] == repeated]
        raise FixtureError(f"{where}: file {_show(repeated)} is listed by {len(sharing)} cases ({_few(sharing)})")
    unhashed = [file for file in files if file not in manifest["files"]]
    if unhashed:
        raise FixtureError(f"{where}: file {_show(unhashed[0])} has no SHA-256 in 'files'")
    unused = sorted(set(manifest["files"]) - set(files))
    if unused:
        raise FixtureError(f"{where}: 'files' lists {_show(unused[0])}, which no case uses")


def confined_path(fixtures_dir: Path, file: str, where: str) -> Path:
    """The path of a listed file, refused unless it stays inside the fixtures directory."""
    parts = PurePosixPath(file).parts
    reason = ("is empty" if not parts or file.strip() == "" else
              "holds a NUL character" if "\0" in file else
              "is absolute" if PurePosixPath(file).is_absolute() or Path(file).is_absolute() else
              "climbs out with '..'" if ".." in parts else "")
    if reason:
        raise FixtureError(f"{where}: file {_show(file)} {reason}; fixture files must stay inside "
                           f"{fixtures_dir}")
    path = fixtures_dir / file
    try:
        target = path.resolve()
        inside = target.is_relative_to(fixtures_dir.resolve())
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise FixtureError(f"{path}: its path cannot be resolved ({exc}); refusing to read it") from None
    if not inside:
        raise FixtureError(f"{path}: a symlink out of the fixtures directory (to {target}); "
                           "refusing to read it")
    return path


def validate_manifest(manifest: Any, fixtures_dir: Path) -> None:
    """The manifest's schema, checked before any listed file is opened (load_cases and verify)."""
    where = str(fixtures_dir / MANIFEST)
    check_fields(manifest, MANIFEST_FIELDS, where)
    if manifest["schema_version"] != SCHEMA_VERSION:
        raise FixtureError(f"{where}: schema_version {manifest['schema_version']!r}, "
                           f"this suite reads {SCHEMA_VERSION}")
    check_file_hashes(manifest["files"], where)
    for n, entry in enumerate(manifest["cases"]):
        label = f" ({_show(entry['id'])})" if isinstance(entry, dict) and isinstance(entry.get("id"), str) else ""
        check_entry(entry, f"{where}: cases[{n}]{label}")
    check_unique(manifest, where)
    for file in manifest["files"]:
        confined_path(fixtures_dir, file, where)


def read_manifest(fixtures_dir: Path) -> dict[str, Any]:
    """The parsed manifest, after ``validate_manifest``."""
    path = fixtures_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FixtureError(f"{path}: missing (run `conformance fixtures build`)") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise FixtureError(f"{path}: not valid JSON ({_show(exc, 120)})") from None
    except OSError as exc:
        raise FixtureError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    validate_manifest(manifest, fixtures_dir)
    return manifest


def check_matrix_ids(manifest: dict[str, Any], matrix_ids: list[str], where: str) -> None:
    """The manifest lists exactly the matrix's cases: a run must never quietly run fewer or others."""
    listed = {entry["id"] for entry in manifest["cases"]}
    missing = [case_id for case_id in matrix_ids if case_id not in listed]
    extra = sorted(listed - set(matrix_ids))
    problems = ([f"lacks {_count(missing, 'case')} of the matrix ({_few(missing)})"] if missing else []) + \
               ([f"lists {_count(extra, 'entry')} not in the matrix ({_few(extra)})"] if extra else [])
    if problems:
        raise FixtureError(f"{where}: the manifest {' and '.join(problems)} (run `conformance fixtures build`)")


def check_entry_against_matrix(entry: dict[str, Any], case: Case, where: str) -> None:
    """An entry says what the matrix says of its case (the manifest carries no hash of its own)."""
    for field, want in entry_metadata(case).items():
        if json.loads(json.dumps(want)) != entry[field]:
            raise FixtureError(f"{where}: case {_show(case.id)}: field {field!r} disagrees with the matrix "
                               "(tampered or stale; run `conformance fixtures build`)")


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


def check_expected_arrays(entry: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
    """One float64 ``expected.N`` per output, of the shape the manifest lists."""
    for n, shape in enumerate(entry["output_shapes"]):
        value = arrays.get(f"expected.{n}")
        if value is None:
            raise FixtureError(f"{path}: expected.{n} is missing")
        if value.dtype != np.float64 or value.shape != tuple(shape):
            raise FixtureError(f"{path}: expected.{n} is {value.dtype}{list(value.shape)}, the manifest "
                               f"lists float64{shape}")


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
                    initial_state=tuple(arrays[k] for k in states) or None,
                    scheme=entry["scheme"], option=entry["option"], dtypes=tuple(entry["dtypes"]),
                    expected=expected, mask_source=entry.get("mask_source", "argument"),
                    reset_states=entry.get("reset_states", False),
                    **{name: arrays.get(name) for name in OPTIONAL_ARRAYS})
    except (KeyError, ValueError, TypeError) as exc:
        raise FixtureError(f"{path}: does not match its manifest entry ({type(exc).__name__}: {exc})") \
            from None


def scaled_ulps(want: np.ndarray, got: np.ndarray) -> float:
    """max |got - want| in units in the last place of max |want| (0 for empty tensors; NaN stays NaN)."""
    if want.size == 0:
        return 0.0
    unit = np.spacing(max(float(np.abs(want).max()), np.finfo(np.float64).tiny))
    return float(np.abs(got - want).max() / unit)


def check_expected(case: Case, path: Path) -> None:
    """The float64 oracle replays every stored answer within FORWARD_ULPS (a fraction of a second for
    the matrix), so an answer edited together with its hash is named, not blamed on an adapter."""
    for n, (want, quick) in enumerate(zip(case.expected, expected_outputs(case))):
        if not np.isfinite(want).all():
            raise FixtureError(f"{path}: expected.{n} holds NaN or inf; the oracle's answers are finite")
        if want.shape != quick.shape:
            raise FixtureError(f"{path}: expected.{n} has shape {list(want.shape)}, the float64 oracle "
                               f"gives {list(quick.shape)}")
        ulps = scaled_ulps(want, quick)
        if not ulps <= FORWARD_ULPS:  # NaN fails too
            raise FixtureError(f"{path}: expected.{n}: the float64 oracle is {ulps:.0f} ULPs from the "
                               f"stored answer (bound {FORWARD_ULPS}; tampered, or the oracle changed)")


def check_generated_arrays(arrays: dict[str, np.ndarray], case: Case, path: Path) -> None:
    """The file's inputs and weights are, bit for bit, those its case's definition generates (the
    generator is deterministic; cheap beside the replay). The manifest's hashes prove the bytes,
    not whose they are: another case's valid file, its hash updated, is named here."""
    generated = case_arrays(case, [])
    held = sorted(name for name in arrays if not name.startswith("expected."))
    stray = sorted(set(held) ^ set(generated))
    if stray:
        raise FixtureError(f"{path}: holds other arrays than case {_show(case.id)} generates (differing: "
                           f"{_few(stray)}; another case's file, or tampered; run `conformance fixtures build`)")
    for name, want in generated.items():
        got = arrays[name]
        if got.dtype != want.dtype or got.shape != want.shape or got.tobytes() != np.ascontiguousarray(want).tobytes():
            raise FixtureError(f"{path}: {name} is not the array case {_show(case.id)} generates "
                               "(another case's file, or tampered; run `conformance fixtures build`)")


def check_exact_answer(case: Case, path: Path) -> None:
    """The exact oracle reproduces every stored value bit for bit (seconds; ``verify`` only)."""
    for n, (want, again) in enumerate(zip(case.expected, exact_expected_outputs(case))):
        if want.shape != again.shape or want.tobytes() != again.tobytes():
            raise FixtureError(f"{path}: expected.{n} is not the exact oracle's answer "
                               "(fixture or oracle changed; rebuild and review)")


def checked_cases(fixtures_dir: Path, replay: bool = True,
                  only: set[str] | None = None) -> list[tuple[Case, Path]]:
    """Each case with its file, after every check but the exact replay, in the manifest's order;
    with ``replay=False`` (``load_cases``' vouched manifest) without the checks that recompute:
    the matrix's metadata and the float64 oracle's replay; with ``only``, those cases alone."""
    manifest = read_manifest(fixtures_dir)
    where = str(fixtures_dir / MANIFEST)
    matrix = {case.id: case for case in build_cases()} if replay else {}
    if replay:
        check_matrix_ids(manifest, list(matrix), where)
    loaded = []
    for entry in manifest["cases"]:
        if only is not None and entry["id"] not in only:
            continue
        if replay:
            check_entry_against_matrix(entry, matrix[entry["id"]], where)
        path = fixtures_dir / entry["file"]
        arrays = checked_file(fixtures_dir, manifest, entry["file"])
        check_expected_arrays(entry, arrays, path)
        case = case_from_arrays(entry, arrays, str(path))
        if replay:
            check_expected(case, path)
            check_generated_arrays(arrays, matrix[entry["id"]], path)
        loaded.append((case, path))
    return loaded


def load_unseen(count: int, seed: int | None) -> list[Case]:
    """``count`` unseen cases of ``seed`` (``conformance.matrix.unseen``) with the float64 oracle's
    answers: what a run judges beside the fixtures (``--unseen``); ValueError (one line) for a
    count or seed out of range, or a count without a seed."""
    if count and seed is None:
        raise ValueError("unseen cases need their seed (--unseen-seed S; conformance run draws one)")
    return [answered(case) for case in unseen_cases(count, seed)] if count else []


def load_cases(fixtures_dir: Path | None = None, vouched_manifest: str | None = None,
               only: set[str] | None = None) -> list[Case]:
    """Every case with its expected outputs, trusted only after every check ``verify`` makes but the
    exact replay: schema, matrix, hashes, pickle-free arrays, the float64 oracle's replay.

    ``vouched_manifest`` is the SHA-256 of a manifest that the calling run has
    already loaded with all of that (``conformance run`` hands it to each adapter
    process, which would otherwise spend seconds replaying the same files). When it
    is this manifest's, every file is still checked against the manifest's hash,
    so the bytes are those that were checked, and the recomputing checks are not
    made again; any other value is ignored. A manifest this very oracle and
    matrix code has replayed before on this machine (``replayed_before``) is
    vouched for the same way: its replay would give the same verdict.

    ``only`` (case ids) loads those cases' files alone, the manifest still
    checked whole: an adapter process needs the cases of its plan, not 732 files."""
    directory = Path(fixtures_dir or default_fixtures_dir())
    sha256 = manifest_sha256(directory)
    stamp = replay_stamp(sha256)
    replay = vouched_manifest != sha256 and not (stamp is not None and stamp.exists())
    loaded = [case for case, _ in checked_cases(directory, replay, only)]
    if replay and stamp is not None:
        write_text_atomic(stamp, sha256 + "\n")
    return loaded


# The code whose verdict a replay is: the oracle, the matrix it replays against, these checks.
REPLAY_CODE = ("reference", "matrix", "semantics.py", "fixtures.py")


def replay_stamp(sha256: str) -> Path | None:
    """Where a successful replay of the manifest ``sha256`` is remembered: the suite's cache
    (``conformance.caches``), keyed by the manifest, the source of the code that
    replays it, numpy's version and the machine (the float64 oracle rounds per CPU and BLAS,
    within ``FORWARD_ULPS``). None when caching is off or there is no manifest."""
    if not sha256:
        return None
    package = Path(__file__).resolve().parent
    sources = sorted(path for name in REPLAY_CODE for path in
                     ([package / name] if name.endswith(".py") else (package / name).rglob("*.py")))
    digest = hashlib.sha256()
    for path in sources:
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    key = {"manifest": sha256, "code": digest.hexdigest(), "numpy": np.__version__,
           "machine": platform.machine(), "python": platform.python_version()}
    return cached_file("fixtures-replayed", key, ".ok")


def manifest_sha256(fixtures_dir: Path | None = None) -> str:
    """The fixture set's identity, shown in reports."""
    path = Path(fixtures_dir or default_fixtures_dir()) / MANIFEST
    return sha256_of(path) if path.is_file() else ""


def verify(fixtures_dir: Path | None = None) -> int:
    """Everything ``load_cases`` checks, then the exact oracle's replay; returns the case count."""
    loaded = checked_cases(Path(fixtures_dir or default_fixtures_dir()))
    for case, path in loaded:
        check_exact_answer(case, path)
    return len(loaded)
