"""Developer aid: run one adapter over the case matrix against the oracle, print a tally.

``python -m conformance.commands.devcheck ADAPTER [-k SUBSTRING] [--dtype float32] [--device cpu] [-v]``

Not the conformance tests (those are pytest, ``conformance/test_conformance.py``):
this is the quick loop used while writing an adapter.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import time

from conformance.adapters import load_adapter
from conformance.matrix.cases import build_cases
from conformance.reference import expected_outputs
from conformance.verdict.check import check_case


def check(adapter, case, device: str) -> tuple[str, str]:
    """The same verdict as the conformance tests (check_case), against the oracle's answer."""
    case = dataclasses.replace(case, expected=tuple(expected_outputs(case)))
    outcome = check_case(adapter, case, device)
    return outcome.status, outcome.message + ("\n" + outcome.traceback if outcome.traceback else "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("adapter")
    parser.add_argument("-k", default="")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("-v", action="store_true")
    args = parser.parse_args()
    adapter = load_adapter(args.adapter)
    print("available:", adapter.available())
    tally: collections.Counter = collections.Counter()
    reasons: collections.Counter = collections.Counter()
    start = time.time()
    for base in build_cases():
        if args.k not in base.id:
            continue
        for dtype in base.dtypes if args.dtype is None else [args.dtype]:
            case = base.for_dtype(dtype)
            status, detail = check(adapter, case, args.device)
            tally[status] += 1
            if status != "pass":
                reasons[(status, detail.splitlines()[0][:150])] += 1
                if args.v or status in ("fail", "error"):
                    print(f"{status:11} {case.id}[{dtype}] {detail}")
    print(dict(tally), f"{time.time() - start:.1f}s")
    for (status, detail), n in reasons.most_common(30):
        print(f"  {n:4} {status}: {detail}")


if __name__ == "__main__":
    main()
