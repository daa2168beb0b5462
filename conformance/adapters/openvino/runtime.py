"""What every OpenVINO row shares: one ``Core``, the compile properties and what the CPU plugin
made of a model (the precision hint read back, the recurrent kernels and their precision).

Precision: on a CPU with AVX512_BF16 or AMX, OpenVINO's CPU plugin defaults
``INFERENCE_PRECISION_HINT`` to bfloat16 and then computes float32 models in bfloat16. For the
float32 verdict every OpenVINO row compiles with the hint f32 and records it; in the labelled
reduced-precision mode (``conformance run --reduced-precision-defaults``) it leaves the runtime's
default and records that default.
"""

from __future__ import annotations

import functools
import struct
import tempfile
from pathlib import Path

import numpy as np

from conformance.adapters.contract import reduced_precision_allowed

OPENVINO_DEVICES = {"cpu": "CPU"}
PRECISION_HINT = "INFERENCE_PRECISION_HINT"
# Small recurrent graphs: a second thread costs more in hand-over than it saves (measured here).
THREADS = 1
# A model's float element type -> the hint that computes in it; every other model gets f32.
HINTS = {"f16": "f16", "bf16": "bf16"}
DTYPE_HINTS = {"float16": "f16", "bfloat16": "bf16"}
RECURRENT_KERNELS = ("RNNSeq", "RNNCell", "TensorIterator")


@functools.cache
def core():
    """One ``ov.Core`` per process: creating one loads the plugins, which costs more than a compile."""
    openvino = openvino_module()

    return openvino.Core()


@functools.cache
def default_precision_hint(device: str) -> str:
    """What the CPU plugin would compute float32 models in on this machine (``bf16`` on AVX512_BF16/AMX)."""
    return core().get_property(OPENVINO_DEVICES[device], PRECISION_HINT).to_string()


def compile_config(hint: str = "f32") -> dict[str, object]:
    """The compile properties: ``hint`` (f32 for the float32 verdict, the row's own for float16 and
    bfloat16 models) unless the labelled mode keeps the default."""
    config: dict[str, object] = {"INFERENCE_NUM_THREADS": THREADS}
    if not reduced_precision_allowed():
        config[PRECISION_HINT] = hint
    return config


def kernel_precisions(compiled) -> dict[str, str]:
    """Recurrent kernel -> the precision(s) the CPU plugin runs it in, from the runtime model."""
    found: dict[str, set[str]] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind in RECURRENT_KERNELS:
            found.setdefault(kind, set()).add(info["runtimePrecision"].astype(str))
    return {kind: ",".join(sorted(precisions)) for kind, precisions in sorted(found.items())}


def compiled_info(compiled) -> dict:
    """The hint the compiled model runs under, read back from it, and its recurrent kernels' precision."""
    return {"inference_precision_hint": compiled.get_property(PRECISION_HINT).to_string(),
            "recurrent_kernel_precision": kernel_precisions(compiled)}


def device_name(device: str) -> str:
    return str(core().get_property(OPENVINO_DEVICES[device], "FULL_DEVICE_NAME"))


def precision_refusal(compiled, dtype: str, device: str) -> str | None:
    """Why ``compiled`` (a ``dtype`` model compiled with that dtype's hint) would not compute in
    ``dtype``, or None: read back from the compiled model."""
    want = DTYPE_HINTS[dtype]
    got = compiled.get_property(PRECISION_HINT).to_string()
    kernels = kernel_precisions(compiled)
    # A TensorIterator's own runtimePrecision says nothing of its body (it reads f32 under a bf16 hint
    # whose body computes in bf16, measured): the fused kernels' label and the hint read back decide.
    if got == want and all(p == want for kind, p in kernels.items() if kind != "TensorIterator"):
        return None
    openvino = openvino_module()

    capabilities = ", ".join(core().get_property(OPENVINO_DEVICES[device], "OPTIMIZATION_CAPABILITIES"))
    ran = ", ".join(f"{kind} {p}" for kind, p in kernels.items() if kind != "TensorIterator") or (
        "a TensorIterator loop, whose body's precision it does not list" if kernels else "no recurrent kernel")
    return (f"OpenVINO {openvino.__version__.split('-')[0]} {OPENVINO_DEVICES[device]} plugin here "
            f"({device_name(device)}, OPTIMIZATION_CAPABILITIES {capabilities}): the {dtype} model "
            f"compiled with {PRECISION_HINT}={want} reads back {PRECISION_HINT}={got} (runtime model: {ran}), "
            f"so it would compute in {got}, not {dtype}")


def openvino_module():
    """``openvino``, imported with its telemetry off (``without_telemetry``): every adapter of the
    suite imports it through here."""
    without_telemetry()
    import openvino

    return openvino


def without_telemetry() -> None:
    """Keep OpenVINO's converter from sending usage telemetry; call before ``openvino.tools.ovc``
    (``openvino.convert_model``) is first imported. The converter reports its import and each
    conversion to Google Analytics through ``openvino_telemetry`` unless the user opted out (or the
    ``CI`` variable is set), from a process it forks (``GA4Backend.send``): a conformance run has no
    business reporting a vendor's conversions, and a fork inside a process that holds JAX's or
    torch's threads risks a deadlock (JAX warns of it). The backend's ``send`` becomes a no-op for
    this process; the user's consent file is not touched. Without ``openvino_telemetry`` installed
    the converter uses its own stub, and there is nothing to do."""
    try:
        from openvino_telemetry.backend.backend_ga4 import GA4Backend
    except ImportError:
        return
    GA4Backend.send = lambda self, message: None



class FrontendRow:
    """What the rows converting a framework's own model (``openvino-torch``, ``openvino-keras``)
    answer alike: the CPU plugin is their one device, named by ``device_name``; their last run's
    facts are ``self._info``."""

    declared_devices = ("cpu",)

    def devices(self) -> list[str]:
        return ["cpu"]

    def device_name(self, device: str) -> str:
        return device_name(device)

    def last_run_info(self) -> dict:
        return dict(self._info)

# --- the converted model as bytes (cached, written by repro) -------------------------------


def conversion_failure(exc: BaseException) -> str:
    """The lines of an OpenVINO conversion error that say what failed, without its source location."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith(("Check '", "Summary:"))]
    return f"{type(exc).__name__}: {' '.join(kept)}"[:400]


def ir_bytes(model) -> bytes:
    """``model`` as one blob: the IR xml's length, the xml, the weights (``ov.save_model``'s two files,
    uncompressed: its default would store float32 weights as float16)."""
    openvino = openvino_module()

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.xml"
        openvino.save_model(model, path, compress_to_fp16=False)
        xml, weights = path.read_bytes(), path.with_suffix(".bin").read_bytes()
    return struct.pack("<Q", len(xml)) + xml + weights


def split_ir(blob: bytes) -> tuple[bytes, bytes]:
    """``ir_bytes``'s blob -> (xml, weights)."""
    (size,) = struct.unpack("<Q", blob[:8])
    return blob[8:8 + size], blob[8 + size:]


def read_ir(blob: bytes):
    openvino = openvino_module()

    xml, weights = split_ir(blob)
    return core().read_model(model=xml, weights=openvino.Tensor(np.frombuffer(weights, dtype=np.uint8)))


def feed_array(array: np.ndarray) -> np.ndarray:
    """numpy has no bfloat16 for OpenVINO's Python API: such inputs go in as float32 (exact);
    ``supports`` runs a bfloat16 row only where the model computes in bfloat16."""
    return array.astype(np.float32) if array.dtype.name == "bfloat16" else np.ascontiguousarray(array)
