"""``conformance explain``: the output list of a layer, and how each framework spells it; or
what one result of a run was, with its diagnosis (``explain_result``).

    >>> print(explain("lstm", return_sequences=True, return_state=True))

The names and shapes come from ``conformance.matrix.spec.LayerSpec`` (the Keras list
is the reference). How PyTorch, ONNX and Flax return the same tensors is kept
below as small tables, taken from SEMANTICS.md §4; they are claims checked by
the adapters' tests against the real frameworks: correct the table, not the
code, if a framework disagrees. Nothing here imports a framework.
"""

from __future__ import annotations

import textwrap

from conformance.matrix.spec import LayerSpec

# --- what each framework calls the layer and what a call returns ------------------------------

TORCH_CLASS = {"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
TORCH_RETURNS = {"simple_rnn": "output, h_n", "lstm": "output, (h_n, c_n)", "gru": "output, h_n"}
TORCH_STATES = {"simple_rnn": ("h_n",), "lstm": ("h_n", "c_n"), "gru": ("h_n",)}
ONNX_OP = {"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
ONNX_RETURNS = {"simple_rnn": "Y, Y_h", "lstm": "Y, Y_h, Y_c", "gru": "Y, Y_h"}
ONNX_STATES = {"simple_rnn": ("Y_h",), "lstm": ("Y_h", "Y_c"), "gru": ("Y_h",)}
FLAX_CELL = {"simple_rnn": "SimpleCell", "lstm": "LSTMCell", "gru": "GRUCell"}
FLAX_CARRY = {"simple_rnn": "h", "lstm": "(c, h)", "gru": "h"}  # LSTMCell's carry is (c, h): c first

# --- where Keras's tensors are in each framework's return value -------------------------------
# Keys: "sequence" / "last" for Keras's output with / without return_sequences, then the
# state names. A dict value depends on the cell. "last" is spelled through the final state,
# which stays right with padding (torch packed sequences and ONNX sequence_lens zero the
# padded outputs; Flax's carry is taken at the last valid step).

SPELLING: dict[str, dict[str, str | dict[str, str]]] = {
    "keras": {"sequence": "output", "last": "output", "h": "h", "c": "c"},
    "torch": {"sequence": "output", "last": "h_n[0]", "h": "h_n[0]", "c": "c_n[0]"},
    "onnx": {"sequence": "Y[:, 0].transpose(1, 0, 2)", "last": "Y_h[0]", "h": "Y_h[0]", "c": "Y_c[0]"},
    "flax": {"sequence": "outputs", "last": {"lstm": "carry[1]", "*": "carry"},
             "h": {"lstm": "carry[1]", "*": "carry"}, "c": "carry[0]"},
}
FRAMEWORK_TITLES = {"keras": "keras / tf_keras", "torch": "torch (batch_first=True)",
                    "onnx": "onnx (layout=0)", "flax": "flax nnx.RNN"}

MEANING = {"sequence": "h_t at every step (the whole sequence)",
           "last": "the last step's output y_T (equal to h_T)",
           "h": "the final hidden state h_T", "c": "the final cell state c_T"}

LAST_STEP_NOTE = (
    "Without return_sequences Keras's output is the last step's: torch output[:, -1], ONNX Y[-1, 0] "
    "and Flax outputs[:, -1] hold it too when no step is padded; the final-state spellings above "
    "stay right with padding.")
NOTES = (
    ("torch returns output and the final states whatever the flags; Keras's flags only choose "
     "which of them are in the list."),
    ("torch h_n / c_n lead with num_layers*num_directions; for a stack the last layer is h_n[-1], "
     "and with bidirectional=True h_n.view(num_layers, 2, batch, units)[-1] holds [forward, backward]."),
    ("ONNX direction='bidirectional' puts [forward, reverse] on the num_directions axis (2) of Y, "
     "Y_h and Y_c; onnxruntime rejects layout=1 (batch-major), so X and Y are time-major."),
    ("Keras's Bidirectional list is [output, forward states..., backward states...] "
     "(LSTM: [output, h_fw, c_fw, h_bw, c_bw])."),
    "tf_keras (Keras 2) returns the same list as Keras 3.",
)


def _spelling(framework: str, key: str, cell: str) -> str:
    value = SPELLING[framework][key]
    return value if isinstance(value, str) else value.get(cell, value["*"])


def _shape(*sizes: int) -> str:
    return "(" + ", ".join(str(n) for n in sizes) + ")"


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _calls(spec: LayerSpec, features: int, timesteps: int, batch: int) -> list[list[str]]:
    cell, units = spec.cell, spec.units
    keras_args = spec.describe().split("(", 1)[1][:-1]
    unpacked = ", ".join(spec.output_names())
    return [
        ["keras", f"{unpacked} = keras.layers.{spec.keras_class}({keras_args})(x)"],
        ["tf_keras", f"{unpacked} = tf_keras.layers.{spec.keras_class}({keras_args})(x)"],
        ["torch", f"{TORCH_RETURNS[cell]} = torch.nn.{TORCH_CLASS[cell]}({features}, {units}, batch_first=True)(x)"],
        ["onnx", (f"{ONNX_RETURNS[cell]} = {ONNX_OP[cell]}(X, W, R, B, hidden_size={units}) "
                  f"with X time-major {_shape(timesteps, batch, features)}")],
        ["flax", (f"carry, outputs = nnx.RNN(nnx.{FLAX_CELL[cell]}({features}, {units}, rngs=rngs), "
                  f"return_carry=True)(x)")],
    ]


def _native_shapes(cell: str, batch: int, timesteps: int, units: int) -> list[list[str]]:
    state = _shape(batch, units)
    torch_states = ", ".join(f"{n} {_shape(1, batch, units)}" for n in TORCH_STATES[cell])
    onnx_states = ", ".join(f"{n} {_shape(1, batch, units)}" for n in ONNX_STATES[cell])
    carry = f"carry (c, h), each {state}: c first, unlike Keras's [h, c]" if cell == "lstm" \
        else f"carry h {state}"
    return [
        ["torch", (f"output {_shape(batch, timesteps, units)}; {torch_states} "
                   "(leading axis num_layers*num_directions = 1)")],
        ["onnx", (f"Y {_shape(timesteps, 1, batch, units)} = (timesteps, num_directions, batch, units); "
                  f"{onnx_states} = (num_directions, batch, units)")],
        ["flax", f"outputs {_shape(batch, timesteps, units)}; {carry}"],
    ]


def explain(cell: str, return_sequences: bool, return_state: bool, batch: int = 2, timesteps: int = 5,
            features: int = 3, units: int = 4) -> str:
    """The output list of ``cell`` with these flags, its shapes, and every framework's spelling."""
    for name, value in (("batch", batch), ("timesteps", timesteps), ("features", features)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r} is not allowed; expected a positive int")
    spec = LayerSpec(cell, units, return_sequences=return_sequences, return_state=return_state)
    output_key = "sequence" if return_sequences else "last"
    keys = [output_key, *(spec.state_names if return_state else ())]
    shapes = [_shape(batch, timesteps, units) if return_sequences else _shape(batch, units)]
    shapes += [_shape(batch, units)] * (len(keys) - 1)
    names = spec.output_names()

    kind = f"a list of {len(names)} tensors" if return_state else "one tensor (not a list)"
    lines = [f"{spec.describe()} on x of shape (batch={batch}, timesteps={timesteps}, features={features})",
             "", f"Keras output: {kind}"]
    lines += _table([["#", "name", "shape", "what it is"]]
                    + [[str(n), name, shape, MEANING[key]] for n, (name, shape, key) in
                       enumerate(zip(names, shapes, keys))])
    lines += ["", "The calls"]
    lines += _table(_calls(spec, features, timesteps, batch))
    lines += ["", "The same tensors, framework by framework"]
    header = ["Keras", "shape", *FRAMEWORK_TITLES.values()]
    lines += _table([header] + [[name, shape, *(_spelling(f, key, cell) for f in SPELLING)]
                                for name, shape, key in zip(names, shapes, keys)])
    lines += ["", "Native shapes"]
    lines += _table(_native_shapes(cell, batch, timesteps, units))
    notes = NOTES if return_sequences else (LAST_STEP_NOTE, *NOTES)
    lines += ["", "Notes"]
    for note in notes:
        lines += textwrap.wrap(note, width=100, initial_indent="  - ", subsequent_indent="    ")
    return "\n".join(lines)


# --- one result of a run --------------------------------------------------------------------


def explain_result(test_id: str, report_dir) -> str:
    """The result ``test_id`` of the run in ``report_dir``: its status, message and diagnosis (the
    porting mistake the failure matches, ``conformance.verdict.diagnosis``); UsageError (one line)
    for an id that is no test id or that the run does not hold."""
    from conformance.commands.exits import UsageError
    from conformance.commands.repro import parse_test_id
    from conformance.results.reading import load_any

    parse_test_id(test_id)
    results = report_dir / "results.json"
    if not results.is_file():
        raise UsageError(f"{results}: no results.json here (give the run's --report-dir)")
    record = next((r for r in load_any([results]).get("results") or [] if r.get("test_id") == test_id), None)
    if record is None:
        raise UsageError(f"{test_id}: not a result of the run in {report_dir}")
    lines = [f"{test_id}: {record['status']}" + (f" (known difference: {record['known']})" if record.get("known")
                                                   else ""),
             f"  {record.get('describe', '')}", f"  {record.get('message', '')}"]
    if record.get("diagnosis"):
        lines.append(f"  diagnosis: {record['diagnosis']}")
    elif record["status"] == "fail" and not record.get("known"):
        lines.append("  diagnosis: no porting mistake of the catalogue (conformance.verdict.diagnosis) reproduces "
                     "this output (or it came past the first 200 failures of its adapter process)")
    return "\n".join(lines)
