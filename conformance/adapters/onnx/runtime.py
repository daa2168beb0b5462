"""onnxruntime sessions for the ONNX adapters: providers per device, versions, devices.

Every ONNX adapter opens its sessions through ``make_session``, which runs a
row on exactly the provider its device names or refuses it. onnxruntime
itself would not refuse: a provider missing from the build only warns and
the session runs on the CPU, and a provider that fails to start is retried
on the CPU (``InferenceSession``'s ``enable_fallback``, on by default), so a
``cuda`` row would silently report CPU numbers.

``onnxruntime`` is imported inside functions only, so listing adapters stays light.
"""

from __future__ import annotations

import functools

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}

# ORT's CUDA execution provider runs float32 matmuls in TF32 unless told not to
# (provider option "use_tf32", cuda_provider_options.h); the float32 verdict needs it off.
CUDA_OPTIONS = {"use_tf32": "0"}


class ProviderUnavailable(RuntimeError):
    """The device's execution provider cannot run here; the row is refused, not moved to the CPU."""


def devices() -> list[str]:
    """``cpu``, plus ``cuda`` when a session really opens on the CUDA provider.

    A GPU build of onnxruntime lists ``CUDAExecutionProvider`` whether or not a
    GPU is there, so the provider list alone would claim a device nobody has.
    """
    return ["cpu"] + (["cuda"] if _cuda_session_opens() else [])


@functools.cache
def _cuda_session_opens() -> bool:
    import onnxruntime

    if PROVIDERS["cuda"] not in onnxruntime.get_available_providers():
        return False
    try:
        make_session(_identity_model(), "cuda")
    except Exception:  # noqa: BLE001 - whatever stops the provider means no such device
        return False
    return True


def _identity_model() -> bytes:
    """The smallest float model, to see whether a provider opens at all."""
    from onnx import TensorProto, helper

    from conformance.onnx import model_versions

    opset, ir_version = model_versions()  # the cases' own: a runtime that reads them passes the probe
    tensor = (lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [1]))
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [tensor("x")], [tensor("y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model.SerializeToString()


def model_stamp(model) -> dict[str, int]:
    """The opset (default domain) and IR version an exporter wrote ``model`` (a ModelProto) with:
    recorded in run_info, since a runtime release accepts only some."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"onnx_opset": opset, "onnx_ir_version": model.ir_version}


def make_session(model_bytes: bytes, device: str):
    """An InferenceSession on ``device``'s provider, or ``ProviderUnavailable`` (never the CPU instead)."""
    return _open_session(model_bytes, device, None)


# The prefix of the Cast nodes onnxruntime's InsertCastTransformer (insert_cast_transformer.cc) puts
# around a node the provider has no float16 kernel for: the node then computes in float32.
INSERTED_CAST = "InsertedPrecisionFreeCast_"


def make_observed_session(model_bytes: bytes, device: str) -> tuple[object, list[str]]:
    """``make_session``'s session, and the nodes onnxruntime computes in float32 although the model
    gives them float16: the nodes its optimizer fed through an inserted Cast to float, by op
    type (``"LSTM"``, ``"MatMul x49"``), read from the optimized model the session itself wrote
    (``SessionOptions.optimized_model_filepath``)."""
    import collections
    import os
    import tempfile

    import onnx

    handle, path = tempfile.mkstemp(suffix=".onnx")
    os.close(handle)
    try:
        session = _open_session(model_bytes, device, path)
        optimized = onnx.load(path, load_external_data=False)
    finally:
        os.unlink(path)
    widened = {output for node in optimized.graph.node
               if node.op_type == "Cast" and node.name.startswith(INSERTED_CAST)
               and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in node.attribute)
               for output in node.output}
    counts = collections.Counter(node.op_type for node in optimized.graph.node
                                 if node.op_type != "Cast" and widened & set(node.input))
    return session, [op if n == 1 else f"{op} x{n}" for op, n in sorted(counts.items())]


def open_session(model_bytes: bytes, device: str, reduced_precision: bool) -> tuple[object, dict]:
    """``make_session``'s session and the facts to record with its results: for a float16 or bfloat16
    model, ``computed_in_float32`` (``make_observed_session``'s nodes); ``{}`` for any other."""
    if not reduced_precision:
        return make_session(model_bytes, device), {}
    session, widened = make_observed_session(model_bytes, device)
    return session, {"computed_in_float32": widened or "none (every node ran in the model's type)"}


def _open_session(model_bytes: bytes, device: str, optimized_model_path: str | None):
    import onnxruntime

    if device not in PROVIDERS:
        raise ValueError(f"device={device!r} is not allowed; expected one of {tuple(PROVIDERS)}")
    provider = PROVIDERS[device]
    built_in = onnxruntime.get_available_providers()
    if provider not in built_in:
        raise ProviderUnavailable(f"device={device!r} needs {provider}, which this onnxruntime build lacks "
                                  f"(it has {', '.join(built_in)}); refusing to run the row on another provider")
    options = _session_options()
    if optimized_model_path:
        options.optimized_model_filepath = optimized_model_path
    session = onnxruntime.InferenceSession(model_bytes, options, providers=[provider],
                                           provider_options=[precision_settings(device)], enable_fallback=0)
    if session.get_providers()[0] != provider:
        raise ProviderUnavailable(f"device={device!r}: onnxruntime opened the session on "
                                  f"{session.get_providers()} instead of {provider}")
    return session


def _session_options():
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # Refusals reach the caller as exceptions carrying the same message; the
    # duplicate ERROR log line ORT prints to stderr would only be noise.
    options.log_severity_level = 4
    # The graphs are tiny: one thread avoids a spinning thread pool per cached
    # session, which made session creation ~10x slower once hundreds were alive.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return options


def precision_settings(device: str) -> dict[str, str]:
    """The provider options about reduced precision: on ``cuda``, ``use_tf32`` (off for the float32
    verdict); the CPU provider computes float32 as float32 and has none."""
    from conformance.adapters.contract import reduced_precision_allowed

    return dict(CUDA_OPTIONS, use_tf32=str(int(reduced_precision_allowed()))) if device == "cuda" else {}


def versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
            "onnxruntime providers": ", ".join(PROVIDERS[d] for d in devices())}


def device_name(device: str) -> str:
    """The execution provider that runs ``device``'s rows (the report shows it beside the device)."""
    return PROVIDERS.get(device, "unknown provider")
