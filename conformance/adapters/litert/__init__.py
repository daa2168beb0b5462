"""LiteRT (TensorFlow Lite): Keras models converted to .tflite flatbuffers, run by the
``ai-edge-litert`` interpreter.

- ``litert-keras`` (``keras3.LiteRTKerasAdapter``): Keras 3 on the TensorFlow backend,
  ``model.export(path, format="litert", input_signature=...)``;
- ``litert-tf-keras`` (``tf_keras.LiteRTTfKerasAdapter``): tf_keras (Keras 2),
  ``tf.lite.TFLiteConverter.from_keras_model`` (the fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` path).

What both share (conversion once per structure and shape, weights placed into the
flatbuffer's buffers, the interpreter, the disk cache) is in ``common``.
"""
