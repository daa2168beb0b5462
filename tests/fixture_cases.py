"""The checked-in fixtures' cases, loaded once per test process: loading checks every file and
replays the oracle (seconds), and several test modules read the same cases."""

from __future__ import annotations

import functools

from conformance.fixtures import load_cases
from conformance.matrix.case import Case
from conformance.matrix.covering import CoveringPlan, covering_plan


@functools.cache
def fixture_cases() -> tuple[Case, ...]:
    return tuple(load_cases())


@functools.cache
def fixtures_covering_plan() -> CoveringPlan:
    return covering_plan(fixture_cases())
