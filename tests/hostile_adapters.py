"""Hostile adapters: each misbehaves the way a broken runtime or a careless vendor's code does.

They answer with the oracle (``OracleAdapter``) except where they misbehave,
so every result that is not ``pass`` comes from the misbehaviour alone.
``SoakAdapter`` picks a misbehaviour per test at random (seeded by the test
id); ``soak_behaviour`` is that choice and ``SOAK_STATUS`` the status each
one must end in, for the soak test to check the whole run against.
"""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np

from conformance.matrix.case import Case, test_id
from tests.oracle_adapters import OracleAdapter


def say(text: str) -> None:
    """Straight to file descriptor 2, as native code would write it (no Python buffering)."""
    os.write(2, text.encode() + b"\n")


class NanAdapter(OracleAdapter):
    """Returns NaN at one element of the last output of every GRU case, inf for LSTM's."""

    name = "hostile-nan"

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        outputs = super().run(case, device)
        if case.cell in ("gru", "lstm"):
            last = outputs[-1].copy()
            last.reshape(-1)[-1] = np.nan if case.cell == "gru" else np.inf
            outputs[-1] = last
        return outputs


class ExitZeroAdapter(OracleAdapter):
    """Ends its process with status 0 in the middle of every LSTM case."""

    name = "hostile-exit0"
    status = 0

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        if case.cell == "lstm":
            os._exit(self.status)
        return super().run(case, device)


class ExitOneAdapter(ExitZeroAdapter):
    name = "hostile-exit1"
    status = 1


class AlwaysAbortingAdapter(OracleAdapter):
    """Says which case it is on, then aborts: on every case."""

    name = "hostile-always-abort"

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        say(f"hostile adapter: about to abort on {case.id}")
        os.abort()


class SoakAdapter(OracleAdapter):
    """Misbehaves on some tests, chosen by ``soak_behaviour``; answers right on the rest."""

    name = "hostile-soak"

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        behaviour = soak_behaviour(test_id(case.id, self.name, device, case.dtype))
        say(f"soak: {behaviour} on {case.id}-{case.dtype}")
        if behaviour == "raise":
            raise RuntimeError(f"soak: raising on {case.id}")
        if behaviour == "abort":
            os.abort()
        if behaviour in ("exit0", "exit1"):
            os._exit(int(behaviour[-1]))
        if behaviour == "hang":
            while True:
                time.sleep(60)
        outputs = super().run(case, device)
        if behaviour == "nan":
            outputs[0] = np.full_like(outputs[0], np.nan)
        elif behaviour == "wrong_shape":
            outputs[0] = outputs[0][..., :-1]
        return outputs


# behaviour -> (share of tests per thousand, the status the run must record)
SOAK_BEHAVIOURS = {"nan": (20, "fail"), "wrong_shape": (20, "fail"), "raise": (20, "error"),
                   "abort": (8, "error"), "exit0": (5, "error"), "exit1": (5, "error"), "hang": (4, "error")}
SOAK_STATUS = {"ok": "pass", **{name: status for name, (_, status) in SOAK_BEHAVIOURS.items()}}


def soak_behaviour(test: str) -> str:
    """A misbehaviour (or ``ok``) for this test id, the same on every run."""
    draw = int.from_bytes(hashlib.sha256(test.encode()).digest()[:4], "big") % 1000
    for name, (share, _) in SOAK_BEHAVIOURS.items():
        if draw < share:
            return name
        draw -= share
    return "ok"


class SlowToLoadAdapter(OracleAdapter):
    """Takes 4 s in its first ``available()``, as a big framework does to import on a busy machine."""

    name = "hostile-slow-to-load"
    loaded = False

    def available(self) -> str | None:
        if not self.loaded:
            time.sleep(4)
            self.loaded = True
        return None


class HangingAtStartAdapter(OracleAdapter):
    """Never comes back from ``available()``: a framework that hangs while it loads, before any test."""

    name = "hostile-hang-at-start"

    def available(self) -> str | None:
        while True:
            time.sleep(60)
