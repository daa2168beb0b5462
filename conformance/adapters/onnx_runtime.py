"""onnxruntime sessions for the ONNX adapters: providers per device, versions, devices.

``onnxruntime`` is imported inside functions only, so listing adapters stays light.
"""

from __future__ import annotations

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}

# ORT's CUDA execution provider runs float32 matmuls in TF32 unless told not to
# (provider option "use_tf32", cuda_provider_options.h); the float32 verdict needs it off.
CUDA_OPTIONS = {"use_tf32": "0"}


def devices() -> list[str]:
    """``cpu``, plus ``cuda`` when this onnxruntime build has the CUDA provider."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    return [device for device, provider in PROVIDERS.items() if provider in available]


def make_session(model_bytes: bytes, device: str):
    """An InferenceSession on exactly one provider (no silent fallback to the CPU)."""
    import onnxruntime

    if device not in PROVIDERS:
        raise ValueError(f"device={device!r} is not allowed; expected one of {tuple(PROVIDERS)}")
    options = onnxruntime.SessionOptions()
    # Refusals reach the caller as exceptions carrying the same message; the
    # duplicate ERROR log line ORT prints to stderr would only be noise.
    options.log_severity_level = 4
    # The graphs are tiny: one thread avoids a spinning thread pool per cached
    # session, which made session creation ~10x slower once hundreds were alive.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    provider = PROVIDERS[device]
    from conformance.adapters.base import tf32_allowed

    cuda_options = dict(CUDA_OPTIONS, use_tf32=str(int(tf32_allowed())))
    provider_options = [cuda_options if device == "cuda" else {}]
    return onnxruntime.InferenceSession(model_bytes, options, providers=[provider],
                                        provider_options=provider_options)


def versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
            "onnxruntime providers": ", ".join(PROVIDERS[d] for d in devices())}


def device_name(device: str) -> str:
    return f"{device} ({PROVIDERS.get(device, 'unknown provider')})"
