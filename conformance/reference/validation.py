"""Shape and dtype checks for ``forward``'s arguments, with messages naming the tensor."""

from __future__ import annotations

import numpy as np

from conformance.matrix.case import is_floating
from conformance.matrix.spec import LayerSpec

# Kept here rather than imported from conformance.matrix.weights: the oracle must not
# depend on how cases choose their weights.


def expected_weight_shapes(layer: LayerSpec, features: int) -> dict[str, tuple[int, ...]]:
    width = len(layer.gates) * layer.units
    shapes = {"kernel": (features, width), "recurrent_kernel": (layer.units, width)}
    if layer.use_bias:
        gru_two_rows = layer.cell == "gru" and layer.reset_after
        shapes["bias"] = (2, width) if gru_two_rows else (width,)
    return shapes


def as_float64(name: str, value, ndim: int) -> np.ndarray:
    array = np.asarray(value)
    if not is_floating(array.dtype):
        raise ValueError(f"{name}: expected a floating-point array, got dtype {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {array.shape}")
    return array.astype(np.float64)


def check_shape(name: str, array: np.ndarray, expected: tuple[int, ...]) -> None:
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"{name}: expected shape {tuple(expected)}, got {tuple(array.shape)}")


def layer_weights(name: str, layer: LayerSpec, weights, features: int) -> dict[str, np.ndarray]:
    """Validated float64 copies of one layer's Keras-layout weights."""
    if not isinstance(weights, dict):
        raise ValueError(f"{name}: expected a dict of Keras weights, got {type(weights).__name__}")
    shapes = expected_weight_shapes(layer, features)
    unexpected = set(weights) - set(shapes)
    if unexpected:
        raise ValueError(f"{name}: unexpected weights {sorted(unexpected)}; expected {sorted(shapes)}")
    checked = {}
    for key, shape in shapes.items():
        if key not in weights:
            raise ValueError(f"{name}{key}: missing; expected shape {shape}")
        checked[key] = as_float64(f"{name}{key}", weights[key], len(shape))
        check_shape(f"{name}{key}", checked[key], shape)
    return checked


def mask_array(mask, batch: int, timesteps: int) -> np.ndarray | None:
    if mask is None:
        return None
    array = np.asarray(mask)
    if array.dtype != np.bool_:
        raise ValueError(f"mask: expected dtype bool, got {array.dtype}")
    check_shape("mask", array, (batch, timesteps))
    return array


def state_list(initial_state, layer: LayerSpec, batch: int, copies: int = 1) -> list[np.ndarray] | None:
    if initial_state is None:
        return None
    names = [f"{s}" for _ in range(copies) for s in layer.state_names]
    states = list(initial_state)
    if len(states) != len(names):
        raise ValueError(f"initial_state: expected {len(names)} tensors {names}, got {len(states)}")
    checked = []
    for n, state in enumerate(states):
        array = as_float64(f"initial_state[{n}]", state, 2)
        check_shape(f"initial_state[{n}]", array, (batch, layer.units))
        checked.append(array)
    return checked
