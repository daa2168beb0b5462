"""Weight schemes: how a case's Keras-layout weights are chosen.

- ``constant``: the tutorials' set-up, one constant per matrix (kernel 0.1,
  recurrent 0.1, bias 0) as ``Constant`` initializers would produce it,
  including LSTM's ``unit_forget_bias``, which *replaces* the forget block of
  the bias with ones.
- ``per_gate``: a different constant per gate block and per matrix, so that a
  gate-order or bias-split mistake changes the result (a single constant
  cannot catch those).
- ``random``: seeded uniform values (kernels within ±0.6, biases ±0.3): every gate's
  pre-activation stays within about ±1.7, the activations' middle range.
- ``saturating``: seeded uniform values 3 to 7 times wider (±3 kernel, ±2 recurrent
  kernel, ±2 bias; the cases feed inputs within ±2), so that every gate and candidate
  is driven far into both saturated tails (arguments beyond ±3, up to about ±17) as
  well as through its middle: what a clip on the pre-activations, a hard sigmoid
  lowered without its clamp or a sigmoid approximated badly in its tails gets wrong.

Every value is a float32 number stored in float64, so float32 and float64
runs start from identical weights and the float64 oracle's answer applies to
both.
"""

from __future__ import annotations

import numpy as np

from conformance.matrix.spec import LayerSpec

SCHEMES = ("constant", "per_gate", "random", "saturating")

TUTORIAL_KERNEL = 0.1
TUTORIAL_RECURRENT = 0.1
TUTORIAL_BIAS = 0.0

# Distinct per gate block (i, f, c, o / z, r, h / h); chosen so that no two
# blocks share a value in any matrix and the products stay in tanh's live range.
PER_GATE_KERNEL = (0.05, -0.12, 0.2, 0.09)
PER_GATE_RECURRENT = (0.11, 0.07, -0.16, 0.23)
PER_GATE_BIAS = (0.03, 0.4, -0.05, 0.12)
PER_GATE_RECURRENT_BIAS = (-0.06, 0.15, 0.21)


def as_float32_values(array: np.ndarray) -> np.ndarray:
    """Round to float32, keep float64 storage (see module docstring)."""
    return np.asarray(array, dtype=np.float32).astype(np.float64)


SMALLEST_REDUCED = 2.0 ** -14  # float16's smallest normal number; anything smaller becomes 0


def as_reduced_values(array: np.ndarray) -> np.ndarray:
    """Round to bfloat16 (to nearest, ties to even), keep float64 storage: values that float16,
    bfloat16, float32 and float64 all hold exactly, so that the reduced-precision rows of a case
    start from the same inputs and weights as its float32 row, and the float64 oracle's answer is
    the truth for each. (bfloat16's 8 significant bits fit in float16's 11; magnitudes stay far
    below float16's largest, 65504; those under its smallest normal number are flushed to 0.)

    The rounding is done on float32's bits, not with ``ml_dtypes``, so that the fixtures need
    nothing but numpy.
    """
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    values = rounded.astype(np.uint32).view(np.float32).astype(np.float64)
    values = np.where(np.abs(values) < SMALLEST_REDUCED, 0.0, values)
    if not np.array_equal(values.astype(np.float16).astype(np.float64), values):
        raise ValueError("a value on the bfloat16 grid is not exact in float16 (outside its range)")
    return values


def uniform(rng: np.random.Generator, low: float, high: float, size: tuple[int, ...]) -> np.ndarray:
    """``rng.uniform(low, high, size)``'s values, computed so that no CPU can round them otherwise.

    ``rng.random`` scales integers by 2**-53 (exact); the multiply and the add are
    then two numpy operations, each rounded once, where numpy's compiled
    ``uniform`` may be fused into one FMA on some CPUs (aarch64) and round differently.
    """
    return low + (high - low) * rng.random(size)


def bias_shape(layer: LayerSpec) -> tuple[int, ...]:
    width = len(layer.gates) * layer.units
    if layer.cell == "gru" and layer.reset_after:
        return (2, width)
    return (width,)


def weight_shapes(layer: LayerSpec, features: int) -> dict[str, tuple[int, ...]]:
    """Keras layout: kernel (features, G*units), recurrent (units, G*units), bias."""
    width = len(layer.gates) * layer.units
    shapes = {"kernel": (features, width), "recurrent_kernel": (layer.units, width)}
    if layer.use_bias:
        shapes["bias"] = bias_shape(layer)
    return shapes


def _blocks(values: tuple[float, ...], layer: LayerSpec, rows: int) -> np.ndarray:
    gates = len(layer.gates)
    row = np.repeat(np.asarray(values[:gates], dtype=np.float64), layer.units)
    return np.tile(row, (rows, 1))


def constant_weights(layer: LayerSpec, features: int) -> dict[str, np.ndarray]:
    shapes = weight_shapes(layer, features)
    weights = {
        "kernel": np.full(shapes["kernel"], TUTORIAL_KERNEL),
        "recurrent_kernel": np.full(shapes["recurrent_kernel"], TUTORIAL_RECURRENT),
    }
    if layer.use_bias:
        bias = np.full(shapes["bias"], TUTORIAL_BIAS)
        if layer.cell == "lstm":
            # keras LSTM.build: unit_forget_bias concatenates
            # [init(units), ones(units), init(2*units)], replacing the forget block.
            bias[layer.units:2 * layer.units] = 1.0
        weights["bias"] = bias
    return {name: as_float32_values(value) for name, value in weights.items()}


def per_gate_weights(layer: LayerSpec, features: int) -> dict[str, np.ndarray]:
    weights = {
        "kernel": _blocks(PER_GATE_KERNEL, layer, features),
        "recurrent_kernel": _blocks(PER_GATE_RECURRENT, layer, layer.units),
    }
    if layer.use_bias:
        bias = _blocks(PER_GATE_BIAS, layer, 1)[0]
        if layer.cell == "gru" and layer.reset_after:
            bias = np.stack([bias, _blocks(PER_GATE_RECURRENT_BIAS, layer, 1)[0]])
        weights["bias"] = bias
    return {name: as_float32_values(value) for name, value in weights.items()}


RANDOM_SCALE = {"kernel": 0.6, "recurrent_kernel": 0.6, "bias": 0.3}
SATURATING_SCALE = {"kernel": 3.0, "recurrent_kernel": 2.0, "bias": 2.0}


def random_weights(layer: LayerSpec, features: int, rng: np.random.Generator,
                   scale: dict[str, float] = RANDOM_SCALE) -> dict[str, np.ndarray]:
    shapes = weight_shapes(layer, features)
    return {
        name: as_float32_values(uniform(rng, -scale[name], scale[name], shape))
        for name, shape in shapes.items()
    }


def make_weights(layer: LayerSpec, features: int, scheme: str,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weights for one layer under ``scheme``, in Keras layout."""
    if scheme == "constant":
        return constant_weights(layer, features)
    if scheme == "per_gate":
        return per_gate_weights(layer, features)
    if scheme == "random":
        return random_weights(layer, features, rng)
    if scheme == "saturating":
        return random_weights(layer, features, rng, SATURATING_SCALE)
    raise ValueError(f"scheme={scheme!r} is not allowed; expected one of {SCHEMES}")
