"""``last_run_info()["compilations"]``: what one ``run`` compiled or exported, 0 when it reused.

A second case of the same structure and sizes reuses the first one's
compiled forward (0); a case of other batch and time sizes makes XLA compile
again, and the count says so. Counted for real: the adapters read JAX's own
compile events, their exporter calls and their runtime loads.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.adapters import load_adapter
from conformance.fixtures import load_cases
from conformance.verdict.check import check_case

FIRST = "lstm-seq1-state0-constant-b3t5"
SAME_STRUCTURE = "lstm-seq1-state0-random-b3t5"  # same spec and sizes, other weights
OTHER_SIZES = "lstm-seq1-state0-per_gate-b3t7"  # same spec, 7 steps instead of 5
SEQUENCE = (FIRST, SAME_STRUCTURE, OTHER_SIZES)
CHECKOUT = Path(__file__).resolve().parent.parent


@functools.cache
def _cases() -> dict:
    return {case.id: case.for_dtype("float32") for case in load_cases()}


def compilations_per_run(adapter_name: str, case_ids=SEQUENCE) -> list[int]:
    """Each case run in turn by one fresh adapter: its ``compilations``, in order."""
    adapter = load_adapter(adapter_name)
    reason = adapter.available()
    if reason:
        pytest.skip(reason)
    counts = []
    for case_id in case_ids:
        adapter.run(_cases()[case_id], "cpu")
        counts.append(adapter.last_run_info()["compilations"])
    return counts


def compilations_in_fresh_interpreter(adapter_name: str, cache_dir: Path) -> list[int]:
    """``compilations_per_run`` in a new Python (Keras fixes its backend per process), with the
    suite's caches (JAX's persistent compilation cache among them) under ``cache_dir``."""
    script = ("import json, sys; from tests.test_compilation_counts import compilations_per_run; "
              f"print(json.dumps(compilations_per_run({adapter_name!r})))")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          cwd=CHECKOUT, env=dict(environment, CONFORMANCE_CACHE_DIR=str(cache_dir)))
    if "Skipped" in done.stderr:
        pytest.skip(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_flax_compiles_a_structure_once_and_again_for_other_sizes(tmp_path, monkeypatch):
    pytest.importorskip("flax.nnx")
    monkeypatch.setenv("CONFORMANCE_CACHE_DIR", str(tmp_path))  # a cache the machine may hold stays out
    first, same, other = compilations_per_run("flax")
    assert first >= 1
    assert same == 0
    assert other >= 1


@pytest.mark.slow
def test_keras_jax_compiles_a_structure_once_and_again_for_other_sizes(tmp_path):
    first, same, other = compilations_in_fresh_interpreter("keras-jax", tmp_path)
    assert first >= 1
    assert same == 0
    assert other >= 1


@pytest.mark.slow
@pytest.mark.parametrize("adapter_name", ["flax", "keras-jax"])
def test_a_second_process_reads_every_executable_from_the_persistent_cache(tmp_path, adapter_name):
    """JAX's persistent compilation cache under $CONFORMANCE_CACHE_DIR/jax: a warm run compiles nothing."""
    cold = compilations_in_fresh_interpreter(adapter_name, tmp_path)
    warm = compilations_in_fresh_interpreter(adapter_name, tmp_path)
    assert cold[0] >= 1 and warm == [0, 0, 0]
    assert any((tmp_path / "jax").iterdir())


def test_onnx_runtime_with_weights_as_inputs_loads_one_model_per_structure():
    """onnx-native feeds the weights: one export and one load for the structure, then none."""
    assert compilations_per_run("onnx-native") == [2, 0, 0]


def test_a_case_of_other_input_widths_gets_a_model_of_its_own():
    """Same spec and flags, 4 features instead of 3 (a same-size case after an initial-state one):
    reusing the model compiled for 3 features, onnxruntime refused W ("invalid dimensions")."""
    three, four = "lstm-seq1-state1-random-b3t5-initial_state", "lstm-seq1-state1-random-b4t4-same_sizes"
    assert _cases()[three].spec == _cases()[four].spec
    assert compilations_per_run("onnx-native", (three, four)) == [2, 2]
    adapter = load_adapter("onnx-native")
    outcomes = [check_case(adapter, _cases()[case_id], "cpu") for case_id in (three, four)]
    assert [o.status for o in outcomes] == ["pass", "pass"], [o.message for o in outcomes]


def test_eager_adapters_report_no_count():
    adapter = load_adapter("torch")
    if adapter.available():
        pytest.skip(adapter.available())
    adapter.run(_cases()[FIRST], "cpu")
    assert "compilations" not in adapter.last_run_info()


@pytest.mark.slow
def test_onnx_torch_exports_a_module_once(tmp_path):
    """torch.onnx.export keeps the time axis dynamic for a float32 LSTM: one export serves all three.
    In a fresh interpreter, as a run's adapter process is: torch state other tests of this worker left
    (Dynamo's caches and settings) once made the third case export again (a full suite run, 2026-12-07)."""
    assert compilations_in_fresh_interpreter("onnx-torch", tmp_path) == [1, 0, 0]


@pytest.mark.slow
def test_onnx_torch_reads_an_earlier_processes_export_from_the_disk_cache(tmp_path, monkeypatch):
    """The export kept on disk: a new adapter (as a new process would) exports nothing, and says so."""
    monkeypatch.setenv("CONFORMANCE_CACHE_DIR", str(tmp_path))
    assert compilations_per_run("onnx-torch", (FIRST,)) == [1]
    adapter = load_adapter("onnx-torch")
    outputs = adapter.run(_cases()[FIRST], "cpu")
    assert adapter.last_run_info()["compilations"] == 0
    assert adapter.last_run_info()["export"] == "read from disk cache"
    fresh = load_adapter("onnx-torch")
    fresh.export_cache = False  # no cache at all: a real export, the same answer
    assert [a.tolist() for a in fresh.run(_cases()[FIRST], "cpu")] == [a.tolist() for a in outputs]
    assert fresh.last_run_info()["compilations"] == 1
