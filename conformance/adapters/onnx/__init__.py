"""The ONNX adapters; ``OnnxConsumerAdapter`` is the public base for certifying any ONNX runtime."""

from conformance.adapters.onnx.consumer import OnnxConsumerAdapter

__all__ = ["OnnxConsumerAdapter"]
