"""The cases as ONNX models: the public export API (``conformance export onnx`` writes them to disk).

    from conformance.onnx import export
    exported = export(case.for_dtype("float32"), weights="initializers")  # or "inputs"
    outputs = my_runtime.run(exported.model_bytes, exported.feeds)       # graph output order
    keras_list = exported.keras_outputs(outputs)                         # == case.output_names

``export`` raises ``NotExpressible`` for the cases ONNX's operators cannot
express (``not_expressible`` says why). Importing this package imports no
``onnx``; ``export`` does.
"""

from conformance.onnx.export import (
    LAYOUTS,
    WEIGHT_PLACEMENTS,
    NotExpressible,
    OnnxCase,
    export,
    not_expressible,
    structure,
)
from conformance.onnx.graph import IR_VERSION, OPSET, OPSET_VARIABLE, check_opset, model_versions

__all__ = ["IR_VERSION", "LAYOUTS", "NotExpressible", "OPSET", "OPSET_VARIABLE", "OnnxCase", "WEIGHT_PLACEMENTS",
           "check_opset", "export", "model_versions",
           "not_expressible", "structure"]
