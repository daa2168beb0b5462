"""``conformance search --adapter NAME [--budget MINUTES] [--seed S]``: find disagreements nobody
listed, and shrink each to the smallest case that still shows it.

The fixed matrix only asks what someone thought of. The search draws cases from the same space
(``conformance.matrix.drawn``: every dimension the families use, combined freely) with
Hypothesis, runs each through the adapter in this process, judges it by the same rule and
tolerance as ``run`` against the float64 oracle, and treats a ``fail`` or ``error`` that no
known-differences entry explains as a disagreement. Hypothesis then shrinks it (fewest steps,
smallest batch, features and units, the simplest cell, flags and options: each dimension's
simplest value is its first) and the search writes, per disagreement, under ``-o DIR``:

    DIR/search.json             adapter, seed, budget, spent, cases tried, the disagreements
                                (test id, status, message, the shrunk draw), complete or not
    DIR/NN-<case id>/case.json  the shrunk draw: a proposed fixture case, added to the fixed
                                matrix with ``conformance search --adopt DIR/NN-.../case.json``
    DIR/NN-<case id>/repro/     ``conformance repro``'s files for it, where the adapter has a reproducer

A search explores in rounds of ``ROUND`` cases, each seeded ``seed + round``; a round ends at its
first disagreement (then shrunk), and later rounds look past the kinds already found (status,
cell, composite, first failing output). Hypothesis's database of failing examples (``DIR/.hypothesis``)
replays earlier finds first. Exit 1 when an unexplained disagreement was found, else 0;
Ctrl-C writes what was found so far, marked incomplete (exit 130).

The adapter runs in this process, as ``devcheck`` runs it: a crash of the framework ends the search
(the run's supervisor is not here), and there is no per-case timeout beyond the budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path

from conformance.commands.exits import EXIT_OK, UsageError
from conformance.files import write_text_atomic
from conformance.matrix.drawn import DTYPES, Draw, drawn_case
from conformance.matrix.properties import case_properties
from conformance.renamed import add_renamed

ROUND = 60  # cases a round draws before the next seed
QUIET_S = 10.0  # progress lines apart, where stderr is not a terminal
EXIT_FOUND = 1
EXIT_INTERRUPTED = 130
DRAWN_CASES = Path(__file__).resolve().parent.parent / "matrix" / "drawn_cases.json"


@dataclasses.dataclass
class Found:
    """One shrunk disagreement."""

    test_id: str
    status: str
    message: str
    draw: Draw

    def kind(self) -> tuple:
        return kind_of(self.status, self.draw, self.message)

    def to_dict(self) -> dict:
        return {"test_id": self.test_id, "status": self.status, "message": self.message, "draw": self.draw.to_dict()}


def kind_of(status: str, draw: Draw, message: str) -> tuple:
    """What makes two disagreements the same kind: later rounds look past a kind already found."""
    tensor = re.search(r"output (\d+)|'(\w+)'", message)
    return status, draw.cell, draw.composite, tensor.group(0) if tensor else ""


@dataclasses.dataclass
class Search:
    """One search's state: what it was asked, what it tried and found."""

    adapter: object
    device: str
    dtypes: tuple[str, ...]
    seed: int
    budget_s: float
    known: object
    versions: dict
    started: float = dataclasses.field(default_factory=time.monotonic)
    tried: int = 0
    found: list[Found] = dataclasses.field(default_factory=list)
    complete: bool = False
    shown: float = float("-inf")  # when progress last wrote a line
    max_found: float = float("inf")  # stop after this many disagreements

    @property
    def left_s(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    @property
    def spent_s(self) -> float:
        """Seconds searched: the budget at most (the last case may run past it; its time is its own)."""
        return min(self.budget_s, time.monotonic() - self.started)

    def judge(self, draw: Draw) -> tuple[str, str, str, str | None]:
        """(test id, status, message, known reason) of ``draw`` on the adapter, against the oracle."""
        from conformance.reference import expected_outputs
        from conformance.verdict.check import check_case

        case = drawn_case(draw)
        case = dataclasses.replace(case, expected=tuple(expected_outputs(case)))
        outcome = check_case(self.adapter, case, self.device, diagnose_failure=False)
        test_id = f"{case.id}[{self.adapter.name}-{self.device}-{case.dtype}]"
        known = self.known.reason_for(test_id, self.versions, case_properties(case)) \
            if outcome.status in ("fail", "error") else None
        self.tried += 1
        return test_id, outcome.status, outcome.message, known

    def progress(self, stream) -> None:
        """One updating line on a terminal; elsewhere (a CI log) a plain line every ``QUIET_S`` seconds."""
        line = (f"search {self.adapter.name}: {self.tried} cases tried, {len(self.found)} disagreements, "
                f"{max(0.0, self.left_s):.0f} s left")
        if stream.isatty():
            stream.write("\r" + line + " ")
        elif time.monotonic() - self.shown >= QUIET_S:
            stream.write(line + "\n")
        else:
            return
        self.shown = time.monotonic()
        stream.flush()


class Disagreement(Exception):
    """Raised inside a Hypothesis example: the draw disagrees (Hypothesis shrinks it)."""


def one_round(search: Search, round_seed: int, database_dir: Path, stream) -> Found | None:
    """Up to ``ROUND`` draws from ``round_seed``; the first disagreement of a new kind, shrunk, or None."""
    import hypothesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.database import DirectoryBasedExampleDatabase

    from conformance.matrix.drawn import draws

    seen = {found.kind() for found in search.found}
    last: dict[str, Found] = {}

    @settings(max_examples=ROUND, deadline=None, database=DirectoryBasedExampleDatabase(str(database_dir)),
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False, print_blob=False)
    @hypothesis.seed(round_seed)
    @given(draws(search.dtypes))
    def probe(draw: Draw) -> None:
        if search.left_s <= 0:
            return  # the budget is spent: every later example (and shrink step) passes at once
        test_id, status, message, known = search.judge(draw)
        search.progress(stream)
        if status in ("fail", "error") and known is None and kind_of(status, draw, message) not in seen:
            last["found"] = Found(test_id, status, message, draw)
            raise Disagreement(test_id)

    try:
        probe()
    except (Disagreement, hypothesis.errors.Flaky, hypothesis.errors.FlakyFailure):
        # Flaky: a disagreement that did not recur on Hypothesis's replay (the budget ran out in
        # between, or the adapter is not deterministic): the last one seen is still one.
        return last.get("found")
    return None


def run_search(search: Search, output_dir: Path, stream) -> None:
    """Rounds until the budget is spent (or ``max_found`` disagreements are found); then ``complete``."""
    round_index = 0
    while search.left_s > 0 and len(search.found) < search.max_found:
        found = one_round(search, search.seed + round_index, output_dir / ".hypothesis", stream)
        if found is not None:
            search.found.append(found)
            lead = "\n" if stream.isatty() else ""
            stream.write(f"{lead}found: {found.test_id}: {found.status}: {one_line(found.message)}\n")
            if len(search.found) >= search.max_found:
                break
        round_index += 1
    search.complete = True


def one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def write_findings(search: Search, output_dir: Path) -> None:
    """search.json, and per disagreement its proposed case and its reproducer."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for n, found in enumerate(search.found, 1):
        where = output_dir / f"{n:02d}-{found.test_id.split('[')[0]}"
        where.mkdir(exist_ok=True)
        write_text_atomic(where / "case.json", json.dumps(
            {"case_id": found.test_id.split("[")[0], "test_id": found.test_id, "draw": found.draw.to_dict(),
             "adopt": f"conformance search --adopt {where / 'case.json'}"}, indent=2) + "\n")
        write_reproducer(search, found, where / "repro")
    document = {"adapter": search.adapter.name, "device": search.device, "dtypes": list(search.dtypes),
                "seed": search.seed, "budget_s": search.budget_s, "spent_s": round(search.spent_s, 1),
                "tried": search.tried, "complete": search.complete,
                "disagreements": [found.to_dict() for found in search.found]}
    write_text_atomic(output_dir / "search.json", json.dumps(document, indent=2) + "\n")


def write_reproducer(search: Search, found: Found, directory: Path) -> None:
    """``conformance repro``'s files for the shrunk case, or a note saying why there are none."""
    from conformance.commands.repro import write_repro
    from conformance.reference import expected_outputs

    case = drawn_case(found.draw)
    case = dataclasses.replace(case, expected=tuple(expected_outputs(case)))
    if getattr(search.adapter, "reproducer", None) is None:
        return
    try:
        write_repro(directory, found.test_id, case, case, search.adapter, search.device)
    except Exception as exc:  # noqa: BLE001 - the reproducer's refusal is a note, not the search's end
        directory.mkdir(exist_ok=True)
        write_text_atomic(directory / "NOT-WRITTEN.txt", f"no reproducer: {one_line(str(exc))}\n")


# --- the command -------------------------------------------------------------------------------


def search_command(args: argparse.Namespace) -> int:
    if args.adopt is not None:
        return adopt(args.adopt)
    if args.adapter is None:
        raise UsageError("search needs --adapter NAME (or --adopt CASE_JSON)")
    search = prepared_search(args)
    interrupted = False
    try:
        run_search(search, args.output_dir, sys.stderr)
    except KeyboardInterrupt:
        interrupted = True
    sys.stderr.write("\n")
    write_findings(search, args.output_dir)
    print(summary(search, args.output_dir))
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FOUND if search.found else EXIT_OK


def prepared_search(args: argparse.Namespace) -> Search:
    """The adapter loaded and checked, the known-differences lists read: every refusal before a case runs."""
    from conformance.adapters import load_adapter
    from conformance.verdict.known_differences import known_difference_files, load_known_differences

    if not args.budget > 0:
        raise UsageError(f"--budget must be a positive number of minutes, not {args.budget:g}")
    adapter = load_adapter(args.adapter)
    reason = adapter.available()
    if reason:
        raise UsageError(f"adapter {adapter.name} cannot run here: {reason}")
    if args.device not in adapter.devices():
        raise UsageError(f"adapter {adapter.name} has no {args.device} device here (its devices: "
                         f"{', '.join(adapter.devices())})")
    known = load_known_differences(known_difference_files(args.known_differences or []))
    check_output_dir(args.output_dir)
    if args.max_found is not None and args.max_found < 1:
        raise UsageError(f"--max-found must be at least 1, not {args.max_found}")
    return Search(adapter, args.device, tuple(args.dtype or ("float32",)), args.seed, args.budget * 60.0, known,
                  adapter.versions(), max_found=args.max_found or float("inf"))


def check_output_dir(output_dir: Path) -> None:
    """A search writes into a directory of its own: an existing search.json there is not overwritten."""
    if (output_dir / "search.json").exists():
        raise UsageError(f"{output_dir} already holds a search (search.json): give another -o DIR")
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"{output_dir} is not a directory")


def summary(search: Search, output_dir: Path) -> str:
    state = "complete" if search.complete else "INCOMPLETE (interrupted)"
    lines = [f"search {search.adapter.name} ({search.device}, {'/'.join(search.dtypes)}), seed {search.seed}: "
             f"{search.tried} cases tried in {search.spent_s:.0f} s, "
             f"{len(search.found)} unexplained disagreements; {state}; written to {output_dir / 'search.json'}"]
    lines += [f"  {found.test_id}: {found.status}: {one_line(found.message, 160)}" for found in search.found]
    return "\n".join(lines)


def adopt(case_json: Path) -> int:
    """Add a search's proposed case to the fixed matrix (``conformance/matrix/drawn_cases.json``, the
    ``drawn_cases`` family); ``conformance fixtures build`` then computes its exact answer."""
    try:
        proposal = json.loads(case_json.read_text())
        draw = Draw(**proposal["draw"]).normalized()
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise UsageError(f"{case_json}: not a search's case.json ({one_line(str(exc), 120)})") from None
    adopted = json.loads(DRAWN_CASES.read_text())
    if draw.to_dict() in adopted:
        print(f"{draw.case_id()} is already in the matrix")
        return EXIT_OK
    adopted.append(draw.to_dict())
    write_text_atomic(DRAWN_CASES, json.dumps(adopted, indent=1) + "\n")
    print(f"added {draw.case_id()} to {DRAWN_CASES}; now run: conformance fixtures build")
    return EXIT_OK


def add_parser(commands) -> None:
    """``conformance search``'s options (cli.py registers the command here)."""
    search = commands.add_parser("search", help="draw cases from the matrix's space, find disagreements no known "
                                                "difference explains, and shrink each to its smallest case")
    search.add_argument("--adapter", default=None, metavar="NAME",
                        help="the adapter to search (a built-in name, an entry point or module:Class)")
    search.add_argument("--budget", type=float, default=5.0, metavar="MINUTES",
                        help="how long to search, in minutes (default: %(default)s)")
    search.add_argument("--seed", type=int, default=0, metavar="S",
                        help="the first round's seed; round k uses S + k (default: %(default)s)")
    search.add_argument("--max-found", type=int, default=None, metavar="N",
                        help="stop once N disagreements are found and shrunk (default: search the whole budget)")
    search.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="the device to run on (default: %(default)s)")
    search.add_argument("--dtype", action="append", choices=DTYPES, default=None,
                        help="a dtype to draw (repeatable; default: float32)")
    add_renamed(search, search.add_argument(
        "--known-differences", action="append", default=None, metavar="FILE",
        help="a known-differences list of your own, beside the built-in one (repeatable)"))
    search.add_argument("-o", "--output-dir", type=Path, default=Path("search"), metavar="DIR",
                        help="where search.json and each disagreement's case and reproducer go "
                             "(default: %(default)s)")
    search.add_argument("--adopt", type=Path, default=None, metavar="CASE_JSON",
                        help="instead of searching: add a search's proposed case.json to the fixed matrix")
