"""Raw Keras 3, no adapter: a stateful GRU called twice, eagerly and through ``predict``; run as
``KERAS_BACKEND=B python -m tests.stateful_probe``, it prints each way's distance (max abs) from the
carried answer (the fixture's) and from the answer from zeros (the oracle's plain call), as JSON."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

CASE = "gru-seq0-state0-random-b3t5-stateful"


def main() -> None:
    import keras

    from conformance.fixtures import load_cases
    from conformance.reference import forward

    case = next(c for c in load_cases() if c.id == CASE).for_dtype("float32")
    weights = case.weights["layer"]
    from_zeros = forward(dataclasses.replace(case.layer, stateful=False), weights, case.x)[0]
    gru = keras.layers.GRU(case.layer.units, stateful=True)
    inputs = keras.Input(batch_shape=(case.batch, None, case.features))
    model = keras.Model(inputs, gru(inputs))
    gru.set_weights([weights["kernel"], weights["recurrent_kernel"], weights["bias"]])
    model(case.earlier_x)
    eager = keras.ops.convert_to_numpy(model(case.x))
    gru.reset_states()
    model.predict(case.earlier_x, verbose=0)
    predicted = model.predict(case.x, verbose=0)
    tracked = any("rnn_state" in v.path for v in model.non_trainable_variables)

    def distances(got):
        return {"carried": float(np.abs(got - case.expected[0]).max()),
                "from_zeros": float(np.abs(got - from_zeros).max())}

    print(json.dumps({"backend": keras.backend.backend(), "keras": keras.__version__, "eager": distances(eager),
                      "predict": distances(predicted), "state_tracked": tracked}))


if __name__ == "__main__":
    main()
