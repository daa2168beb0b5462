"""The same seed gives the same unseen cases whoever draws them, whatever the kernels.

Each variant of ``test_fixture_independence`` (numpy's SIMD dispatch switched off level by level,
another OpenBLAS core type, one thread or two) draws the same seed's cases in a fresh process.
What an adapter is handed (ids, dtype rows, inputs, states, masks, tokens, weights) must be the
same bytes under every one, as the issue asks ("the same seed gives the same cases anywhere").
The float64 oracle's answer is the same bytes under other thread counts; under other SIMD and
BLAS kernels its last bits move (``reference.numbers``), and must stay within FORWARD_ULPS of
the default's, the bound the fixtures hold that oracle to (4.5e-6 of the float64 tolerance at
worst over the fixed matrix: ``tests/test_unseen.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conformance.fixtures import FORWARD_ULPS, scaled_ulps
from tests.test_fixture_independence import _environment, kernel_variants

COUNT, SEED = 120, 20261207  # ten cases of each family
THREAD_VARIANTS = ("default", "one thread", "two threads")

# Prints, per case: its dtype rows, the SHA-256 of its inputs as a fixture file holds them, and its
# float64 answer's bytes.
DRAW = """
import hashlib, json, sys
from conformance.fixtures import case_arrays, npz_bytes
from conformance.matrix.unseen import unseen_cases
from conformance.reference import answered
print(json.dumps({case.id: {"dtypes": case.dtypes,
                            "inputs": hashlib.sha256(npz_bytes(case_arrays(case, []))).hexdigest(),
                            "expected": [[a.shape, a.tobytes().hex()] for a in case.expected]}
                  for case in map(answered, unseen_cases(int(sys.argv[1]), int(sys.argv[2])))}))
"""


def _draw(overrides: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", DRAW, str(COUNT), str(SEED)], env=_environment(overrides),
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def draws() -> dict[str, dict]:
    variants = kernel_variants()
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(variants, pool.map(_draw, variants.values())))


def _question(drawn: dict) -> dict:
    return {case_id: (case["dtypes"], case["inputs"]) for case_id, case in drawn.items()}


def _answers(drawn: dict) -> dict[str, list[np.ndarray]]:
    return {case_id: [np.frombuffer(bytes.fromhex(data), dtype=np.float64).reshape(shape)
                      for shape, data in case["expected"]] for case_id, case in drawn.items()}


@pytest.mark.parametrize("variant", list(kernel_variants()))
def test_the_same_seed_gives_byte_identical_cases_under_other_kernels(draws, variant):
    assert len(draws[variant]) == COUNT
    assert _question(draws[variant]) == _question(draws["default"])


@pytest.mark.parametrize("variant", THREAD_VARIANTS)
def test_the_float64_answers_are_byte_identical_under_other_thread_counts(draws, variant):
    assert _answers(draws[variant]).keys() == _answers(draws["default"]).keys()
    assert [case["expected"] for case in draws[variant].values()] == \
        [case["expected"] for case in draws["default"].values()]


@pytest.mark.parametrize("variant", [name for name in kernel_variants() if name not in THREAD_VARIANTS])
def test_the_float64_answers_move_by_at_most_forward_ulps_under_other_simd_and_blas_kernels(draws, variant):
    default, other = _answers(draws["default"]), _answers(draws[variant])
    moved = {case_id: max(scaled_ulps(a, b) for a, b in zip(default[case_id], other[case_id], strict=True))
             for case_id in default}
    assert max(moved.values()) <= FORWARD_ULPS, max(moved.items(), key=lambda item: item[1])
