"""``explain``: the output list and every framework's spelling of it, no framework imported."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conformance.commands.explain import explain
from conformance.matrix.spec import CELLS, LayerSpec
from tests.commandline import CONSOLE_SCRIPT, one_line_error
from tests.faulty_adapters import FaultyAdapter, _map_layers, _permute_gates

FLAGS = ((False, False), (True, False), (False, True), (True, True))


def keras_table(text: str) -> list[list[str]]:
    """The rows of the 'Keras output' table: [index, name, shape]."""
    block = text.split("Keras output:", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    rows = []
    for line in block:
        index, name, rest = line.split(maxsplit=2)
        rows.append([index, name, rest.split(")")[0] + ")"])
    return rows


def spelling_table(text: str) -> dict[str, dict[str, str]]:
    """The 'framework by framework' table as {Keras name: {column title: spelling}}."""
    block = text.split("framework by framework\n", 1)[1].split("\n\n", 1)[0].splitlines()
    header, *rows = [re.split(r"\s{2,}", line.strip()) for line in block]
    return {row[0]: dict(zip(header, row)) for row in rows}


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("seq, state", FLAGS, ids=[f"seq{int(s)}-state{int(t)}" for s, t in FLAGS])
def test_names_follow_the_spec(cell: str, seq: bool, state: bool) -> None:
    names = LayerSpec(cell, 4, return_sequences=seq, return_state=state).output_names()
    assert [row[1] for row in keras_table(explain(cell, seq, state))] == names


def test_lstm_with_sequences_and_state_lists_three_tensors() -> None:
    text = explain("lstm", True, True)
    assert keras_table(text) == [["0", "output", "(2, 5, 4)"], ["1", "h", "(2, 4)"], ["2", "c", "(2, 4)"]]
    assert "output, h, c = keras.layers.LSTM(4, return_sequences=True, return_state=True)(x)" in text
    assert "output, (h_n, c_n) = torch.nn.LSTM(3, 4, batch_first=True)(x)" in text


def test_torch_states_have_a_leading_layers_times_directions_axis() -> None:
    text = explain("lstm", True, True)
    assert "h_n (1, 2, 4), c_n (1, 2, 4)" in text
    assert spelling_table(text)["h"]["torch (batch_first=True)"] == "h_n[0]"
    assert spelling_table(text)["c"]["torch (batch_first=True)"] == "c_n[0]"


def test_onnx_y_is_time_major_with_a_directions_axis() -> None:
    text = explain("gru", True, False, batch=2, timesteps=5, units=4)
    assert "Y (5, 1, 2, 4) = (timesteps, num_directions, batch, units)" in text
    assert spelling_table(text)["output"]["onnx (layout=0)"] == "Y[:, 0].transpose(1, 0, 2)"


def test_flax_lstm_carry_is_c_first() -> None:
    text = explain("lstm", False, True)
    table = spelling_table(text)
    assert table["h"]["flax nnx.RNN"] == "carry[1]" and table["c"]["flax nnx.RNN"] == "carry[0]"
    assert "carry (c, h)" in text


def test_gru_has_no_cell_state_anywhere() -> None:
    text = explain("gru", False, True)
    assert [row[1] for row in keras_table(text)] == ["output", "h"]
    assert "c_n" not in text.split("Notes", 1)[0] and "Y_c" not in text.split("Notes", 1)[0]


def test_no_state_is_one_tensor_not_a_list() -> None:
    text = explain("simple_rnn", False, False)
    assert "Keras output: one tensor (not a list)" in text
    assert "output = keras.layers.SimpleRNN(4)(x)" in text


def test_shapes_follow_the_arguments() -> None:
    text = explain("lstm", True, True, batch=7, timesteps=11, features=6, units=9)
    assert keras_table(text)[0] == ["0", "output", "(7, 11, 9)"]
    assert "torch.nn.LSTM(6, 9, batch_first=True)" in text
    assert "Y (11, 1, 7, 9)" in text


@pytest.mark.parametrize("arguments, field", [(("rnn", True, True), "cell"),
                                              (("lstm", True, True, 0), "batch")])
def test_bad_arguments_raise_naming_the_field(arguments: tuple, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        explain(*arguments)


def test_no_framework_is_imported() -> None:
    code = ("import sys; from conformance.commands.explain import explain; explain('lstm', True, True); "
            "print(sorted({'torch', 'tensorflow', 'jax', 'flax', 'onnx', 'keras'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --- explain TEST_ID: a newcomer's port, diagnosed ----------------------------------------------


class LstmGatesIAndFSwapped(FaultyAdapter):
    """A newcomer's LSTM port with two gates swapped: Keras's i, f, c, o read as f, i, c, o."""

    name, fault = "my-lstm-port", "LSTM gates i and f swapped"

    def corrupt_case(self, case):
        if case.cell != "lstm":
            return case
        return _map_layers(case, lambda layer, w: _permute_gates(w, [1, 0, 2, 3]))


def command(*args, cwd) -> subprocess.CompletedProcess:
    import os
    from pathlib import Path

    return subprocess.run([str(CONSOLE_SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=600,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})


def test_a_swapped_gates_port_is_told_its_gates_i_and_f_are_swapped(tmp_path):
    run = command("run", "--adapter", "tests.test_explain:LstmGatesIAndFSwapped", "-k", "lstm-seq1 and random",
                  "--dtype", "float32", "--device", "cpu", "--report-dir", "reports", cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    assert "diagnosis: matches Keras with the LSTM gates i and f swapped (max error " in run.stdout
    import json

    document = json.loads((tmp_path / "reports" / "results.json").read_text())
    failing = [r for r in document["results"] if r["status"] == "fail"]
    assert failing and all(r["diagnosis"].startswith("matches Keras with the LSTM gates i and f swapped")
                           for r in failing)
    assert "diagnosis: matches Keras with the LSTM gates i and f swapped" in (
        tmp_path / "reports" / "index.html").read_text()
    explained = command("explain", failing[0]["test_id"], cwd=tmp_path)
    assert explained.returncode == 0, explained.stderr
    assert explained.stdout.startswith(f"{failing[0]['test_id']}: fail\n")
    assert "  diagnosis: matches Keras with the LSTM gates i and f swapped (max error " in explained.stdout


def test_explain_of_a_result_the_run_does_not_hold_is_one_line(tmp_path):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "results.json").write_text('{"schema": "rnn-conformance/results/1", "results": []}')
    line = one_line_error(command("explain", "lstm-seq1-state0-random-b3t5[torch-cpu-float32]", cwd=tmp_path))
    assert "not a result of the run in reports" in line
