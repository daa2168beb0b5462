"""Certifying an ONNX runtime: here onnxruntime itself, fed models with constant weights."""

from conformance.adapters.contract import missing_module_reason
from conformance.adapters.onnx import OnnxConsumerAdapter


class MyOnnxRuntime(OnnxConsumerAdapter):
    name = "my-onnx-runtime"
    runtime = "onnxruntime"          # named in the records and reasons
    weights = "initializers"         # W, R, B stored in the model, as exported models do

    def available(self):
        return missing_module_reason("onnxruntime")

    def versions(self):
        import onnxruntime
        return {"onnxruntime": onnxruntime.__version__}

    def load(self, model, device):   # model: the serialized ModelProto
        import onnxruntime
        return onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])

    def infer(self, session, feeds):  # feeds: graph input name -> array; outputs in graph order
        return session.run(None, feeds)
