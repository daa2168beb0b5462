"""``conformance repro``: a standalone script that reproduces one ONNX adapter's result, run in a fresh
interpreter from its own directory, as a vendor would run what is attached to a bug report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.adapters.onnx.native import OnnxNativeAdapter
from tests.commandline import CONSOLE_SCRIPT, one_line_error

pytest.importorskip("onnxruntime")

# A known onnxruntime difference (known_differences.txt): sequence_lens=0 gives a zero state.
DIFFERING = "lstm-seq0-state1-random-b3t5-mask_empty_row[onnx-native-cpu-float32]"
PASSING = "lstm-seq1-state0-random-b3t5[onnx-native-cpu-float32]"
UNSEEN = "gru-seq1-state1-constant-b1t3-unseen1-0-plain[onnx-native-cpu-float32]"  # case 0 of seed 1


def repro(test_id: str, directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONSOLE_SCRIPT), "repro", test_id, "-o", str(directory)],
                          capture_output=True, text=True, timeout=900)  # a hang's safety net, not a measure


def run_script(directory: Path) -> subprocess.CompletedProcess:
    """repro.py alone: copied elsewhere, run with -I so nothing of this checkout is importable."""
    return subprocess.run([sys.executable, "-I", "repro.py"], cwd=directory, capture_output=True, text=True,
                          timeout=300)


def test_a_known_difference_gives_a_script_that_exits_1_and_prints_the_error(tmp_path):
    result = repro(DIFFERING, tmp_path / "bug")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "bug").iterdir()) == ["expected.npz", "inputs.npz", "model.onnx",
                                                                    "repro.py"]
    ran = run_script(tmp_path / "bug")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "h: expected" in ran.stdout and "values outside atol=1e-05" in ran.stdout
    assert "DIFFERENT from the expected outputs" in ran.stdout


def test_a_passing_result_gives_a_script_that_exits_0(tmp_path):
    assert repro(PASSING, tmp_path).returncode == 0
    ran = run_script(tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "within tolerance" in ran.stdout


def test_a_float16_row_reproduces_in_float16(tmp_path):
    done = repro("lstm-seq1-state1-random-b3t5-reduced_precision[onnx-native-cpu-float16]", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    ran = run_script(tmp_path)
    assert ran.returncode == 0 and "(float16)" in ran.stdout and "within tolerance" in ran.stdout, ran.stdout


def test_the_script_header_describes_the_case_and_the_runtime(tmp_path):
    import onnxruntime

    from conformance.fixtures import load_cases

    assert repro(PASSING, tmp_path).returncode == 0
    header = (tmp_path / "repro.py").read_text().split('"""')[1]
    case = next(c for c in load_cases() if c.id == PASSING.split("[")[0])
    assert PASSING in header and case.describe() in header
    assert f"onnxruntime {onnxruntime.__version__}" in header


def test_an_adapter_without_a_runner_gets_a_script_that_says_so(tmp_path):
    path = "tests.test_repro:RunnerlessOnnxAdapter"
    result = subprocess.run([str(CONSOLE_SCRIPT), "repro", f"{PASSING.split('[')[0]}[{path}-cpu-float32]", "-o",
                             str(tmp_path)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert result.returncode == 0, result.stderr
    ran = run_script(tmp_path)
    assert ran.returncode == 2 and ran.stdout == ""
    assert len(ran.stderr.splitlines()) == 1 and "has no repro_runner: fill in run_model" in ran.stderr


def test_a_third_party_result_reproduces_from_the_test_id_run_printed_with_its_class(tmp_path):
    """run prints ``case[runnerless-onnx-cpu-float32]`` (the adapter's name); --adapter names the class."""
    test_id = f"{PASSING.split('[')[0]}[runnerless-onnx-cpu-float32]"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    refused = subprocess.run([str(CONSOLE_SCRIPT), "repro", test_id, "-o", str(tmp_path / "a")], capture_output=True,
                             text=True, timeout=300, env=env)
    assert "for a third-party adapter give its class, --adapter package.module:Class" in one_line_error(refused)
    done = subprocess.run([str(CONSOLE_SCRIPT), "repro", test_id, "-o", str(tmp_path / "b"), "--adapter",
                           "tests.test_repro:RunnerlessOnnxAdapter"], capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "b" / "model.onnx").is_file() and test_id in (tmp_path / "b" / "repro.py").read_text()


def test_an_unseen_case_is_drawn_again_from_its_id_and_answered_by_the_float64_oracle(tmp_path):
    """An unseen case is in no fixture: its id's seed and index draw it again, and the expected outputs
    are the float64 oracle's, the answer the run judged it by."""
    import numpy as np

    from conformance.matrix.unseen import unseen_case
    from conformance.reference import answered

    done = repro(UNSEEN, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    case = answered(unseen_case(1, 0))
    expected = np.load(tmp_path / "expected.npz")
    assert all(np.array_equal(expected[name], want) for name, want in zip(case.output_names, case.expected))
    ran = run_script(tmp_path)
    assert ran.returncode == 0 and "within tolerance" in ran.stdout, ran.stdout + ran.stderr


@pytest.mark.parametrize("test_id, message", [
    ("no-such-case[onnx-native-cpu-float32]", "unknown case 'no-such-case'"),
    ("lstm-seq1-state0-random-b3t5[no-such-adapter-cpu-float32]", "unknown adapter 'no-such-adapter'"),
    ("simple_rnn-seq0-state0-random-b3t5-stacked[flax-cpu-float32]", "repro builds single-layer cases only"),
    ("gru-seq0-state0-random-b3t5-zero_output_for_mask[torch-cpu-float32]", "repro packs unmasked cases only"),
    ("simple_rnn-seq0-state0-random-b3t5-stacked[torch-cpu-float32]", "repro packs single-call cases only"),
    ("lstm-seq1-state0-random-b3t5", "is not a conformance test id"),
    ("gru-seq1-state1-constant-b1t3-unseen1-1-plain[onnx-native-cpu-float32]",
     "the unseen case of its seed and index has another id"),
])
def test_bad_test_ids_are_one_line_and_write_nothing(tmp_path, test_id, message):
    assert message in one_line_error(repro(test_id, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


class RunnerlessOnnxAdapter(OnnxNativeAdapter):
    """onnx-native without its repro_runner: a vendor's adapter before it adds one."""

    name = "runnerless-onnx"
    repro_runner = None


# One real finding per ONNX runtime (FINDINGS.md 8, 10, 11) and two of the Keras rows (Keras 3 drops a
# Masking layer's mask beside initial_state; tf_keras's "hard_sigmoid" is the legacy one), each reproduced
# by its standalone script: the ONNX model, or the saved model.keras loaded by that Keras alone.
FINDING_PER_RUNTIME = [
    ("onnxruntime", DIFFERING),
    ("openvino", "simple_rnn-seq0-state1-random-b3t5-mask_right[openvino-cpu-float32]"),
    ("tract", "simple_rnn-seq1-state0-per_gate-b3t5-go_backwards[tract-cpu-float32]"),
    ("tract", "simple_rnn-seq1-state0-random-b3t5-relu[tract-inputs-cpu-float32]"),
    ("keras", "gru-seq0-state1-random-b3t5-masking_holes[keras-tensorflow-cpu-float32]"),
    ("tf_keras", "gru-seq1-state0-random-b3t5-hard_sigmoid[tf-keras-cpu-float32]"),
]


@pytest.mark.parametrize("runtime, test_id", FINDING_PER_RUNTIME)
def test_a_finding_of_each_runtime_reproduces_as_a_standalone_script(tmp_path, runtime, test_id):
    pytest.importorskip(runtime)
    assert repro(test_id, tmp_path).returncode == 0
    ran = run_script(tmp_path)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "DIFFERENT from the expected outputs" in ran.stdout


# One result per row with a reproducer beyond the ONNX ones (the deployment rows and native torch), each
# reproduced by its standalone script (the model files it converted, or none where the script builds and
# runs or compiles the module itself), exit 0 while within tolerance.
REPRODUCED_ROWS = [
    ("openvino", "gru-seq1-state1-random-b3t5[openvino-torch-cpu-float32]", ("model.xml", "model.bin")),
    ("openvino", "gru-seq1-state1-random-b3t5[openvino-keras-cpu-float32]", ("model.xml", "model.bin")),
    ("executorch", "lstm-seq1-state0-random-b3t5[executorch-cpu-float32]", ("model.pte",)),
    ("torch", "gru-seq1-state1-random-b3t5[torch-compile-cpu-float32]", ()),
    ("torch", "lstm-seq1-state1-random-b3t5-go_backwards_initial_state[torch-cpu-float32]", ()),
    ("ai_edge_litert", "gru-seq1-state1-random-b3t5[litert-keras-cpu-float32]", ("model.tflite",)),
    ("ai_edge_litert", "lstm-seq1-state1-random-b3t5-go_backwards_initial_state[litert-tf-keras-cpu-float32]",
     ("model.tflite",)),
    ("keras", "lstm-seq1-state1-random-b3t5-go_backwards_initial_state[keras-tensorflow-cpu-float32]",
     ("model.keras",)),
    ("keras", "gru-seq0-state1-random-b3t5-stateful_reset[keras-jax-cpu-float32]", ("model.keras",)),
    ("keras", "gru-seq1-state1-random-b3t5[keras-torch-cpu-float32]", ("model.keras",)),
    ("tf_keras", "gru-seq0-state1-random-b3t5-stateful[tf-keras-cpu-float32]", ("model.keras",)),
    ("flax", "lstm-seq1-state1-random-b3t5-go_backwards_initial_state[flax-cpu-float32]", ()),
    ("flax", "lstm-seq1-state1-random-b3t5-reduced_precision[flax-cpu-bfloat16]", ()),
]


@pytest.mark.parametrize("module, test_id, model_files", REPRODUCED_ROWS)
def test_a_result_of_each_row_with_a_reproducer_reproduces_standalone(tmp_path, module, test_id, model_files):
    pytest.importorskip(module)
    done = repro(test_id, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    expected_files = {"expected.npz", "inputs.npz", "repro.py", *model_files}
    assert {p.name for p in tmp_path.iterdir()} == expected_files
    ran = run_script(tmp_path)
    assert ran.returncode == 0 and "within tolerance" in ran.stdout, ran.stdout + ran.stderr


def test_the_litert_fused_lstm_finding_reproduces_as_a_standalone_script(tmp_path):
    """FINDINGS.md 21: the script invokes the .tflite twice, as the row does; the second answer differs."""
    pytest.importorskip("ai_edge_litert")
    done = repro("lstm-seq1-state0-per_gate-b2t5[litert-tf-keras-cpu-float32]", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    ran = run_script(tmp_path)
    assert ran.returncode == 1 and "DIFFERENT from the expected outputs" in ran.stdout, ran.stdout + ran.stderr

