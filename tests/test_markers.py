"""The fast subset (`pytest -m "not slow"`) leaves out every test module that starts processes or
loads a real framework: conftest.SLOW_MODULES names them all, and only them."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import SLOW_MODULES

TESTS = Path(__file__).resolve().parent
# What makes a module slow: a process started (subprocess, the installed script), or a real
# framework imported or loaded through its adapter.
SLOW_SIGNS = re.compile(
    r"subprocess|CONSOLE_SCRIPT|importorskip\(|^import (torch|tensorflow|keras|jax|onnx|openvino|tract)\b"
    r"|^from (torch|tensorflow|keras|jax|flax|onnx|openvino|tract)\b"
    r'|load_adapter\("(keras|tf-keras|torch|flax|onnx|openvino|tract)', re.M)


def slow_by_its_source() -> set[str]:
    return {path.stem for path in TESTS.glob("test_*.py")
            if path.stem != "test_markers" and SLOW_SIGNS.search(path.read_text())}


def test_every_module_that_starts_processes_or_loads_a_framework_is_marked_slow():
    assert sorted(slow_by_its_source() - SLOW_MODULES) == []


def test_every_module_marked_slow_exists_and_is_slow_by_its_source():
    assert sorted(SLOW_MODULES - slow_by_its_source()) == []
