"""``conformance run --shards N``: one adapter's plan over N processes, the same results as one.

Sharding is a speed device only (one long adapter on several cores), so a
sharded run must record exactly what an unsharded one does: every planned test
once, each with the same status and numbers, and account for its processes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conformance.commands.supervisor import shard_groups
from conformance.results.records import VOLATILE_FIELDS
from tests.commandline import CONSOLE_SCRIPT, one_line_error

REPO = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(REPO))
SELECTION = ("--adapter", "torch", "--device", "cpu", "-k", "tutorial or b3t5")


def conformance_run(report_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONSOLE_SCRIPT), "run", "--report-dir", str(report_dir), *args], env=ENV,
                          capture_output=True, text=True, timeout=600)


def stable(document: dict) -> dict[str, dict]:
    return {r["test_id"]: {k: v for k, v in r.items() if k not in VOLATILE_FIELDS} for r in document["results"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, dict]]:
    pytest.importorskip("torch")
    made = {}
    for shards in ("1", "3"):
        report_dir = tmp_path_factory.mktemp(f"shards{shards}")
        done = conformance_run(report_dir, *SELECTION, "--shards", shards, "--jobs", "2")
        made[shards] = done, json.loads((report_dir / "results.json").read_text())
    return made


def test_a_sharded_run_records_what_one_process_records(runs):
    (one, whole), (three, sharded) = runs["1"], runs["3"]
    assert one.returncode == three.returncode == 0, three.stderr[-2000:]
    assert sharded["planned"] == whole["planned"] == len(sharded["results"]) and sharded["complete"]
    assert stable(sharded) == stable(whole)


def test_a_sharded_run_counts_its_processes_and_shows_each_shard(runs):
    (_, whole), (three, sharded) = runs["1"], runs["3"]
    assert whole["adapters"]["torch"]["processes"] == 1
    assert sharded["adapters"]["torch"]["processes"] == 3
    assert sharded["adapters"]["torch"]["peak_rss_mib"] > 0
    assert "torch [1/3]" in three.stderr and "torch [3/3]" in three.stderr


def test_shards_are_contiguous_parts_of_the_plan_in_order(tmp_path):
    plan = [f"case{n}[a-cpu-float32]" for n in range(10)]
    groups = shard_groups("a", plan, tmp_path, 3)
    assert [g.planned for g in groups] == [plan[0:3], plan[3:7], plan[7:10]]
    assert [g.shard for g in groups] == ["1/3", "2/3", "3/3"]
    assert len(shard_groups("a", plan[:2], tmp_path, 5)) == 2, "never more shards than tests"


@pytest.mark.parametrize("value", ["0", "-2"])
def test_shards_below_one_are_refused(tmp_path, value):
    done = conformance_run(tmp_path / "reports", *SELECTION, "--shards", value)
    assert one_line_error(done) == "conformance: error: --jobs and --shards must be >= 1 and --max-restarts >= 0"
    assert not (tmp_path / "reports").exists()
