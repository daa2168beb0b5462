"""tox.ini's matrix runs every built-in adapter once, each env into its own report dir."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.adapters import BUILTIN_ADAPTERS

ROOT = Path(__file__).resolve().parent.parent
POSARGS = ["-k", "lstm and mask"]


def matrix_commands() -> dict[str, list[str]]:
    """env name -> its resolved command line (with POSARGS), as `tox config` prints it."""
    pytest.importorskip("tox")
    done = subprocess.run(
        [sys.executable, "-m", "tox", "config", "-m", "matrix", "-k", "commands", "--", *POSARGS],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    sections = re.findall(r"^\[testenv:(.+)\]\ncommands = (.*)$", done.stdout, re.M)
    return {env: shlex.split(command) for env, command in sections}


def adapters_of(command: list[str]) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == "--adapter"]


def test_every_builtin_adapter_runs_in_exactly_one_matrix_env():
    runs = [adapter for command in matrix_commands().values() for adapter in adapters_of(command)]
    assert sorted(runs) == sorted(BUILTIN_ADAPTERS)


def test_each_matrix_env_writes_its_own_report_dir_and_passes_posargs_through():
    for env, command in matrix_commands().items():
        if env == "report":
            continue
        assert command[:2] == ["conformance", "run"], env
        assert command[command.index("--report-dir") + 1] == str(ROOT / "reports" / env)
        assert command[-len(POSARGS):] == POSARGS, env


def matrix_extras() -> dict[str, set[str]]:
    """env name -> the extras tox installs in it, as `tox config` prints them."""
    done = subprocess.run([sys.executable, "-m", "tox", "config", "-m", "matrix", "-k", "extras"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    sections = re.findall(r"^\[testenv:(.+)\]\nextras =(.*(?:\n  .*)*)", done.stdout, re.M)
    return {env: set(extras.split()) for env, extras in sections}


def test_a_sweep_installs_the_extras_tox_gives_each_adapter():
    from conformance.commands.sweep import ADAPTER_EXTRAS

    extras = matrix_extras()
    for env, command in matrix_commands().items():
        for adapter in adapters_of(command):
            assert set(ADAPTER_EXTRAS[adapter]) == extras[env], adapter
