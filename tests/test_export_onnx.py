"""``conformance export onnx``: the backend-test layout that onnx's own runner consumes, and every
exported case checked against onnx's ReferenceEvaluator and the expected outputs.

onnx's ReferenceEvaluator (onnx 1.23, onnx/reference/ops/op_lstm.py, op_gru.py,
op_rnn.py) ignores parts of the RNN / GRU / LSTM specification: LSTM and GRU
take ``activations``, ``activation_alpha``, ``activation_beta``, ``clip`` and
``sequence_lens`` as unused arguments (``# noqa: ARG002``) and compute with the
default sigmoid / tanh over all T steps; RNN honours ``activations`` but knows
only Tanh and Affine ("Unknown activation function 'Relu'") and ignores
``sequence_lens`` too. ``evaluator_blind_spot`` names, from each model's own
nodes, the cases whose outputs depend on what it ignores; the test requires
exactly those to differ and every other case to match.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import subprocess
import unittest
from pathlib import Path

import numpy as np
import pytest

from tests.commandline import CONSOLE_SCRIPT, one_line_error, snapshot

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SELECTION = "tutorial or b3t5"
DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
RNN_ACTIVATIONS = {"Tanh", "Affine"}  # the only ones op_rnn.py's choose_act knows
RUNNER_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "onnx_backend_runner.py"


def runner_example():
    """``examples/onnx_backend_runner.py``, the file the docs show, imported as pytest imports a
    user's test file (without ``EXPORT_DIR``, so it defines its Runner without building one)."""
    spec = importlib.util.spec_from_file_location("onnx_backend_runner", RUNNER_EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONSOLE_SCRIPT), "export", "onnx", *map(str, arguments)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def selection(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("export") / "onnx-cases"
    result = export(directory, "-k", SELECTION)
    assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture(scope="module")
def whole_matrix(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("export") / "all"
    result = export(directory)
    assert result.returncode == 0, result.stderr
    return directory


def index_of(directory: Path) -> dict:
    return json.loads((directory / "index.json").read_text())


def tensors(test_dir: Path, kind: str) -> list:
    import onnx

    files = sorted((test_dir / "test_data_set_0").glob(f"{kind}_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
    return [onnx.load_tensor(str(path)) for path in files]


# --- the layout ------------------------------------------------------------------------------

def test_the_index_lists_every_selected_case_with_its_tolerance(selection):
    from conformance.fixtures import load_cases

    index = index_of(selection)
    cases = {case.id: case for case in load_cases() if "tutorial" in case.id or "b3t5" in case.id}
    listed = {(e["case_id"], e["dtype"], e["weights"]) for e in index["tests"] + index["skipped"]}
    assert listed == {(case.id, dtype, weights) for case in cases.values() for dtype in case.dtypes
                      for weights in ("initializers", "inputs")}
    for entry in index["tests"]:
        tolerance = cases[entry["case_id"]].tolerance(entry["dtype"])
        assert (entry["atol"], entry["rtol"]) == (tolerance.atol, tolerance.rtol)
        assert json.loads((selection / entry["dir"] / "data.json").read_text()) == {"atol": entry["atol"],
                                                                                   "rtol": entry["rtol"]}
    assert index["fixtures_sha256"] and index["suite_version"]


def test_cases_onnx_cannot_express_are_listed_as_skipped_with_the_reason_and_not_written(selection):
    from conformance.fixtures import load_cases
    from conformance.onnx import not_expressible

    skipped = index_of(selection)["skipped"]
    reasons = {e["reason"] for e in skipped}
    assert any("mask has masked steps before real ones" in reason for reason in reasons)
    assert any("have no such attribute" in reason for reason in reasons)  # unroll, dropout
    assert not any((selection / e["weights"] / e["test"]).exists() for e in skipped)
    cases = {case.id: case for case in load_cases()}
    assert all(not_expressible(cases[e["case_id"]].for_dtype(e["dtype"])) == e["reason"] for e in skipped)


def test_data_files_are_named_and_ordered_as_the_graph_inputs_and_outputs(selection):
    import onnx

    from conformance.fixtures import load_cases

    cases = {case.id: case for case in load_cases()}
    for entry in index_of(selection)["tests"][::25]:
        test_dir = selection / entry["dir"]
        model = onnx.load(str(test_dir / "model.onnx"))
        inputs, outputs = tensors(test_dir, "input"), tensors(test_dir, "output")
        assert [t.name for t in inputs] == [v.name for v in model.graph.input] == entry["inputs"]
        assert [t.name for t in outputs] == [v.name for v in model.graph.output] == entry["outputs"]
        expected = cases[entry["case_id"]].expected
        for tensor, want in zip(outputs, expected):
            np.testing.assert_array_equal(onnx.numpy_helper.to_array(tensor), want.astype(entry["dtype"]))
        weights_fed = any(v.name.endswith(".W") for v in model.graph.input)
        assert weights_fed == (entry["weights"] == "inputs")


def test_onnx_loader_reads_each_placement_with_the_index_tolerances(selection):
    from onnx.backend.test.loader import load_model_tests

    index = index_of(selection)
    for placement in ("initializers", "inputs"):
        loaded = {t.name: (t.atol, t.rtol) for t in load_model_tests(data_dir=str(selection), kind=placement)}
        assert loaded == {e["test"]: (e["atol"], e["rtol"]) for e in index["tests"] if e["weights"] == placement}


# --- onnx's Runner on onnxruntime ------------------------------------------------------------

def known_onnx_native_differences(index: dict) -> dict[str, str]:
    """Runner test name -> the reason from the suite's known-differences list for onnx-native."""
    from conformance.results.records import test_id
    from conformance.verdict.known_differences import known_difference_files, load_known_differences

    known = load_known_differences(known_difference_files([], True))
    reasons = {f"{e['test']}_cpu": known.reason_for(test_id(e["case_id"], "onnx-native", "cpu", e["dtype"]))
               for e in index["tests"]}
    return {name: reason for name, reason in reasons.items() if reason}


# onnxruntime 1.32's backend module imports onnx.version, which onnx 1.23 deprecates on import.
@pytest.mark.filterwarnings("ignore:onnx.version is deprecated:DeprecationWarning")
def test_the_runner_example_runs_the_export_on_onnxruntime(selection, monkeypatch):
    """The docs' example, as it is: onnx's Runner on onnxruntime over the export, each known
    difference of onnx-native an expected failure and every other test a pass."""
    from onnx.backend.test import runner as onnx_runner

    # Without onnx's own ~1,700 node tests (slow to generate, and they warn): only the export's.
    monkeypatch.setattr(onnx_runner, "load_model_tests", lambda data_dir=None, kind=None: [])
    runner = runner_example().backend_test(str(selection))
    runner.exclude(r"_cuda$")  # the CPU rows: known_differences names onnx-native's cpu ids
    known = known_onnx_native_differences(index_of(selection))
    ours = [runner.test_cases[f"OnnxBackend{p.title()}ModelTest"] for p in ("initializers", "inputs")]
    suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(case) for case in ours)
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)

    assert not result.failures and not result.errors, (result.failures + result.errors)[:3]
    assert not result.unexpectedSuccesses, result.unexpectedSuccesses[:3]
    tests = index_of(selection)["tests"]
    assert result.testsRun - len(result.skipped) == len(tests)  # each test on the CPU, its cuda twin excluded
    assert len(result.expectedFailures) == sum(f"{e['test']}_cpu" in known for e in tests) > 0


def test_the_runner_example_expects_exactly_the_known_onnxruntime_differences(selection):
    patterns = [re.compile(p) for p in runner_example().ONNXRUNTIME_DIFFERENCES]
    names = [f"{e['test']}_cpu" for e in index_of(selection)["tests"]]
    assert patterns and {n for n in names if any(p.search(n) for p in patterns)} == set(
        known_onnx_native_differences(index_of(selection)))


# --- every case on onnx's ReferenceEvaluator -------------------------------------------------

def tensors_reaching_outputs(model) -> set[str]:
    """The tensors some graph output depends on (the graph computes every final state, uses few)."""
    live = {output.name for output in model.graph.output}
    for node in reversed(model.graph.node):  # nodes are in topological order
        if live & set(node.output):
            live |= set(node.input)
    return live


def evaluator_blind_spot(model, feeds: dict[str, np.ndarray]) -> str | None:
    """What of this model's nodes onnx's ReferenceEvaluator ignores, where the outputs depend on it."""
    consumed = tensors_reaching_outputs(model)
    for node in model.graph.node:
        if node.op_type not in ("RNN", "GRU", "LSTM"):
            continue
        attributes = {a.name: a for a in node.attribute}
        activations = [s.decode() for s in attributes["activations"].strings] if "activations" in attributes else []
        direction = attributes["direction"].s.decode() if "direction" in attributes else "forward"
        default = DEFAULT_ACTIVATIONS.get(node.op_type)
        if default and activations and activations != default * (2 if direction == "bidirectional" else 1):
            return f"{node.op_type}: activations {activations} ignored (computes {default})"
        if node.op_type == "RNN" and set(activations) - RNN_ACTIVATIONS:
            return f"RNN: activations {sorted(set(activations) - RNN_ACTIVATIONS)} unknown to it"
        lengths = node.input[4] if len(node.input) > 4 else ""
        steps = feeds["x"].shape[1] if "decoder" not in node.input[0] else feeds["decoder_x"].shape[1]
        if lengths and feeds[lengths].min() < steps:
            if direction != "forward":
                return f"{node.op_type}: sequence_lens ignored by a {direction} op"
            if any(state in consumed for state in node.output[1:]):
                return f"{node.op_type}: sequence_lens ignored, so its final states are the last step's"
    return None


# The evaluator computes a float16 model in numpy float16, where its sigmoid's exp(-x) overflows
# to inf for large -x (the sigmoid is then 0, as it should be): a warning, not a wrong value.
@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
@pytest.mark.parametrize("weights", ["initializers", "inputs"])
def test_every_exported_case_matches_onnx_reference_evaluator_except_its_blind_spots(whole_matrix, weights):
    import onnx
    from onnx.reference import ReferenceEvaluator

    from conformance.fixtures import load_cases

    cases = {case.id: case for case in load_cases()}
    entries = [e for e in index_of(whole_matrix)["tests"] if e["weights"] == weights]
    assert len(entries) == sum(len(c.dtypes) for c in cases.values()) - len(
        [e for e in index_of(whole_matrix)["skipped"] if e["weights"] == weights])
    blind, wrong = {}, []
    for entry in entries:
        test_dir = whole_matrix / entry["dir"]
        model = onnx.load(str(test_dir / "model.onnx"))
        feeds = {t.name: onnx.numpy_helper.to_array(t) for t in tensors(test_dir, "input")}
        reason = evaluator_blind_spot(model, feeds)
        try:
            outputs = ReferenceEvaluator(model).run(None, feeds)
            matches = all(np.allclose(got, want, atol=entry["atol"], rtol=entry["rtol"]) and got.shape == want.shape
                          for got, want in zip(outputs, cases[entry["case_id"]].expected))
        except RuntimeError as exc:
            matches = False
            reason = reason and f"{reason} ({exc})"
        if reason:
            blind[entry["test"]] = (reason, matches)
        elif not matches:
            wrong.append(entry["test"])
    assert not wrong, wrong[:5]
    assert blind and not [name for name, (_, matches) in blind.items() if matches], \
        "a case named as the evaluator's blind spot matched: the exclusion is wider than the finding"
    print(f"{len(entries) - len(blind)} {weights} cases match the evaluator; {len(blind)} excluded: "
          f"{sorted({reason.split(' (')[0] for reason, _ in blind.values()})}")


# --- bad input -------------------------------------------------------------------------------

def test_an_existing_file_as_dir_is_one_line(tmp_path):
    target = tmp_path / "file"
    target.write_text("mine")
    assert "exists and is not a directory" in one_line_error(export(target))
    assert target.read_text() == "mine"


def test_a_directory_that_is_no_export_of_ours_is_refused_untouched(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    assert "not an earlier 'conformance export onnx'" in one_line_error(export(tmp_path, "-k", "tutorial"))
    assert snapshot(tmp_path) == before


def test_an_earlier_export_is_replaced_whole(tmp_path):
    target = tmp_path / "cases"
    assert export(target, "-k", "tutorial").returncode == 0
    (target / "stale.txt").write_text("from before")
    result = export(target, "-k", "lstm-seq0-state0-constant-b1t3-tutorial", "--weights", "inputs",
                    "--dtype", "float32")
    assert result.returncode == 0, result.stderr
    assert [e["test"] for e in index_of(target)["tests"]] == ["test_lstm_seq0_state0_constant_b1t3_tutorial_float32"]
    assert sorted(p.name for p in target.iterdir()) == ["index.json", "inputs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases"]  # nothing left beside it


@pytest.mark.parametrize("arguments, message", [
    (["--weights", "constants"], "invalid choice: 'constants'"),
    (["--dtype", "float8"], "invalid choice: 'float8'"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["-k", "lstm and ("], "bad -k expression"),
    (["-k", "lstm(x=1)"], "do not support call parameters"),
])
def test_bad_options_are_one_line_and_write_nothing(tmp_path, arguments, message):
    assert message in one_line_error(export(tmp_path / "out", *arguments))
    assert not (tmp_path / "out").exists()
