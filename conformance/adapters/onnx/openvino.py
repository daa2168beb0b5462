"""OpenVINO Runtime (the ``openvino`` package) on the exported cases: its ONNX frontend and CPU plugin.

Two rows, because OpenVINO takes two code paths: with W, R, B as constant
*initializers* (``openvino``, as real exported models hold them) the CPU
plugin runs its fused oneDNN recurrent kernel (``RNNSeq``); with the weights
as graph *inputs* (``openvino-inputs``) it refuses the kernel ("Node expects
constants as W, R, B inputs", ``intel_cpu/src/nodes/rnn.cpp``) and runs the
op decomposed into a ``TensorIterator`` loop. The two disagree with each
other (FINDINGS.md, "The known differences this run met": each ``openvino`` row names the fused
kernel's mistake; the entries themselves are in ``conformance/verdict/known_differences.txt``).

Precision (settings shared with the frontend rows: ``conformance.adapters.openvino.runtime``):
on a CPU with AVX512_BF16 or AMX, OpenVINO's CPU plugin defaults ``INFERENCE_PRECISION_HINT``
to bfloat16 and then computes float32 models in bfloat16 (all but one of the float32 results
fail that way). For the float32 verdict the adapter sets the hint to f32 and records it; in the labelled
reduced-precision mode (``conformance run --reduced-precision-defaults``) it leaves the runtime's
default and records that default. Every record also holds what the compiled model reports
(``inference_precision_hint``, read back from it) and the precision its recurrent kernels run
in (``recurrent_kernel_precision``, from the runtime model's ``runtimePrecision``).

float16 and bfloat16 rows: the hint asked for is the row's own (f16, bf16), and ``supports``
compiles the case's model to read back what the plugin made of it. A row runs only where the
compiled model computes its recurrence in the row's dtype; elsewhere it is unsupported with
what was observed. On a CPU without float16 arithmetic (this one: AMD EPYC, capabilities BF16
and FP32) the plugin compiles an f16 hint as bf16 and runs RNNSeq in bf16, coarser than the
float16 the row asks for, so the float16 rows are unsupported there. bfloat16 rows: the
exported bfloat16 model has no ONNX form at opset 14 (``not_expressible``); OpenVINO's own
bfloat16 is its precision hint on a float32 model, whose outputs are float32 (LSTM's cell
state stays float32 inside the kernel), which is the labelled mode's float32 row, not a
bfloat16 one. With ``--onnx-opset 22`` the bfloat16 model exists and the same rule applies.

Speed: with initializers every case is its own model, so every case pays a
read and a compile (a few ms for these small graphs); one inference thread
is the fastest setting for them here and keeps a row off other rows' cores.

Devices: ``cpu`` only. OpenVINO's "GPU" device is an Intel GPU, not CUDA.
"""

from __future__ import annotations

import numpy as np

from conformance.adapters.contract import reduced_precision_allowed
from conformance.adapters.onnx.consumer import OnnxConsumerAdapter
from conformance.adapters.openvino import runtime
from conformance.adapters.openvino.runtime import (
    DTYPE_HINTS,
    HINTS,
    OPENVINO_DEVICES,
    PRECISION_HINT,  # noqa: F401 - the hint's name, read from here by the reduced-precision tests
    compile_config,
    default_precision_hint,
)
from conformance.matrix.case import Case
from conformance.onnx import export
from conformance.onnx.mapping import ONNX_ACTIVATION, onnx_activations

# The only cell activations OpenVINO builds: its ONNX frontend has no Affine
# (op/util/activation_functions.cpp, "Unknown activation function: affine") and the
# CPU plugin's cell decomposition no HardSigmoid (transformations/utils/utils.cpp
# activation(), "Unsupported activation function"); both refuse at compile.
OPENVINO_ACTIVATIONS = ("Tanh", "Sigmoid", "Relu")


def model_hint(model) -> str:
    """The hint for an ``openvino.Model``: its input ``x``'s own float type where that is f16 or bf16."""
    return HINTS.get(model.input("x").get_element_type().to_string(), "f32")


def refused_activations(case: Case) -> str | None:
    """Why OpenVINO refuses ``case``'s cell activations at compile, or None."""
    names = {ONNX_ACTIVATION[keras][0] for layer in case.spec.sublayers().values() for keras in onnx_activations(layer)}
    refused = sorted(names - set(OPENVINO_ACTIVATIONS))
    if not refused:
        return None
    return (f"OpenVINO builds recurrent cells with {', '.join(OPENVINO_ACTIVATIONS)} only; it refuses "
            f"{', '.join(refused)} when compiling the model")


class OpenvinoAdapter(OnnxConsumerAdapter):
    """The exported cases in OpenVINO's CPU plugin, W/R/B as constant initializers."""

    name = "openvino"
    runtime = "OpenVINO"
    compiles_per_structure = True  # a CPU-plugin compilation per model
    requires = ("onnx", "openvino")
    weights = "initializers"
    layout = 0
    declared_devices = ("cpu",)
    # load's settings, standalone: the f32 hint of the float32 verdict (a float16 or bfloat16
    # model's own type for those rows), one inference thread.
    repro_runner = '''
def run_model(model_path, feeds, device):
    import openvino

    core = openvino.Core()
    model = core.read_model(model_path)
    hint = {"f16": "f16", "bf16": "bf16"}.get(model.input("x").get_element_type().to_string(), "f32")
    config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": 1}
    compiled = core.compile_model(model, {"cpu": "CPU"}[device], config)
    results = compiled.create_infer_request().infer(feeds)
    return [results[output] for output in compiled.outputs]
'''


    def supports(self, case: Case) -> str | None:
        reason = super().supports(case) or refused_activations(case)
        if reason or case.dtype not in DTYPE_HINTS or reduced_precision_allowed():
            return reason
        return self.precision_refusal(case, "cpu")

    def precision_refusal(self, case: Case, device: str) -> str | None:
        """Why the compiled model of a float16 / bfloat16 row would not compute in that dtype, or None:
        read back from the model compiled with the row's own hint (a refusal to compile is left to
        ``run``, which reports it as an error)."""
        try:
            compiled = self._compiled_model(export(case, self.weights, self.layout), device)
        except Exception:  # noqa: BLE001 - the runtime's refusal is run's result, not a precision fact
            return None
        return runtime.precision_refusal(compiled, case.dtype, device)

    def devices(self) -> list[str]:
        return ["cpu"]

    def versions(self) -> dict[str, str]:
        openvino = runtime.openvino_module()

        return {"openvino": openvino.__version__}

    def device_name(self, device: str) -> str:
        return runtime.device_name(device)

    def load(self, model: bytes, device: str):
        core = runtime.core()
        read = core.read_model(model=model)
        return core.compile_model(read, OPENVINO_DEVICES[device], compile_config(model_hint(read)))

    def infer(self, compiled, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = compiled.create_infer_request().infer(feeds)
        return [results[output] for output in compiled.outputs]

    def precision(self, device: str) -> dict:
        """The machine's default hint (what the labelled mode leaves in place)."""
        return {"default_inference_precision_hint": default_precision_hint(device)}

    def compiled_info(self, compiled) -> dict:
        """The hint the compiled model runs under, read back from it, and its recurrent kernels' precision."""
        return runtime.compiled_info(compiled)


class OpenvinoInputsAdapter(OpenvinoAdapter):
    """The same models with W/R/B as graph inputs: one compile per structure, OpenVINO's loop path."""

    name = "openvino-inputs"
    weights = "inputs"
