"""An export of the cases (``conformance export onnx DIR``) run by onnx's own backend-test Runner
on onnxruntime, with no code of the suite:

    EXPORT_DIR=DIR pytest examples/onnx_backend_runner.py -k "Initializers or Inputs"

One test class per weight placement; onnxruntime's known differences are expected failures.
"""

import os

# onnxruntime's known differences (the built-in known_differences.txt, onnx-native), as Runner names
ONNXRUNTIME_DIFFERENCES = (
    r"_float64_cpu$",  # no float64 RNN, GRU or LSTM kernels
    r"_state1_.*_mask(ing)?_empty_row_float32_cpu$",  # a fully masked row: a zero state, not the initial one
)


def backend_test(data_dir: str):
    """onnx's Runner over the export in ``data_dir``, both placements, the differences expected."""
    import onnx.backend.test
    import onnxruntime.backend
    from onnx.backend.test.loader import load_model_tests

    runner = onnx.backend.test.BackendTest(onnxruntime.backend, __name__)
    for weights in ("initializers", "inputs"):
        for test in load_model_tests(data_dir=data_dir, kind=weights):  # atol/rtol from data.json
            runner._add_model_test(test, weights.title())  # onnx's runner has no public hook
    for pattern in ONNXRUNTIME_DIFFERENCES:
        runner.xfail(pattern)
    return runner


if os.environ.get("EXPORT_DIR"):
    globals().update(backend_test(os.environ["EXPORT_DIR"]).test_cases)
