"""The adapters' own process: where adapter code runs during a conformance run, apart from the answers.

The judging process (the pytest session of ``conformance.plugin``) holds the golden
outputs; an adapter must not be able to reach them, by ``case.expected`` or by looking
through the process's memory (issue 30). So the session starts one worker process
(``AdapterWorker``), loads its adapters there and talks to each through a
``RemoteAdapter``: every member call crosses a pipe, and ``ask`` hands over the
question alone (``Case.question``) and brings back a plain ``Answer``.

What crosses back is unpickled with a short list of allowed classes (numpy's arrays,
``Answer``, built-in containers): nothing an adapter sends makes the judging process
import or run its code. A worker that dies takes the judging process with it, the same
way (``mirror``): a crash reads as it always did, "the adapter process killed by signal
SIGSEGV during this test", and ``conformance run``'s supervisor restarts both.

Run as ``python -m conformance.adapters.worker REQUESTS_FD REPLIES_FD``.
"""

from __future__ import annotations

import faulthandler
import io
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

from conformance.adapters import UnknownAdapterError, load_adapter
from conformance.adapters.asking import Answer, ask, error_text
from conformance.adapters.contract import LoadedAdapter
from conformance.matrix.case import Case

MEMBERS = ("available", "devices", "versions", "device_name", "last_run_info")
EXIT_WAIT_S = 10.0  # how long a worker that closed its pipe may take to end before it is killed
# What the judging process unpickles from the worker: data, never code.
ALLOWED_BUILTINS = {"set", "frozenset", "complex", "slice", "range", "bytearray", "bytes", "list", "dict",
                    "tuple", "str", "int", "float", "bool"}
ALLOWED_MODULES = ("numpy", "ml_dtypes")
ALLOWED_CLASSES = {("conformance.adapters.asking", "Answer"), ("conformance.adapters.asking", "Unlisted"),
                   ("conformance.adapters.worker", "Opaque")}
PLAIN_TYPES = (bool, int, float, complex, str, bytes)  # sent as their base type (a str subclass as a str)


@dataclass(frozen=True)
class Opaque:
    """Stands for an object of the adapter's own that an answer held: its type and repr travel, so that
    the contract checks can name it, and the object itself (whose class the judge does not load) stays."""

    type_name: str
    text: str

    def __repr__(self) -> str:
        return self.text


class AdapterRaised(Exception):
    """An adapter member raised in the worker: its exception in words (type and message)."""


class Unreadable(Exception):
    """The worker sent something the judging process does not unpickle (a class not allowed)."""


class DataUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, ``Answer`` and built-in data; refuses any other class."""

    def find_class(self, module: str, name: str) -> Any:
        root = module.split(".")[0]
        if (module == "builtins" and name in ALLOWED_BUILTINS) or root in ALLOWED_MODULES \
                or (module, name) in ALLOWED_CLASSES:
            return super().find_class(module, name)
        raise Unreadable(f"{module}.{name}")


# --- the judging process's side ------------------------------------------------------------------


class AdapterWorker:
    """The worker process of one session, started on first use; every adapter of the session lives in it."""

    def __init__(self) -> None:
        requests_read, requests_write = os.pipe()
        replies_read, replies_write = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "conformance.adapters.worker", str(requests_read), str(replies_write)],
            pass_fds=(requests_read, replies_write), stdin=subprocess.DEVNULL)
        os.close(requests_read)
        os.close(replies_write)
        self.requests = Connection(requests_write, readable=False)
        self.replies = Connection(replies_read, writable=False)

    def call(self, op: str, requested: str, *args: Any) -> Any:
        """The worker's reply to ``op`` on the adapter asked for as ``requested``; its exception, raised
        here as ``AdapterRaised``; the worker's death, mirrored by this process (``mirror``)."""
        try:
            self.requests.send_bytes(pickle.dumps((op, requested, args)))
            data = self.replies.recv_bytes()
        except (EOFError, OSError):
            mirror(self.ended_code())
        try:
            kind, value = DataUnpickler(io.BytesIO(data)).load()
        except Unreadable as exc:
            why = (f"{op}() answered with a {exc} object, which the judging process does not load (only "
                   "numbers, text, numpy arrays and built-in containers cross)")
            if op == "ask":
                return Answer("error", message=why)
            raise AdapterRaised(why) from None
        if kind == "raised":
            raise AdapterRaised(value)
        if kind == "unknown":
            raise UnknownAdapterError(value)
        return value

    def ended_code(self) -> int:
        """The exit code of a worker whose pipe closed (killed if it lingers)."""
        try:
            return self.process.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def close(self) -> None:
        """Ask the worker to end, and wait for it (its peak memory then counts in this process's)."""
        if self.process.poll() is None:
            try:
                self.requests.send_bytes(pickle.dumps(("quit", "", ())))
            except OSError:
                pass
            self.ended_code()
        self.requests.close()
        self.replies.close()


class RemoteAdapter:
    """An adapter loaded in the worker, with the members ``LoadedAdapter`` has, and ``ask``."""

    def __init__(self, worker: AdapterWorker, requested: str):
        self.worker, self.requested = worker, requested
        facts = worker.call("load", requested)
        self.name: str = facts["name"]
        self.declared_devices: tuple[str, ...] = facts["declared_devices"]
        self.compiles_per_structure: bool = facts["compiles_per_structure"]

    def available(self) -> str | None:
        return self.worker.call("available", self.requested)

    def devices(self) -> Any:
        return self.worker.call("devices", self.requested)

    def versions(self) -> Any:
        return self.worker.call("versions", self.requested)

    def device_name(self, device: str) -> Any:
        return self.worker.call("device_name", self.requested, device)

    def last_run_info(self) -> Any:
        return self.worker.call("last_run_info", self.requested)

    def ask(self, question: Case, device: str) -> Answer:
        """The adapter's ``Answer`` to ``question`` (which must hold no answer itself)."""
        if question.expected is not None:
            raise ValueError(f"case {question.id}: an adapter is handed the question alone (Case.question)")
        return self.worker.call("ask", self.requested, question, device)


def mirror(code: int) -> None:
    """End this process as the worker ended: killed by the same signal, or with the same status."""
    sys.stdout.flush()
    sys.stderr.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        time.sleep(5)  # a signal that does not end a process (SIGCHLD...) ends it below
    os._exit(code if code >= 0 else 128 - code)


# --- the worker's side ------------------------------------------------------------------------------


def reply(adapters: dict[str, LoadedAdapter], op: str, requested: str, args: tuple) -> tuple[str, Any]:
    """("ok", value), ("raised", what it raised) or ("unknown", why the adapter does not load)."""
    if op == "load":
        try:
            adapters[requested] = loaded = load_adapter(requested)
        except UnknownAdapterError as exc:
            return "unknown", str(exc)
        return "ok", {"name": loaded.name, "declared_devices": loaded.declared_devices,
                      "compiles_per_structure": loaded.compiles_per_structure}
    adapter = adapters[requested]
    if op == "ask":
        return "ok", ask(adapter, *args)
    if op not in MEMBERS:
        raise ValueError(f"unknown request {op!r}")
    try:
        return "ok", getattr(adapter, op)(*args)
    except Exception as exc:  # noqa: BLE001 - the adapter's, said in the judging process
        return "raised", error_text(exc)


def plain(value: Any) -> Any:
    """``value`` as built-in data: containers rebuilt, a subclass of str (``torch.__version__``), int,
    float... as its base type, numpy's arrays and scalars as they are, any other object ``Opaque``."""
    if isinstance(value, Answer):
        return replace(value, message=plain(value.message), run_info=plain(value.run_info))
    for kind in PLAIN_TYPES:
        if isinstance(value, kind):
            return value if type(value) is kind else (str.__str__(value) if kind is str else kind(value))
    if value is None or type(value).__module__.split(".")[0] in ALLOWED_MODULES:
        return value
    if isinstance(value, (list, tuple)):
        return (list if isinstance(value, list) else tuple)(plain(item) for item in value)
    if isinstance(value, dict):
        return {plain(key): plain(item) for key, item in value.items()}
    text = object.__repr__(value) if type(value).__repr__ is object.__repr__ else _safe_repr(value)
    return Opaque(f"{type(value).__module__}.{type(value).__qualname__}", text)


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)[:300]
    except Exception:  # noqa: BLE001 - a repr that raises still names the type
        return f"a {type(value).__name__}"


def sendable(op: str, answer: tuple[str, Any]) -> bytes:
    """The reply as plain data, pickled; one that does not pickle becomes the adapter's error, in words."""
    try:
        return pickle.dumps(plain(answer))
    except Exception as exc:  # noqa: BLE001 - whatever the adapter put in it
        why = f"{op}() answered with something that cannot leave the adapter's process: {error_text(exc)}"
        return pickle.dumps(("ok", Answer("error", message=why)) if op == "ask" else ("raised", why))


def serve(requests: Connection, replies: Connection) -> None:
    """Answer requests until ``quit`` or until the judging process is gone."""
    adapters: dict[str, LoadedAdapter] = {}
    while True:
        try:
            op, requested, args = pickle.loads(requests.recv_bytes())
        except EOFError:
            return
        if op == "quit":
            return
        replies.send_bytes(sendable(op, reply(adapters, op, requested, args)))


def watch_parent() -> None:
    """The worker never outlives the judging process, even one killed while an adapter computes."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, name="conformance-worker-watch", daemon=True).start()


def main(argv: list[str]) -> None:
    faulthandler.enable()  # a crash's Python traceback on stderr, as pytest's own process gives it
    watch_parent()
    requests, replies = Connection(int(argv[0]), writable=False), Connection(int(argv[1]), readable=False)
    try:
        serve(requests, replies)
    except KeyboardInterrupt:  # a Ctrl-C reached the process: end as SIGINT ends a process
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)


if __name__ == "__main__":
    main(sys.argv[1:])
