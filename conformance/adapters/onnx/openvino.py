"""OpenVINO Runtime (the ``openvino`` package) on the exported cases: its ONNX frontend and CPU plugin.

Two rows, because OpenVINO takes two code paths: with W, R, B as constant
*initializers* (``openvino``, as real exported models hold them) the CPU
plugin runs its fused oneDNN recurrent kernel (``RNNSeq``); with the weights
as graph *inputs* (``openvino-inputs``) it refuses the kernel ("Node expects
constants as W, R, B inputs", ``intel_cpu/src/nodes/rnn.cpp``) and runs the
op decomposed into a ``TensorIterator`` loop. The two disagree with each
other (see /work/notes/openvino-findings.md and FINDINGS.md).

Precision: on a CPU with AVX512_BF16 or AMX, OpenVINO's CPU plugin defaults
``INFERENCE_PRECISION_HINT`` to bfloat16 and then computes float32 models in
bfloat16 (all but one of the float32 results fail that way). For the float32
verdict the adapter sets the hint to f32 and records it; in the labelled
reduced-precision mode (``conformance run --reduced-precision-defaults``) it leaves the runtime's
default and records that default.

Speed: with initializers every case is its own model, so every case pays a
read and a compile (a few ms for these small graphs); one inference thread
is the fastest setting for them here and keeps a row off other rows' cores.

Devices: ``cpu`` only. OpenVINO's "GPU" device is an Intel GPU, not CUDA.
"""

from __future__ import annotations

import functools

import numpy as np

from conformance.adapters.contract import missing_module_reason, reduced_precision_allowed
from conformance.adapters.onnx.consumer import OnnxConsumerAdapter
from conformance.matrix.case import Case
from conformance.onnx.mapping import ONNX_ACTIVATION, onnx_activations

OPENVINO_DEVICES = {"cpu": "CPU"}
PRECISION_HINT = "INFERENCE_PRECISION_HINT"
# The only cell activations OpenVINO builds: its ONNX frontend has no Affine
# (op/util/activation_functions.cpp, "Unknown activation function: affine") and the
# CPU plugin's cell decomposition no HardSigmoid (transformations/utils/utils.cpp
# activation(), "Unsupported activation function"); both refuse at compile.
OPENVINO_ACTIVATIONS = ("Tanh", "Sigmoid", "Relu")
# Small recurrent graphs: a second thread costs more in hand-over than it saves (measured here).
THREADS = 1


@functools.cache
def _core():
    """One ``ov.Core`` per process: creating one loads the plugins, which costs more than a compile."""
    import openvino

    return openvino.Core()


@functools.cache
def default_precision_hint(device: str) -> str:
    """What the CPU plugin would compute float32 models in on this machine (``bf16`` on AVX512_BF16/AMX)."""
    return _core().get_property(OPENVINO_DEVICES[device], PRECISION_HINT).to_string()


def compile_config() -> dict[str, object]:
    """The compile properties: f32 precision for the verdict unless the labelled mode keeps the default."""
    config: dict[str, object] = {"INFERENCE_NUM_THREADS": THREADS}
    if not reduced_precision_allowed():
        config[PRECISION_HINT] = "f32"
    return config


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
    weights = "initializers"
    layout = 0
    declared_devices = ("cpu",)
    # load's settings, standalone: the f32 hint of the float32 verdict, one inference thread.
    repro_runner = '''
def run_model(model_path, feeds, device):
    import openvino

    core = openvino.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
    compiled = core.compile_model(core.read_model(model_path), {"cpu": "CPU"}[device], config)
    results = compiled.create_infer_request().infer(feeds)
    return [results[output] for output in compiled.outputs]
'''

    def available(self) -> str | None:
        return missing_module_reason("openvino")

    def supports(self, case: Case) -> str | None:
        return super().supports(case) or refused_activations(case)

    def devices(self) -> list[str]:
        return ["cpu"]

    def versions(self) -> dict[str, str]:
        import openvino

        return {"openvino": openvino.__version__}

    def device_name(self, device: str) -> str:
        return str(_core().get_property(OPENVINO_DEVICES[device], "FULL_DEVICE_NAME"))

    def load(self, model: bytes, device: str):
        core = _core()
        return core.compile_model(core.read_model(model=model), OPENVINO_DEVICES[device], compile_config())

    def infer(self, compiled, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = compiled.create_infer_request().infer(feeds)
        return [results[output] for output in compiled.outputs]

    def precision(self, device: str) -> dict:
        """The hint the compiled models run under, and the machine's default beside it."""
        default = default_precision_hint(device)
        config = compile_config()
        return {"inference_precision_hint": str(config.get(PRECISION_HINT, default)),
                "default_inference_precision_hint": default}


class OpenvinoInputsAdapter(OpenvinoAdapter):
    """The same models with W/R/B as graph inputs: one compile per structure, OpenVINO's loop path."""

    name = "openvino-inputs"
    weights = "inputs"
