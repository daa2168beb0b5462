"""The ``constant`` weight scheme and the two hard sigmoids, checked against real Keras.

SEMANTICS.md §2 claims what Keras builds from ``Constant`` initializers
(including LSTM's ``unit_forget_bias``) and how Keras 3 and tf_keras define
``hard_sigmoid``; these tests hold those claims to the installed frameworks.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance.matrix.spec import LayerSpec
from conformance.matrix.weights import TUTORIAL_BIAS, TUTORIAL_KERNEL, TUTORIAL_RECURRENT, constant_weights

keras = pytest.importorskip("keras")

# Keras 3.15's get_weights() ends in np.array(variable) (keras/src/backend/common/
# variables.py numpy()), whose __array__ lacks numpy 2's copy keyword: numpy warns on
# the JAX and torch backends. A Keras/numpy compatibility warning, not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

FEATURES = 2
UNITS = 3
CELL_SPECS = [
    LayerSpec("simple_rnn", UNITS),
    LayerSpec("lstm", UNITS),
    LayerSpec("gru", UNITS),
    LayerSpec("gru", UNITS, reset_after=False),
]


def keras_weights_from_constants(module, layer: LayerSpec, kernel: float, recurrent: float,
                                 bias: float) -> dict[str, np.ndarray]:
    """What ``module.layers.<Cell>`` builds from Constant initializers (its defaults otherwise)."""
    init = module.initializers.Constant
    kwargs = {"kernel_initializer": init(kernel), "recurrent_initializer": init(recurrent),
              "bias_initializer": init(bias)}
    if layer.cell == "gru":
        kwargs["reset_after"] = layer.reset_after
    rnn = getattr(module.layers, layer.keras_class)(layer.units, **kwargs)
    rnn.build((1, 3, FEATURES))
    return dict(zip(("kernel", "recurrent_kernel", "bias"), rnn.get_weights()))


@pytest.mark.parametrize("layer", CELL_SPECS, ids=lambda s: s.describe())
def test_constant_scheme_is_what_keras_builds_from_constant_initializers(layer):
    built = keras_weights_from_constants(keras, layer, TUTORIAL_KERNEL, TUTORIAL_RECURRENT, TUTORIAL_BIAS)
    scheme = constant_weights(layer, FEATURES)
    assert sorted(built) == sorted(scheme)
    for name, value in scheme.items():
        assert built[name].shape == value.shape, name
        np.testing.assert_array_equal(built[name], value.astype(np.float32), err_msg=name)


def test_unit_forget_bias_replaces_the_forget_block_of_constant_bias():
    """SEMANTICS.md §2: Constant(0.03) with unit_forget_bias gives [0.03..., 1..., 0.03..., 0.03...]."""
    bias = keras_weights_from_constants(keras, LayerSpec("lstm", UNITS), 0.1, 0.1, 0.03)["bias"]
    expected = np.concatenate([np.full(UNITS, 0.03), np.ones(UNITS), np.full(2 * UNITS, 0.03)])
    np.testing.assert_array_equal(bias, expected.astype(np.float32))


def test_unit_forget_bias_false_keeps_the_constant():
    rnn = keras.layers.LSTM(UNITS, bias_initializer=keras.initializers.Constant(0.03), unit_forget_bias=False)
    rnn.build((1, 3, FEATURES))
    np.testing.assert_array_equal(rnn.get_weights()[2], np.full(4 * UNITS, 0.03, dtype=np.float32))


POINTS = np.array([-4.0, -3.0, -2.5, -1.0, 0.0, 1.0, 2.5, 3.0, 4.0])


def test_keras3_hard_sigmoid_is_x_over_6_plus_half():
    got = keras.ops.convert_to_numpy(keras.activations.hard_sigmoid(POINTS.astype(np.float32)))
    np.testing.assert_allclose(got, np.clip(POINTS / 6.0 + 0.5, 0.0, 1.0), atol=1e-7)
    assert not np.allclose(got, np.clip(0.2 * POINTS + 0.5, 0.0, 1.0))


def test_tf_keras_hard_sigmoid_is_the_legacy_0_2x_plus_half():
    tf = pytest.importorskip("tensorflow")
    tf_keras = pytest.importorskip("tf_keras")
    got = tf_keras.activations.hard_sigmoid(tf.constant(POINTS, dtype=tf.float32)).numpy()
    np.testing.assert_allclose(got, np.clip(0.2 * POINTS + 0.5, 0.0, 1.0), atol=1e-7)
    assert not np.allclose(got, np.clip(POINTS / 6.0 + 0.5, 0.0, 1.0))


@pytest.mark.parametrize("layer", CELL_SPECS, ids=lambda s: s.describe())
def test_constant_scheme_matches_tf_keras_too(layer):
    tf_keras = pytest.importorskip("tf_keras")
    built = keras_weights_from_constants(tf_keras, layer, TUTORIAL_KERNEL, TUTORIAL_RECURRENT, TUTORIAL_BIAS)
    for name, value in constant_weights(layer, FEATURES).items():
        np.testing.assert_array_equal(built[name], value.astype(np.float32), err_msg=name)
