"""The Keras adapters' float16 and bfloat16 rows: a mixed policy, float32 variables holding the case's values.

Each adapter runs a reduced-precision row under ``mixed_float16`` / ``mixed_bfloat16``
(``keras.common.DTYPE_POLICIES``), as users do; a layer's plain ``dtype="float16"`` (variables
in float16 as well) is the other way to ask, and gives the same bits, which the probe below
checks per adapter. Keras 3 fixes its backend per process, so each adapter's probe runs in a
process of its own: ``python -m tests.test_keras_reduced_precision ADAPTER`` prints JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conformance.adapters.keras.common import DTYPE_POLICIES, Structure, keras_weights, variable_dtype, widened
from conformance.matrix.cases import build_cases

REPO = Path(__file__).resolve().parent.parent
PROBE_CASES = ("lstm-seq1-state1-random-b3t5-reduced_precision", "gru-seq0-state0-random-b4t48-reduced_precision",
               "simple_rnn-seq1-state0-saturating-b3t5-reduced_precision")
BACKENDS = {"keras-tensorflow": "tensorflow", "keras-jax": "jax", "keras-torch": "torch", "tf-keras": "tf_keras"}


def _case(case_id: str, dtype: str):
    return next(c for c in build_cases() if c.id == case_id).for_dtype(dtype)


def test_reduced_rows_get_the_mixed_policies_and_float32_variables():
    assert DTYPE_POLICIES == {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
    assert [variable_dtype(p) for p in ("mixed_float16", "mixed_bfloat16", "float16", "float64")] == \
        ["float32", "float32", "float16", "float64"]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_the_weights_go_into_float32_variables_exactly(dtype):
    case = _case(PROBE_CASES[0], dtype)
    wide = keras_weights(case, "float32")["layer"]
    own = keras_weights(case)["layer"]
    assert [a.dtype for a in own] == [case.x.dtype] * 3 and {a.dtype for a in wide} == {np.dtype("float32")}
    assert all(np.array_equal(w, o.astype(np.float32)) and np.array_equal(w.astype(o.dtype), o)
               for w, o in zip(wide, own))


def test_a_weight_that_would_round_is_refused():
    with pytest.raises(ValueError, match="exactly"):
        widened(np.array([0.1], dtype=np.float32), "float16")
    with pytest.raises(ValueError, match="exactly"):
        widened(np.array([0.5], dtype=np.float64), "float32")  # narrower, though this value fits


def test_the_policy_is_part_of_the_structure():
    case = _case(PROBE_CASES[0], "float16")
    assert Structure.of(case, "cpu").policy == "float16"  # the default: the dtype itself
    mixed = Structure.of(case, "cpu", "mixed_float16")
    assert mixed.policy == "mixed_float16" and mixed.key() != Structure.of(case, "cpu").key()


# --- one adapter per process ------------------------------------------------------------------


def _adapter(name: str):
    if name == "tf-keras":
        from conformance.adapters.keras.tf_keras import TfKerasAdapter

        return TfKerasAdapter()
    from conformance.adapters.keras import keras3

    return {"keras-tensorflow": keras3.KerasTensorflowAdapter, "keras-jax": keras3.KerasJaxAdapter,
            "keras-torch": keras3.KerasTorchAdapter}[name]()


def _variable_dtypes(adapter) -> list[str]:
    """The dtypes of the last built model's variables, as Keras reports them."""
    built = list(adapter.models.built.values())[-1]
    return sorted({str(getattr(w.dtype, "name", w.dtype)) for layer in built.layers.values() for w in layer.weights})


def probe(name: str) -> dict:
    """Each probe case in each reduced dtype, under the mixed policy and under the plain dtype."""
    adapter = _adapter(name)
    reason = adapter.available()
    if reason:
        return {"unavailable": reason}
    rows = []
    for case_id in PROBE_CASES:
        for dtype in ("float16", "bfloat16"):
            case = _case(case_id, dtype)
            seen = {}
            for way, policies in (("mixed", dict(DTYPE_POLICIES)), ("plain", {})):
                adapter.models.policies = policies
                outputs = adapter.run(case, "cpu")
                seen[way] = {"outputs": outputs, "info": adapter.last_run_info(),
                             "variables": _variable_dtypes(adapter)}
            rows.append({
                "case": case_id, "dtype": dtype,
                "same_bits": all(np.array_equal(a.view(np.uint16), b.view(np.uint16))
                                 for a, b in zip(seen["mixed"]["outputs"], seen["plain"]["outputs"])),
                "output_dtypes": sorted({str(a.dtype) for w in seen.values() for a in w["outputs"]}),
                **{f"{way}_dtype_policy": [seen[way]["info"].get(key) for key in ("dtype_policy", "variable_dtype")]
                   for way in seen},
                **{f"{way}_variables": seen[way]["variables"] for way in seen},
            })
    return {"rows": rows}


@pytest.mark.parametrize("name", list(BACKENDS))
def test_the_mixed_policy_and_the_plain_dtype_give_the_same_bits(name):
    pytest.importorskip(BACKENDS[name])
    pytest.importorskip("tf_keras" if name == "tf-keras" else "keras")
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    environment.pop("KERAS_BACKEND", None)  # the adapter claims its own backend
    done = subprocess.run([sys.executable, "-m", "tests.test_keras_reduced_precision", name], capture_output=True,
                          text=True, env=environment, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    if "unavailable" in seen:
        pytest.skip(seen["unavailable"])
    assert len(seen["rows"]) == 2 * len(PROBE_CASES)
    for row in seen["rows"]:
        dtype = row["dtype"]
        assert row["same_bits"], row
        assert row["output_dtypes"] == [dtype], row
        assert row["mixed_dtype_policy"] == [f"mixed_{dtype}", "float32"], row
        assert row["plain_dtype_policy"] == [dtype, dtype], row
        assert row["mixed_variables"] == ["float32"] and row["plain_variables"] == [dtype], row


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1])))
