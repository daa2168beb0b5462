"""The report directory is the run's own: nothing planted in it sends a write elsewhere, and a
write that fails (a full disk) leaves the report that was there whole, with one line, exit 2.

A full disk is made real without filling one: the run's process (and its adapter processes)
get a file-size limit (``RLIMIT_FSIZE``, with ``SIGXFSZ`` ignored), so that a write past it
fails with ``EFBIG`` in the kernel, as a write to a full disk fails with ``ENOSPC``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.commandline import CONSOLE_SCRIPT, snapshot

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(REPO))
ORACLE_TUTORIAL = ["--adapter", "tests.oracle_adapters:OracleAdapter", "--device", "cpu", "--dtype", "float32",
                   "-k", "tutorial"]  # 12 tests


# Sets the limit, ignores SIGXFSZ (a write past the limit fails with EFBIG instead of killing the
# process; an ignored signal stays ignored across exec) and execs the command: no preexec_fn, whose
# fork would run the at-fork hooks of whatever this test process has loaded (JAX warns in them).
LIMITED = ("import os, resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
           "limit = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
           "os.execv(sys.argv[2], sys.argv[2:])")


def conformance_run(report_dir: Path, *args: str, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    command = [str(CONSOLE_SCRIPT), "run", "--report-dir", str(report_dir), *args]
    if file_size_limit:
        command = [sys.executable, "-c", LIMITED, str(file_size_limit), *command]
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)


def test_a_lock_file_planted_as_a_link_is_replaced_and_its_target_untouched(tmp_path):
    report_dir, outside = tmp_path / "report", tmp_path / "precious.txt"
    report_dir.mkdir()
    outside.write_text("someone else's file")
    (report_dir / ".conformance.lock").symlink_to(outside)
    result = conformance_run(report_dir, *ORACLE_TUTORIAL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outside.read_text() == "someone else's file"
    assert not (report_dir / ".conformance.lock").is_symlink()


def test_a_streams_dir_planted_as_a_link_is_replaced_and_nothing_is_written_outside(tmp_path):
    report_dir, outside = tmp_path / "report", tmp_path / "elsewhere"
    report_dir.mkdir()
    outside.mkdir()
    (outside / "kept.txt").write_text("someone else's file")
    (report_dir / "streams").symlink_to(outside, target_is_directory=True)
    result = conformance_run(report_dir, *ORACLE_TUTORIAL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert snapshot(outside) == {"kept.txt": b"someone else's file"}
    streams = report_dir / "streams"
    assert streams.is_dir() and not streams.is_symlink() and any(streams.glob("*.jsonl"))


def test_a_full_disk_while_the_report_is_written_is_one_line_and_the_earlier_report_survives(tmp_path):
    first = conformance_run(tmp_path, *ORACLE_TUTORIAL)
    assert first.returncode == 0, first.stdout + first.stderr
    earlier = {name: (tmp_path / name).read_bytes() for name in ("results.json", "junit.xml", "index.html")}
    largest_stream = max(p.stat().st_size for p in (tmp_path / "streams").iterdir())
    limit = largest_stream + 4096  # room for every stream of the run; not for the whole HTML report
    assert len(earlier["index.html"]) > limit + 4096, "the test needs a report larger than its streams"
    result = conformance_run(tmp_path, *ORACLE_TUTORIAL, file_size_limit=limit)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]  # after the run's progress lines
    assert f"conformance: error: could not write the report in {tmp_path}: File too large" in line
    assert "the report there before is unchanged" in line
    assert {name: (tmp_path / name).read_bytes() for name in earlier} == earlier
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith((".results", ".junit", ".index"))]
