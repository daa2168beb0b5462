"""Fixtures a run can trust: every kind of damage stops `verify` and `run` with one line naming the file.

Each damage below is made on a copy of the checked-in fixtures. Where a hash would give the damage
away, the manifest is rehashed to agree, so the check meant for that damage is the one that fires.
`conformance run` must refuse the same fixtures before any adapter runs (never blaming the damage on
an adapter), writing nothing into its report dir; `load_cases`, which every adapter process calls,
refuses them too.
"""

from __future__ import annotations

import copy as copying
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conformance import fixtures
from conformance.commands.cli import main
from tests.commandline import CONSOLE_SCRIPT, one_line_error, snapshot

REPO = Path(__file__).resolve().parent.parent
REPO_FIXTURES = REPO / "fixtures"
ORACLE = "tests.oracle_adapters:OracleAdapter"


# --- helpers ---------------------------------------------------------------------------------


def conformance(*args: str | Path) -> subprocess.CompletedProcess:
    """The installed console script, as a user types it (PYTHONPATH: how a user plugs in an adapter)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([str(CONSOLE_SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env=env)


def in_process(capsys, *args: str | Path) -> subprocess.CompletedProcess:
    """``conformance ARGS`` through the command line's own ``main`` in this process, answered as the
    console script answers (exit status, stdout, stderr), so ``one_line_error`` judges it the same.
    Every damage goes through here; a few also through the installed script (``BY_THE_SCRIPT``)."""
    try:
        status = main([str(arg) for arg in args])
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["conformance", *map(str, args)], status, out, err)


def read(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())


def write(directory: Path, manifest: object) -> None:
    (directory / "manifest.json").write_text(json.dumps(manifest))


def rehash(directory: Path, file: str) -> None:
    """Make the manifest agree with a damaged file, so the next check down must catch it."""
    manifest = read(directory)
    manifest["files"][file] = hashlib.sha256((directory / file).read_bytes()).hexdigest()
    write(directory, manifest)


def edit_expected(directory: Path, change: Callable[[np.ndarray], np.ndarray]) -> str:
    """Change the first case's expected.0 and update its hash, as a careless rebuild by hand would."""
    file = read(directory)["cases"][0]["file"]
    with np.load(directory / file) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["expected.0"] = change(arrays["expected.0"])
    (directory / file).write_bytes(fixtures.npz_bytes(arrays))
    rehash(directory, file)
    return Path(file).name


@pytest.fixture
def fixtures_copy(tmp_path) -> Path:
    target = tmp_path / "fixtures"
    shutil.copytree(REPO_FIXTURES, target)
    return target


# --- the damage: each returns (the file the line must name, a phrase it must hold) ------------


def cases_as_an_object(d: Path) -> tuple[str, str]:
    manifest = read(d)
    manifest["cases"] = {entry["id"]: entry for entry in manifest["cases"]}
    write(d, manifest)
    return "manifest.json", "field 'cases' must be an array, got an object"


def files_as_an_array(d: Path) -> tuple[str, str]:
    manifest = read(d)
    manifest["files"] = list(manifest["files"])
    write(d, manifest)
    return "manifest.json", "field 'files' must be an object, got an array"


def manifest_as_an_array(d: Path) -> tuple[str, str]:
    write(d, [read(d)])
    return "manifest.json", "must be an object, got an array"


def schema_version_as_a_string(d: Path) -> tuple[str, str]:
    manifest = read(d)
    manifest["schema_version"] = "1"
    write(d, manifest)
    return "manifest.json", "field 'schema_version' must be an integer, got a string"


def a_number_too_long_to_parse(d: Path) -> tuple[str, str]:
    (d / "manifest.json").write_text('{"schema_version": ' + "9" * 50_000 + "}")
    return "manifest.json", "not valid JSON"


def an_unknown_top_level_field(d: Path) -> tuple[str, str]:
    manifest = read(d)
    manifest["extra_cases"] = []
    write(d, manifest)
    return "manifest.json", "unknown field 'extra_cases'"


def an_entry_without_its_dtypes(d: Path) -> tuple[str, str]:
    manifest = read(d)
    del manifest["cases"][5]["dtypes"]
    write(d, manifest)
    return "manifest.json", f"cases[5] ({manifest['cases'][5]['id']!r}): missing field 'dtypes'"


def an_entry_that_is_a_string(d: Path) -> tuple[str, str]:
    manifest = read(d)
    manifest["cases"][2] = manifest["cases"][2]["id"]
    write(d, manifest)
    return "manifest.json", "cases[2]: must be an object, got a string"


def output_shapes_as_a_string(d: Path) -> tuple[str, str]:
    manifest = read(d)
    manifest["cases"][0]["output_shapes"] = "[[1, 1]]"
    write(d, manifest)
    return "manifest.json", "field 'output_shapes' must be an array, got a string"


def dtypes_empty(d: Path) -> tuple[str, str]:
    manifest = read(d)
    manifest["cases"][0]["dtypes"] = []
    write(d, manifest)
    return "manifest.json", "field 'dtypes' must be a non-empty array of strings"


def a_hash_that_is_no_sha256(d: Path) -> tuple[str, str]:
    manifest = read(d)
    file = manifest["cases"][0]["file"]
    manifest["files"][file] = 12345
    write(d, manifest)
    return "manifest.json", "must be a SHA-256"


def a_duplicate_case_entry(d: Path) -> tuple[str, str]:
    manifest = read(d)
    manifest["cases"].append(copying.deepcopy(manifest["cases"][3]))
    write(d, manifest)
    return "manifest.json", f"case {manifest['cases'][3]['id']!r} is listed 2 times"


def two_entries_sharing_one_file(d: Path) -> tuple[str, str]:
    manifest = read(d)
    shared = manifest["cases"][0]["file"]
    del manifest["files"][manifest["cases"][1]["file"]]
    manifest["cases"][1]["file"] = shared
    write(d, manifest)
    return "manifest.json", f"file {shared!r} is listed by 2 cases"


def a_missing_entry(d: Path) -> tuple[str, str]:
    manifest = read(d)
    dropped = manifest["cases"].pop(7)
    del manifest["files"][dropped["file"]]
    write(d, manifest)
    return "manifest.json", f"the manifest lacks 1 case of the matrix ({dropped['id']!r})"


def an_extra_entry(d: Path) -> tuple[str, str]:
    manifest = read(d)
    extra = {**copying.deepcopy(manifest["cases"][0]), "id": "lstm-invented", "file": "cases/lstm-invented.npz"}
    shutil.copy(d / manifest["cases"][0]["file"], d / extra["file"])
    manifest["cases"].append(extra)
    manifest["files"][extra["file"]] = manifest["files"][manifest["cases"][0]["file"]]
    write(d, manifest)
    return "manifest.json", "lists 1 entry not in the matrix ('lstm-invented')"


def a_hash_no_case_uses(d: Path) -> tuple[str, str]:
    manifest = read(d)
    manifest["files"]["cases/unused.npz"] = "0" * 64
    write(d, manifest)
    return "manifest.json", "'files' lists 'cases/unused.npz', which no case uses"


def a_spec_edited_in_the_manifest(d: Path) -> tuple[str, str]:
    manifest = read(d)
    spec = manifest["cases"][0]["spec"]
    spec["go_backwards"] = not spec["go_backwards"]
    write(d, manifest)
    return "manifest.json", "field 'spec' disagrees with the matrix"


def output_shapes_that_do_not_fit_the_file(d: Path) -> tuple[str, str]:
    manifest = read(d)
    manifest["cases"][0]["output_shapes"] = [[9, 9]]
    write(d, manifest)
    return Path(manifest["cases"][0]["file"]).name, "the manifest lists float64[9, 9]"


def _point_first_entry_at(d: Path, file: str) -> None:
    manifest = read(d)
    old = manifest["cases"][0]["file"]
    manifest["files"][file] = manifest["files"].pop(old)
    manifest["cases"][0]["file"] = file
    write(d, manifest)


def a_path_climbing_out(d: Path) -> tuple[str, str]:
    _point_first_entry_at(d, "../../../../etc/passwd")
    return "manifest.json", "'../../../../etc/passwd' climbs out with '..'"


def an_absolute_path(d: Path) -> tuple[str, str]:
    _point_first_entry_at(d, "/etc/passwd")
    return "manifest.json", "'/etc/passwd' is absolute"


def a_symlink_leading_out(d: Path) -> tuple[str, str]:
    """The outside copy is byte-identical, so its hash matches: only the path check can refuse it."""
    file = d / read(d)["cases"][0]["file"]
    outside = d.parent / "outside.npz"
    shutil.copy(file, outside)
    file.unlink()
    file.symlink_to(outside)
    return file.name, f"a symlink out of the fixtures directory (to {outside})"


def a_cases_dir_symlinked_out(d: Path) -> tuple[str, str]:
    outside = d.parent / "outside-cases"
    shutil.move(d / "cases", outside)
    (d / "cases").symlink_to(outside, target_is_directory=True)
    return "cases/", "a symlink out of the fixtures directory"


def a_symlink_loop(d: Path) -> tuple[str, str]:
    file = d / read(d)["cases"][0]["file"]
    file.unlink()
    file.symlink_to(file.name)
    return file.name, "cannot be resolved"


def an_expected_value_edited_with_its_hash(d: Path) -> tuple[str, str]:
    name = edit_expected(d, lambda value: value * (1 + 1e-6) + 1e-6)
    return name, "ULPs from the stored answer"


def an_expected_value_made_nan_with_its_hash(d: Path) -> tuple[str, str]:
    def one_nan(value: np.ndarray) -> np.ndarray:
        value = value.copy()
        value.flat[0] = np.nan
        return value

    return edit_expected(d, one_nan), "holds NaN or inf"


def an_input_edited_with_its_hash(d: Path) -> tuple[str, str]:
    """A changed input no longer gives the stored answer: the replay names the file, not the adapter."""
    file = read(d)["cases"][0]["file"]
    with np.load(d / file) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["x"] = arrays["x"] + 0.25
    (d / file).write_bytes(fixtures.npz_bytes(arrays))
    rehash(d, file)
    return Path(file).name, "ULPs from the stored answer"


def another_cases_valid_file_with_its_hash(d: Path) -> tuple[str, str]:
    """A case's file replaced by the file of another case of the same layer and shapes: the
    replay agrees (its answer fits its inputs); only regenerating the case's inputs and weights
    from its definition tells that they are another case's."""
    def alike(entry: dict) -> tuple[str, list[str]]:
        with np.load(d / entry["file"]) as archive:
            return json.dumps([entry[k] for k in ("spec", "output_shapes", "dtypes")]), archive.files

    entries = read(d)["cases"]
    victim, donor = next((a, b) for a in entries for b in entries if a is not b and alike(a) == alike(b))
    shutil.copyfile(d / donor["file"], d / victim["file"])
    rehash(d, victim["file"])
    return Path(victim["file"]).name, f"is not the array case {victim['id']!r} generates"


DAMAGE = [cases_as_an_object, files_as_an_array, manifest_as_an_array, schema_version_as_a_string,
          a_number_too_long_to_parse, an_unknown_top_level_field, an_entry_without_its_dtypes,
          an_entry_that_is_a_string, output_shapes_as_a_string, dtypes_empty, a_hash_that_is_no_sha256,
          a_duplicate_case_entry, two_entries_sharing_one_file, a_missing_entry, an_extra_entry,
          a_hash_no_case_uses, a_spec_edited_in_the_manifest, output_shapes_that_do_not_fit_the_file,
          a_path_climbing_out, an_absolute_path, a_symlink_leading_out, a_cases_dir_symlinked_out, a_symlink_loop,
          an_expected_value_edited_with_its_hash, an_expected_value_made_nan_with_its_hash,
          an_input_edited_with_its_hash, another_cases_valid_file_with_its_hash]


def damaged(damage: Callable[[Path], tuple[str, str]]) -> str:
    return damage.__name__.replace("_", " ")


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", DAMAGE, ids=damaged)
def test_load_cases_refuses_damaged_fixtures_with_one_line_naming_the_file(damage, fixtures_copy):
    file, phrase = damage(fixtures_copy)
    with pytest.raises(fixtures.FixtureError) as refused:
        fixtures.load_cases(fixtures_copy)
    message = str(refused.value)
    assert len(message.splitlines()) == 1
    assert file in message and phrase in message, message


@pytest.mark.parametrize("damage", DAMAGE, ids=damaged)
def test_fixtures_verify_refuses_damaged_fixtures_with_exit_2_writing_nothing(damage, fixtures_copy, capsys):
    file, phrase = damage(fixtures_copy)
    before = snapshot(fixtures_copy)
    line = one_line_error(in_process(capsys, "fixtures", "verify", "--fixtures-dir", fixtures_copy))
    assert file in line and phrase in line, line
    assert snapshot(fixtures_copy) == before


@pytest.mark.parametrize("damage", DAMAGE, ids=damaged)
def test_run_refuses_damaged_fixtures_before_any_adapter_runs(damage, fixtures_copy, report_dir, capsys):
    file, phrase = damage(fixtures_copy)
    before = snapshot(fixtures_copy)
    line = one_line_error(in_process(capsys, "run", "--adapter", ORACLE, "--device", "cpu", "-k", "tutorial",
                                     "--fixtures-dir", fixtures_copy, "--report-dir", report_dir))
    assert file in line and phrase in line, line
    assert snapshot(report_dir) == {"index.html": b"previous report"}, "nothing may be written"
    assert snapshot(fixtures_copy) == before


# One damage from each layer of checks (the manifest's schema, a path, the oracle's replay), through
# the installed script as a user meets them: the same refusal as in process, exit 2, one line.
BY_THE_SCRIPT = [manifest_as_an_array, a_symlink_leading_out, an_expected_value_edited_with_its_hash]


@pytest.mark.parametrize("damage", BY_THE_SCRIPT, ids=damaged)
def test_the_console_script_refuses_damaged_fixtures_in_verify_and_run(damage, fixtures_copy, report_dir):
    file, phrase = damage(fixtures_copy)
    before = snapshot(fixtures_copy)
    verify = one_line_error(conformance("fixtures", "verify", "--fixtures-dir", fixtures_copy))
    run = one_line_error(conformance("run", "--adapter", ORACLE, "--device", "cpu", "-k", "tutorial",
                                     "--fixtures-dir", fixtures_copy, "--report-dir", report_dir))
    assert file in verify and phrase in verify and file in run and phrase in run, (verify, run)
    assert snapshot(report_dir) == {"index.html": b"previous report"}, "nothing may be written"
    assert snapshot(fixtures_copy) == before


def test_a_symlink_that_stays_inside_the_fixtures_dir_is_followed(fixtures_copy):
    file = fixtures_copy / read(fixtures_copy)["cases"][0]["file"]
    (fixtures_copy / "store").mkdir()
    shutil.move(file, fixtures_copy / "store" / file.name)
    file.symlink_to(Path("..") / "store" / file.name)
    assert len(fixtures.load_cases(fixtures_copy)) == len(read(fixtures_copy)["cases"])


def test_the_float64_replay_accepts_every_checked_in_answer():
    for case, path in fixtures.checked_cases(REPO_FIXTURES):
        fixtures.check_expected(case, path)


def test_fixtures_build_into_a_regular_file_is_one_line_and_writes_nothing(tmp_path):
    target = tmp_path / "not-a-dir"
    target.write_text("keep me")
    line = one_line_error(conformance("fixtures", "build", "--fixtures-dir", target))
    assert str(target) in line and "not a directory" in line
    assert target.read_text() == "keep me" and sorted(tmp_path.iterdir()) == [target]


def test_fixtures_build_below_a_regular_file_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    line = one_line_error(conformance("fixtures", "build", "--fixtures-dir", blocker / "fixtures"))
    assert str(blocker) in line and "not a directory" in line
    assert blocker.read_text() == "keep me"


@pytest.mark.parametrize("blocked, make", [("cases", Path.write_text), ("manifest.json", Path.mkdir)],
                         ids=["cases is a file", "manifest.json is a directory"])
def test_fixtures_build_into_a_dir_whose_layout_is_blocked_is_one_line(tmp_path, blocked, make):
    path = tmp_path / blocked
    make(path, "x") if make is Path.write_text else make(path)
    line = one_line_error(conformance("fixtures", "build", "--fixtures-dir", tmp_path))
    assert str(path) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == [blocked]


def test_many_missing_and_extra_entries_are_counted_in_one_line_naming_the_first_few(fixtures_copy):
    manifest = read(fixtures_copy)
    dropped = manifest["cases"][:5]
    manifest["cases"] = manifest["cases"][5:]
    for entry in dropped:
        del manifest["files"][entry["file"]]
    manifest["cases"][0]["id"] = "gru-renamed"
    write(fixtures_copy, manifest)
    with pytest.raises(fixtures.FixtureError) as refused:
        fixtures.load_cases(fixtures_copy)
    message = str(refused.value)
    assert len(message.splitlines()) == 1 and "manifest.json" in message
    assert f"lacks 6 cases of the matrix ({dropped[0]['id']!r}, {dropped[1]['id']!r}, {dropped[2]['id']!r}, …)" \
        in message
    assert "lists 1 entry not in the matrix ('gru-renamed')" in message
