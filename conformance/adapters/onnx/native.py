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

float16: the export is a float16 model (float16 inputs, weights and outputs). onnxruntime's
CPU provider has no float16 kernel for RNN, GRU or LSTM (1.32), so its graph optimizer
(InsertCastTransformer) wraps each in Cast nodes: the recurrence computes in float32 on the
float16 values and its outputs are rounded to float16, which the session returns. That is
the runtime's own answer for a float16 model, so the row runs it; ``last_run_info()``
records the nodes that computed in float32 (``computed_in_float32``), read from the
optimized model the session wrote. bfloat16 has no ONNX form at opset 14
(``conformance.onnx.not_expressible``); with ``--onnx-opset 22`` the model exists and
onnxruntime 1.32 refuses it ("Could not find an implementation for LSTM(22)"), an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conformance.adapters.onnx import runtime as onnx_runtime
from conformance.adapters.onnx.consumer import OnnxConsumerAdapter

REDUCED_ELEMENT_TYPES = (10, 16)  # TensorProto.FLOAT16, BFLOAT16


@dataclass
class Session:
    """An InferenceSession and what its optimizer did to a reduced-precision model (``{}`` otherwise)."""

    session: object
    facts: dict = field(default_factory=dict)


def float_element_type(model: bytes) -> int:
    """The element type of the model's input ``x`` (every float tensor of an export has it)."""
    import onnx

    parsed = onnx.load_from_string(model)
    return next(v for v in parsed.graph.input if v.name == "x").type.tensor_type.elem_type


class OnnxNativeAdapter(OnnxConsumerAdapter):
    """The exported cases in onnxruntime (``layout=0``, weights as graph inputs)."""

    name = "onnx-native"
    runtime = "onnxruntime"
    compiles_per_structure = True  # a session (graph optimization) per model
    requires = ("onnx", "onnxruntime")
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


    def devices(self) -> list[str]:
        return onnx_runtime.devices()

    def versions(self) -> dict[str, str]:
        return onnx_runtime.versions()

    def device_name(self, device: str) -> str:
        return onnx_runtime.device_name(device)

    def load(self, model: bytes, device: str) -> Session:
        return Session(*onnx_runtime.open_session(model, device, float_element_type(model) in REDUCED_ELEMENT_TYPES))

    def infer(self, compiled: Session, feeds):
        return compiled.session.run(None, feeds)

    def compiled_info(self, compiled: Session) -> dict:
        return dict(compiled.facts)

    def precision(self, device: str) -> dict:
        return {"provider": onnx_runtime.PROVIDERS[device], **onnx_runtime.precision_settings(device)}


class OnnxNativeLayout1Adapter(OnnxNativeAdapter):
    """The same graphs with ``layout=1`` (batch-major), the direct image of Keras's tensors."""

    name = "onnx-native-layout1"
    layout = 1
