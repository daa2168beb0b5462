"""Golden fixtures: reproducible bytes, and one clear line for every kind of damage."""

import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conformance import fixtures
from conformance.commands.cli import main
from tests.commandline import snapshot

REPO_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def copy(tmp_path) -> Path:
    """The checked-in fixtures, to damage (that they are what the generator builds is its own test)."""
    target = tmp_path / "fixtures"
    shutil.copytree(REPO_FIXTURES, target)
    return target


def first_case_file(directory: Path) -> Path:
    return sorted((directory / "cases").glob("*.npz"))[0]


def verify_fails_with(directory: Path, capsys) -> str:
    before = snapshot(directory)
    status = main(["fixtures", "verify", "--fixtures-dir", str(directory)])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1
    assert snapshot(directory) == before, "verify must not write"
    return err


# That the checked-in fixtures are what the generator builds, byte for byte, and that `verify`
# accepts them, is shown once through the console script, as a user rebuilds them
# (tests/test_commands.py, "fixtures"): each is a whole exact computation over the matrix.


def test_a_flipped_byte_is_named(copy, capsys):
    path = first_case_file(copy)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    err = verify_fails_with(copy, capsys)
    assert path.name in err and "SHA-256" in err


def test_a_wrong_hash_in_the_manifest_is_named(copy, capsys):
    manifest = json.loads((copy / "manifest.json").read_text())
    file = next(iter(manifest["files"]))
    manifest["files"][file] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    err = verify_fails_with(copy, capsys)
    assert Path(file).name in err and "does not match" in err


def test_a_missing_file_is_named(copy, capsys):
    path = first_case_file(copy)
    path.unlink()
    err = verify_fails_with(copy, capsys)
    assert path.name in err and "missing" in err


def test_a_truncated_file_is_named(copy, capsys):
    path = first_case_file(copy)
    path.write_bytes(path.read_bytes()[:100])
    _rehash(copy, path)
    err = verify_fails_with(copy, capsys)
    assert path.name in err and "truncated or corrupt" in err


def test_a_pickled_array_is_refused_even_with_a_matching_hash(copy, capsys):
    path = first_case_file(copy)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        member = io.BytesIO()
        np.lib.format.write_array(member, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
        archive.writestr("x.npy", member.getvalue())
    path.write_bytes(buffer.getvalue())
    _rehash(copy, path)
    err = verify_fails_with(copy, capsys)
    assert path.name in err and "pickled" in err


def test_a_missing_manifest_is_named(copy, capsys):
    (copy / "manifest.json").unlink()
    assert "manifest.json: missing" in verify_fails_with(copy, capsys)


def test_a_stored_answer_the_oracle_no_longer_gives_is_named(copy, capsys):
    path = first_case_file(copy)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["expected.0"] = arrays["expected.0"] + 1e-3
    path.write_bytes(fixtures.npz_bytes(arrays))
    _rehash(copy, path)
    err = verify_fails_with(copy, capsys)
    assert path.name in err and "oracle" in err


def test_a_stored_answer_one_ulp_off_the_exact_one_is_named(copy, capsys):
    """A last-bit change passes every tolerance; only the exact replay can catch it."""
    path = first_case_file(copy)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    flat = arrays["expected.0"].ravel().copy()
    flat[0] = np.nextafter(flat[0], np.inf)
    arrays["expected.0"] = flat.reshape(arrays["expected.0"].shape)
    path.write_bytes(fixtures.npz_bytes(arrays))
    _rehash(copy, path)
    err = verify_fails_with(copy, capsys)
    assert path.name in err and "exact oracle" in err


def test_load_cases_attaches_expected_outputs(copy):
    cases = fixtures.load_cases(copy)
    assert all(len(c.expected) == len(c.output_names) for c in cases)


def _rehash(directory: Path, path: Path) -> None:
    """Make the manifest agree with a damaged file, so the next check down must catch it."""
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"][f"cases/{path.name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_a_vouched_manifest_still_checks_every_file_against_its_hash(copy):
    """An adapter process of ``conformance run`` is handed the manifest its parent checked: a file
    changed since (its hash no longer the manifest's) is refused all the same."""
    vouched = fixtures.manifest_sha256(copy)
    path = first_case_file(copy)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(fixtures.FixtureError, match="SHA-256"):
        fixtures.load_cases(copy, vouched_manifest=vouched)


def replays_counted(monkeypatch) -> list[str]:
    """The case ids whose stored answers the float64 oracle replays, as ``load_cases`` goes."""
    replayed, check = [], fixtures.check_expected
    monkeypatch.setattr(fixtures, "check_expected", lambda case, path: (replayed.append(case.id), check(case, path)))
    return replayed


def test_a_manifest_replayed_once_is_not_replayed_again_by_the_same_code(copy, tmp_path, monkeypatch):
    """The replay's verdict depends on the manifest (whose hashes pin every file), the oracle's code
    and the machine only: a stamp in the suite's cache remembers it; files are still hashed."""
    monkeypatch.setenv("CONFORMANCE_CACHE_DIR", str(tmp_path / "cache"))
    replayed = replays_counted(monkeypatch)
    first = fixtures.load_cases(copy)
    assert len(replayed) == len(first)
    replayed.clear()
    assert [case.id for case in fixtures.load_cases(copy)] == [case.id for case in first]
    assert replayed == []
    monkeypatch.setenv("CONFORMANCE_CACHE_DIR", "off")  # no cache: every load replays
    fixtures.load_cases(copy)
    assert len(replayed) == len(first)


def test_a_changed_file_is_refused_even_when_its_manifest_was_replayed_before(copy, tmp_path, monkeypatch):
    monkeypatch.setenv("CONFORMANCE_CACHE_DIR", str(tmp_path / "cache"))
    fixtures.load_cases(copy)
    path = first_case_file(copy)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(fixtures.FixtureError, match="SHA-256"):
        fixtures.load_cases(copy)


def test_an_adapter_process_loads_the_cases_of_its_plan_alone(copy):
    """``only``: the files of other cases are not read (one damaged here goes unnoticed), the
    manifest is still checked whole."""
    vouched = fixtures.manifest_sha256(copy)
    entries = json.loads((copy / fixtures.MANIFEST).read_text())["cases"]
    wanted = {entries[1]["id"], entries[2]["id"]}
    (copy / entries[0]["file"]).write_bytes(b"not an npz")
    loaded = fixtures.load_cases(copy, vouched_manifest=vouched, only=wanted)
    assert {case.id for case in loaded} == wanted
    with pytest.raises(fixtures.FixtureError, match="SHA-256"):
        fixtures.load_cases(copy, vouched_manifest=vouched, only={entries[0]["id"]})


def test_only_the_manifest_it_names_spares_the_oracle_replay(copy, monkeypatch):
    path = first_case_file(copy)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["expected.0"] = arrays["expected.0"] + 1e-3  # an answer the oracle no longer gives
    path.write_bytes(fixtures.npz_bytes(arrays))
    stale = fixtures.manifest_sha256(copy)
    _rehash(copy, path)  # the manifest changed: a vouch for the old one says nothing of it
    with pytest.raises(fixtures.FixtureError, match="oracle"):
        fixtures.load_cases(copy, vouched_manifest=stale)
    vouched = fixtures.manifest_sha256(copy)
    assert len(fixtures.load_cases(copy, vouched_manifest=vouched)) == len(fixtures.load_cases(REPO_FIXTURES))
