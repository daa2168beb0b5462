"""ONNX's own RNN / GRU / LSTM operators, run by onnxruntime: the exported cases on ONNX's reference runtime.

The models are ``conformance.onnx.export``'s, with the weights as graph
*inputs*, so one InferenceSession serves every case of a structure (spec,
dtype, mask or not, initial state or not) and a new case only feeds new
arrays. Everything around the recurrent operator — the time-major
transposes, ``go_backwards``'s order, Keras's values at padded steps, the
merge of ``Bidirectional``, stacking, the encoder's states handed to the
decoder — is graph nodes that onnxruntime computes; the graph's outputs are
the Keras list.

``OnnxNativeLayout1Adapter`` exports the same graphs with ``layout=1``
(batch-major X, Y and states), the natural image of Keras's tensors;
onnxruntime 1.32 refuses it ("Batchwise recurrent operations (layout == 1)
are not supported"), which that adapter reports as errors, not unsupported.
"""

from __future__ import annotations

from conformance.adapters.contract import missing_module_reason
from conformance.adapters.onnx import runtime as onnx_runtime
from conformance.adapters.onnx.consumer import OnnxConsumerAdapter


class OnnxNativeAdapter(OnnxConsumerAdapter):
    """The exported cases in onnxruntime (``layout=0``, weights as graph inputs)."""

    name = "onnx-native"
    runtime = "onnxruntime"
    weights = "inputs"
    layout = 0
    declared_devices = ("cpu", "cuda")
    # make_session's settings, standalone: exactly the row's provider (no CPU fallback), TF32 off on cuda.
    repro_runner = '''
def run_model(model_path, feeds, device):
    import onnxruntime

    provider = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}[device]
    options = [{"use_tf32": "0"}] if device == "cuda" else [{}]
    session = onnxruntime.InferenceSession(model_path, providers=[provider], provider_options=options)
    if session.get_providers()[0] != provider:
        raise RuntimeError(f"onnxruntime opened {session.get_providers()}, not {provider}")
    return session.run(None, feeds)
'''

    def available(self) -> str | None:
        return missing_module_reason("onnx", "onnxruntime")

    def devices(self) -> list[str]:
        return onnx_runtime.devices()

    def versions(self) -> dict[str, str]:
        return onnx_runtime.versions()

    def device_name(self, device: str) -> str:
        return onnx_runtime.device_name(device)

    def load(self, model: bytes, device: str):
        return onnx_runtime.make_session(model, device)

    def infer(self, session, feeds):
        return session.run(None, feeds)

    def precision(self, device: str) -> dict:
        return {"provider": onnx_runtime.PROVIDERS[device], **onnx_runtime.precision_settings(device)}


class OnnxNativeLayout1Adapter(OnnxNativeAdapter):
    """The same graphs with ``layout=1`` (batch-major), the direct image of Keras's tensors."""

    name = "onnx-native-layout1"
    layout = 1
