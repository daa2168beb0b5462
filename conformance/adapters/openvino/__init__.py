"""OpenVINO's own frontends (``openvino.convert_model``) as rows, and the runtime settings every
OpenVINO row shares (``runtime``: the ``Core``, the compile properties, the precision read-back),
which the ONNX-frontend rows (``conformance.adapters.onnx.openvino``) use too."""
