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

from conformance.matrix.case import Case, numpy_dtype, test_id
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
    """Takes ``LOAD_SECONDS`` in its first ``available()``, as a big framework does to import on a busy machine."""

    name = "hostile-slow-to-load"
    loaded = False
    LOAD_SECONDS = 12

    def available(self) -> str | None:
        if not self.loaded:
            time.sleep(self.LOAD_SECONDS)
            self.loaded = True
        return None


class HangingAtStartAdapter(OracleAdapter):
    """Never comes back from ``available()``: a framework that hangs while it loads, before any test."""

    name = "hostile-hang-at-start"

    def available(self) -> str | None:
        while True:
            time.sleep(60)


# --- issue 29: what one adapter does must not bend a verdict -----------------------------------


class InPlaceAdapter(OracleAdapter):
    """Answers right, then writes into everything it was handed (an in-place optimisation gone
    wide): x, the mask, the states, the weights, the tokens, even the expected answer."""

    name = "hostile-in-place"

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        outputs = super().run(case, device)
        for array in (case.x, case.mask, case.tokens, case.embeddings, case.decoder_x, case.earlier_x,
                      *(case.initial_state or ()), *(case.expected or ()),
                      *(w for layer in case.weights.values() for w in layer.values())):
            if array is not None:
                array[...] = 0 if array.dtype.kind == "b" else array.flat[0] + 7
        if case.mask is not None:
            case.mask[..., 0] = True
        return outputs


class SeterrRaiseAdapter(OracleAdapter):
    """Answers right (under an error state of its own), having made numpy raise on every
    floating-point exception, process-wide, for whatever runs after it."""

    name = "hostile-seterr"

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        with np.errstate(all="ignore"):
            outputs = super().run(case, device)
        np.seterr(all="raise")
        return outputs


class TextOutputAdapter(OracleAdapter):
    """Returns its first output as words (``str`` dtype) on LSTM cases, as ``None`` objects on GRU's."""

    name = "hostile-text"

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        outputs = super().run(case, device)
        if case.cell == "lstm":
            outputs[0] = np.full(outputs[0].shape, "wrong")
        elif case.cell == "gru":
            outputs[0] = np.full(outputs[0].shape, None, dtype=object)
        return outputs


class ChdirAdapter(OracleAdapter):
    """Moves its process one directory deeper (``elsewhere/``, made where it stands) on every run."""

    name = "hostile-chdir"

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        os.makedirs("elsewhere", exist_ok=True)
        os.chdir("elsewhere")
        return super().run(case, device)


class BellNameAdapter(OracleAdapter):
    """A name with a bell and an escape in it: stored as ``\\x07`` and ``\\x1b``."""

    name = "hostile-\x07bell\x1b"


class NoneDevicesAdapter(OracleAdapter):
    """``devices()`` returns None, not a list."""

    name = "hostile-none-devices"

    def devices(self):
        return None


class IntDevicesAdapter(OracleAdapter):
    """``devices()`` returns an int."""

    name = "hostile-int-devices"

    def devices(self):
        return 1


class IntDeviceNameAdapter(OracleAdapter):
    """``device_name()`` returns an int, not the device's name."""

    name = "hostile-int-device-name"

    def device_name(self, device: str):
        return 0


class BytesVersionsAdapter(OracleAdapter):
    """``versions()`` has a bytes key."""

    name = "hostile-bytes-versions"

    def versions(self):
        return {b"oracle": "1.0"}


class SameNameAdapter(OracleAdapter):
    """Another class that calls itself ``oracle``, as ``OracleAdapter`` does."""

    name = "oracle"


class KeyboardInterruptAdapter(OracleAdapter):
    """Raises ``KeyboardInterrupt`` inside ``run`` on LSTM cases (no Ctrl-C was pressed)."""

    name = "hostile-keyboard-interrupt"

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        if case.cell == "lstm":
            raise KeyboardInterrupt
        return super().run(case, device)


class LoudAdapter(OracleAdapter):
    """Writes 20 MB to stderr on its first run."""

    name = "hostile-loud"
    said = False

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        if not self.said:
            self.said = True
            line = b"loud adapter: " + b"x" * 1010 + b"\n"
            for _ in range(20_000):
                os.write(2, line)
        return super().run(case, device)


class GrandchildAdapter(OracleAdapter):
    """Leaves a process behind that would sleep for ten minutes (a worker pool, a compiler server);
    its pid goes to the file ``$HOSTILE_GRANDCHILD_PID``."""

    name = "hostile-grandchild"
    started = False

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        if not self.started:
            self.started = True
            import subprocess
            import sys

            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            with open(os.environ["HOSTILE_GRANDCHILD_PID"], "w") as pid_file:
                pid_file.write(str(child.pid))
        return super().run(case, device)


class AnswerCopyingAdapter(OracleAdapter):
    """Cheats: returns the golden answer it was handed (``case.expected``) or any it can find in its
    process's memory; raises LookupError when it finds none (issue 30)."""

    name = "cheat-answer"

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        found = case.expected if case.expected is not None else answer_in_memory(case.id)
        if found is None:
            raise LookupError(f"no answer to copy: case.expected is None and no Case object of this process "
                              f"holds one for {case.id}")
        return [np.asarray(a).astype(numpy_dtype(case.dtype)) for a in found]


def answer_in_memory(case_id: str) -> tuple | None:
    """The expected outputs of any ``Case`` object with this id that the process holds."""
    import gc

    held = (obj for obj in gc.get_objects() if isinstance(obj, Case) and obj.id == case_id)
    return next((obj.expected for obj in held if obj.expected is not None), None)


class FixtureReadingAdapter(OracleAdapter):
    """Cheats: reads the golden answer from the public fixture files (``fixtures/cases/ID.npz``);
    raises FileNotFoundError for a case that has none."""

    name = "cheat-fixtures"

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        from pathlib import Path

        path = Path(__file__).resolve().parent.parent / "fixtures" / "cases" / f"{case.id}.npz"
        with np.load(path) as stored:
            answers = [stored[f"expected.{n}"] for n in range(len(case.output_names))]
        return [a.astype(numpy_dtype(case.dtype)) for a in answers]


class PausingAdapter(OracleAdapter):
    """Answers its process's first case, then sleeps ten minutes on each later one: a run that is
    certainly still going once one result has passed (for a test that interrupts it then)."""

    name = "oracle"
    answered = False

    def run(self, case: Case, device: str) -> list[np.ndarray]:
        if self.answered:
            time.sleep(600)
        self.answered = True
        return super().run(case, device)
