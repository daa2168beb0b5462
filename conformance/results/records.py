"""Result records: written as they happen, merged into one results file.

While tests run, each result is one JSON line appended and flushed to a
``.jsonl`` stream, so an interrupted run still has everything that finished.
At the end the streams are merged into ``results.json``, written atomically
(temporary file, then rename):

    {"schema": "rnn-conformance/results/1", "complete": true, "created": ...,
     "fixtures_sha256": ..., "machine": {...}, "machines": {id: {...}}, "adapters": {name: {...}},
     "counts": {outcome: n, ...}, "known_checked": [entry, ...],
     "known_unmatched": [entry, ...], "suite_version": "0.1.0",
     "selection": {"keyword": ..., "device": ..., "dtype": ..., "adapters": [...]},
     "user_known_lists": [{"file": ..., "results": n, ...}, ...], "results": [record, ...]}

A record is a ``Record``; its key is ``test_id`` (``case[adapter-device-dtype]``)
and its ``status`` is one of ``STATUSES``. What a record means for the run is
its ``outcome`` (one of ``OUTCOMES``), decided by ``Record.outcome`` and nowhere
else: a fail or error that the known-differences list explains (``known``, the
entry's reason) is ``known``, so the ``fail`` and ``error`` outcomes are the
unexpected ones. A file written before ``known`` was a field kept it in
``run_info.known_failure``; such a record reads the same (``Record.from_dict``).
``counts`` holds the outcome counts that every report shows.
``suite_version`` is the suite's version that wrote the file and ``selection``
what the run was asked for (``{"keyword", "device", "dtype", "adapters"}``,
``run_selection()``); both null where unknown (a stream, an older file, a merge of
parts that disagree), so that ``conformance compare`` knows which missing
results mean something.
``known_checked`` / ``known_unmatched`` are the known-differences entries this
run could check and those it found matching no result, each written as its pattern and
conditions (``Entry.text``)
(``conformance.verdict.known_differences.KnownDifferences.audit``); both are null when the
run checked none (an interrupted run, or an older file).
``user_known_lists`` is what each of the user's known-differences lists explained,
counted apart from the built-in list (``conformance.results.user_lists``).

``machines`` holds every machine that produced a result (id -> ``machine_info()``),
and each record its machine's id (``machine``), so results merged from several
machines (CI jobs, a GPU runner) each keep theirs (``merge_documents``);
``machine`` is what they all share (all of it for one machine). A file written
before ``machines`` was a field has its one ``machine`` (``document_machines``).

Everything written goes through ``json_safe`` first, so no result is lost to
what an adapter returned or said: a NaN or infinity is the string ``"nan"`` /
``"inf"`` / ``"-inf"`` (JSON has none), and text is made safe for every file
(``safe_text``). Everything read is checked against the published JSON Schema
``RESULTS_SCHEMA_PATH`` (``validate_results``), so reports can rely on types.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from conformance.files import write_text_atomic
from conformance.jsonsafe import json_safe, json_text, safe_text
from conformance.matrix.case import test_id
from conformance.results.machine import add_machine, machine_id, shared_facts
from conformance.results.schema import RESULTS_SCHEMA_PATH as RESULTS_SCHEMA_PATH  # published: vendors check with it
from conformance.results.schema import first_problem
from conformance.verdict.known_differences import Audit, KnownDifferences

SCHEMA = "rnn-conformance/results/1"
STATUSES = ("pass", "fail", "unsupported", "error", "skipped", "not_run")
OUTCOMES = ("pass", "fail", "error", "known", "unsupported", "skipped", "not_run")
UNEXPECTED = ("fail", "error")
VOLATILE_FIELDS = ("duration_s", "created", "started", "finished")
# run_info key of every record of a run in the labelled reduced-precision mode
# (conformance run --reduced-precision-defaults): such a result is no float32 verdict.
REDUCED_PRECISION_KEY = "reduced_precision_defaults"


class ResultsFileError(ValueError):
    """A results file that is missing, malformed or not ours; the message is one line."""


@dataclass(frozen=True)
class Record:
    """One result, with everything a report or a regression comparison needs.

    ``known`` is the harness's verdict (the known-differences reason of a fail
    or error), kept apart from ``run_info``, which holds only what the adapter
    said about its run. ``outcome`` and ``unexpected`` are decided here and
    nowhere else. ``produced`` is False for the record that stands in for a
    planned result the run never reached, so that a run always holds one
    record per planned result: a ``not_run`` where the run was stopped before
    it (Ctrl-C, SIGTERM, pytest's -x): not run is no error; an ``error`` where
    the adapter's process ended early or the supervisor gave up on it.
    """

    test_id: str
    status: str
    message: str = ""
    case_id: str = ""
    adapter: str = "?"
    device: str = "?"
    dtype: str = "?"
    device_name: str = ""
    cell: str = ""
    group: str = ""
    option: str = ""
    scheme: str = ""
    describe: str = ""
    expected: list[dict[str, Any]] = field(default_factory=list)  # [{"name", "shape"}]
    tolerance: dict[str, Any] | None = None
    max_abs: Any = None  # a number, or 'inf' / 'nan' as JSON stores them
    tensors: list[dict[str, Any]] = field(default_factory=list)  # Verdict.to_dict()["tensors"]
    run_info: dict[str, Any] = field(default_factory=dict)
    stderr: str = ""
    duration_s: float = 0.0
    known: str | None = None
    produced: bool = True  # False: a planned result the run could not produce (message says why)
    machine: str = ""  # the id of the machine that produced it, a key of the document's machines
    diagnosis: str = ""  # the porting mistake a failure matches, in words (conformance.verdict.diagnosis)

    @property
    def outcome(self) -> str:
        """What the result means for the run: its status, or ``known`` for a documented fail or error.

        The one place that decides it, so that the summary table, results.json,
        the HTML report, JUnit and the exit status can never disagree.
        """
        return "known" if self.status in UNEXPECTED and self.known else self.status

    @property
    def unexpected(self) -> bool:
        """A fail or error that no known-differences entry explains: what makes a run red."""
        return self.outcome in UNEXPECTED

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (files written before ``known`` was a field still read: ``from_dict``)."""
        return {"record": "result", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """A record from its JSON form, old files included (their ``known`` is ``run_info.known_failure``)."""
        values = {f.name: data[f.name] for f in fields(cls) if data.get(f.name) is not None}
        run_info = dict(values.get("run_info") or {})
        legacy_known = run_info.pop("known_failure", None)
        values.setdefault("case_id", str(data["test_id"]).partition("[")[0])
        return cls(**dict(values, run_info=run_info, known=values.get("known") or legacy_known or None))


def as_record(record: Record | dict[str, Any]) -> Record:
    """``record`` typed: a JSON dict (from a file or stream) becomes a Record."""
    return record if isinstance(record, Record) else Record.from_dict(record)


def make_record(*, case, adapter: str, device: str, dtype: str, status: str, message: str,
                verdict: dict | None = None, duration_s: float = 0.0, device_name: str = "",
                run_info: dict | None = None, stderr: str = "", known: str | None = None,
                produced: bool = True) -> Record:
    """One result of ``case``; ``known`` only for a fail or error (nothing else can be a known difference)."""
    if status not in STATUSES:
        raise ValueError(f"status={status!r} is not allowed; expected one of {STATUSES}")
    return Record(
        test_id=test_id(case.id, adapter, device, dtype), status=status, message=message,
        case_id=case.id, adapter=adapter, device=device, dtype=dtype, device_name=device_name,
        cell=case.cell, group=case.group, option=case.option, scheme=case.scheme,
        describe=case.describe(),
        expected=[{"name": n, "shape": list(a.shape)} for n, a in zip(case.output_names, case.expected or ())],
        tolerance=case.tolerance(dtype).to_dict(),
        max_abs=verdict["max_abs"] if verdict else None, tensors=verdict["tensors"] if verdict else [],
        run_info=dict(run_info or {}), stderr=stderr, duration_s=round(duration_s, 6),
        known=known if status in UNEXPECTED else None, produced=produced,
        diagnosis=(verdict or {}).get("diagnosis") or "")


class JsonlWriter:
    """Appends one JSON object per line, handed to the kernel before ``append`` returns, so that a
    crash of the writing process (segfault, abort, kill) loses nothing finished.

    Not fsynced: the kernel keeps what a dead process wrote, and the supervisor reading the
    stream runs on the same machine; a machine crash ends the supervisor's run as well. An
    fsync per line cost 3-4 ms, a fifth of a fast adapter's whole matrix.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, obj: dict[str, Any]) -> None:
        line = json_text(obj) + "\n"
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(line)


def parse_json(text: str) -> Any:
    """JSON as results are read: NaN / Infinity literals (older writers) read as ``NON_FINITE`` strings.

    Raises ValueError: JSONDecodeError, or Python's refusal of an integer of more
    than 4300 digits ("Exceeds the limit").
    """
    return json.loads(text, parse_constant=lambda name: {"NaN": "nan", "Infinity": "inf"}.get(name, "-inf"))


def _unreadable(exc: ValueError) -> str:
    """Why a text is not JSON we can read, in a few words."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}"
    return str(exc).partition(":")[0]  # 'Exceeds the limit (4300 digits) for integer string conversion'


def numbered_jsonl(path: str | Path) -> list[tuple[int, Any]]:
    """(line number, object) for every complete line of a stream.

    A torn last line (no newline yet: the writer died mid-write, or is still
    writing) is dropped; any other line that is not JSON is a ResultsFileError.
    """
    text = Path(path).read_text(encoding="utf-8")
    lines = text.splitlines()
    objects = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            objects.append((number, parse_json(line)))
        except ValueError as exc:
            if number == len(lines) and not text.endswith("\n"):
                break
            raise ResultsFileError(f"{path}: line {number} is not JSON ({_unreadable(exc)})") from None
    return objects


def read_jsonl(path: str | Path) -> list[Any]:
    """Every complete line's object (``numbered_jsonl`` without the numbers)."""
    return [obj for _, obj in numbered_jsonl(path)]


def write_json_atomic(path: str | Path, document: Any) -> None:
    """Write to a temporary file beside ``path`` and rename it over: never half a file."""
    write_text_atomic(path, json_text(document, indent=1) + "\n")


def outcome(record: Record | dict[str, Any]) -> str:
    """``Record.outcome`` of a record in either form."""
    return as_record(record).outcome


def outcome_counts(records: Iterable[Record | dict[str, Any]]) -> dict[str, int]:
    """How many records have each outcome, every outcome present (zero if none)."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for record in records:
        counts[outcome(record)] += 1
    return counts


def reduced_precision_count(records: Iterable[Record]) -> int:
    """How many records ran with the runtimes' reduced-precision defaults left on: what labels a run."""
    return sum(bool(record.run_info.get(REDUCED_PRECISION_KEY)) for record in records)


def reduced_precision_label(records: Iterable[Record]) -> str:
    """The line that labels a run (or a merge) holding such records; '' when it holds none."""
    records = list(records)
    count = reduced_precision_count(records)
    if not count:
        return ""
    share = "every result" if count == len(records) else f"{count} of {len(records)} results"
    return (f"reduced-precision defaults left on (--reduced-precision-defaults) for {share}: "
            "not the float32 verdict")


def unexpected_count(counts: dict[str, int]) -> int:
    """Fails and errors that no known-differences entry explains: what makes a run red."""
    return sum(counts[name] for name in UNEXPECTED)


def results_document(records: Iterable[Record | dict[str, Any]], *, complete: bool, created: str,
                     fixtures_sha256: str, machine: dict[str, Any],
                     adapters: dict[str, dict[str, Any]], known_checked: list[str] | None = None,
                     known_unmatched: list[str] | None = None, planned: int | None = None,
                     machines: dict[str, dict[str, Any]] | None = None, suite_version: str | None = None,
                     selection: dict[str, Any] | None = None,
                     user_known_lists: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The results.json document; its ``results`` are in JSON form, sorted by test id, all ``json_safe``.

    Made safe here, so that the document a run renders and the one it writes are the same.

    ``planned`` is how many results the run was asked for (None where it is
    unknown: an older file, a raw stream); ``produced`` how many it produced.
    ``machines`` is ``machine`` alone by default (a run's one machine), and a
    record that names no machine was produced on the only one there is.
    ``suite_version`` (``conformance.__version__``) and ``selection``
    (``run_selection``: what the run was asked to run) say what a comparison of two
    runs can count on; None where unknown (a raw stream, an older file).
    ``user_known_lists`` (``conformance.results.user_lists``): what each of the user's
    known-differences lists explained ([]: the run had none; None: not known, as in a merge)
    """
    if machines is None:
        machines = {machine_id(machine): machine} if machine else {}
    only = next(iter(machines)) if len(machines) == 1 else ""
    ordered = sorted((_on_machine(as_record(r), only) for r in records), key=lambda r: r.test_id)
    return json_safe({"schema": SCHEMA, "complete": complete, "created": created,
            "planned": planned, "produced": sum(r.produced for r in ordered),
            "fixtures_sha256": fixtures_sha256, "machine": machine, "machines": machines, "adapters": adapters,
            "counts": outcome_counts(ordered), "known_checked": known_checked,
            "known_unmatched": known_unmatched, "suite_version": suite_version, "selection": selection,
            "user_known_lists": user_known_lists,
            "results": [r.to_dict() for r in ordered]})


def unseen_record(count: int, seed: int | None) -> dict[str, int] | None:
    """``selection.unseen``: how many cases the run drew at run time, and their seed; None: none."""
    return {"count": count, "seed": seed} if count else None


def run_selection(*, keyword: str | None, device: str, dtype: str, adapters: Iterable[str],
              plan: bool = False, covering: dict[str, Any] | None = None,
              unseen: dict[str, int] | None = None) -> dict[str, Any]:
    """What a run was asked to run: its ``-k`` (None: none), ``--device``, ``--dtype`` and adapters.

    ``plan`` marks a process that ran a plan handed to it (``--plan``): a part of
    a run, narrowed as a ``-k`` narrows. ``covering`` (``conformance run``'s
    ``covering_record``) says that the default covering plan narrowed some
    adapters' part, which ones, and which case × dtype pairs it left to the full plan.
    ``unseen`` (``unseen_record``): the cases drawn at run time, beside the fixtures.
    """
    chosen = {"keyword": keyword or None, "device": device, "dtype": dtype,
              "adapters": sorted(dict.fromkeys(adapters))}
    if covering:
        chosen["covering"] = covering
    if unseen:
        chosen["unseen"] = unseen
    return dict(chosen, plan=True) if plan else chosen


def merged_selection(documents: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The parts' selection with their adapters together, when they agree on the rest; else None."""
    parts = [d.get("selection") for d in documents]
    if not parts or any(part is None for part in parts):
        return None
    rest = [{k: v for k, v in part.items() if k not in ("adapters", "covering")} for part in parts]
    if any(other != rest[0] for other in rest[1:]):
        return None
    merged = dict(parts[0], adapters=sorted({name for part in parts for name in part.get("adapters") or ()}))
    coverings = [part["covering"] for part in parts if part.get("covering")]
    merged.pop("covering", None)
    if coverings:
        if any(_without_adapters(c) != _without_adapters(coverings[0]) for c in coverings[1:]):
            return None  # different fixtures, different plans: no one selection describes them
        merged["covering"] = dict(coverings[0], adapters=sorted({a for c in coverings for a in c["adapters"]}))
    return merged


def _without_adapters(covering: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in covering.items() if k != "adapters"}


def _on_machine(record: Record, machine: str) -> Record:
    return record if record.machine or not machine else replace(record, machine=machine)


def document_machines(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A document's machines, id -> facts; a file older than the field has its one ``machine``."""
    if document.get("machines") is not None:
        return document["machines"]
    machine = document.get("machine") or {}
    return {machine_id(machine): machine} if machine else {}


def records_of(document: dict[str, Any]) -> list[Record]:
    """A results document's records, typed."""
    return [Record.from_dict(r) for r in document.get("results") or []]


def audit_known(known: KnownDifferences, records: Iterable[Record], case_dtypes: Mapping[str, Iterable[str]],
                selected: bool, versions: Mapping[str, Mapping[str, str]] | None = None) -> Audit:
    """``KnownDifferences.audit`` of these records: the columns that ran and the results that are known
    (``versions``: adapter -> its versions, for the entries scoped to versions)."""
    records = list(records)
    columns = {(r.adapter, r.device, r.dtype) for r in records if r.status != "skipped"}
    return known.audit(columns, [r.test_id for r in records if r.outcome == "known"], case_dtypes, selected,
                       versions, ran_ids=[r.test_id for r in records if r.status != "skipped"])


# --- what may be read: the published schema ---------------------------------------------------


def _named(record: Any) -> str:
    test_id = record.get("test_id") if isinstance(record, dict) else None
    return f" ({safe_text(test_id)[:200]})" if isinstance(test_id, str) and test_id else ""


def validate_results(document: Any, origin: str) -> dict[str, Any]:
    """``document`` if it is a results document RESULTS_SCHEMA_PATH allows; else a one-line ResultsFileError.

    The line names ``origin`` (the file), the record (number and test id) and
    the JSON path of the first problem. Vendors can check their own files with it.
    """
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else type(document).__name__
        raise ResultsFileError(f"{origin}: not a conformance results file (schema {found!r}, "
                               f"expected {SCHEMA!r})")
    problem = first_problem("document", document)
    if problem:
        raise ResultsFileError(f"{origin}: not a valid results document: {problem}")
    for n, record in enumerate(document["results"]):
        problem = first_problem("result", record, f"$.results[{n}]") or _unknown_machine(document, record, n)
        if problem:
            raise ResultsFileError(f"{origin}: result #{n}{_named(record)} is malformed: {problem}")
    return document


def _unknown_machine(document: dict[str, Any], record: dict[str, Any], n: int) -> str | None:
    """A record's machine is one of the document's: the one rule between them the schema cannot state."""
    name = record.get("machine")
    if name and name not in (document.get("machines") or {}):
        return f"$.results[{n}].machine: {safe_text(name)[:200]!r} is not one of $.machines"
    return None


def validate_stream_line(line: Any, origin: str, number: int) -> Any:
    """One line of a .jsonl stream, checked against the schema's ``stream_line``; a one-line error else."""
    problem = first_problem("stream_line", line)
    if problem:
        raise ResultsFileError(f"{origin}: line {number}{_named(line)} is malformed: {problem}")
    return line


def load_results(path: str | Path) -> dict[str, Any]:
    """A validated, ``json_safe`` results document; any problem is a ResultsFileError with one line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsFileError(f"{path}: cannot be read ({exc})") from None
    try:
        document = parse_json(text)
    except ValueError as exc:
        raise ResultsFileError(f"{path}: not valid JSON ({_unreadable(exc)})") from None
    return json_safe(validate_results(document, str(path)))


def merge_documents(documents: list[dict[str, Any]], origins: list[str] | None = None) -> dict[str, Any]:
    """One document from several (one per tox env or CI job, say), each record keeping its machine.

    Parts made on different fixtures are refused (``ResultsFileError``): their
    verdicts answer different questions. So are two results of one test: a
    result that is no answer (skipped, or planned and never produced) gives way
    to one that is (a CPU runner's skipped cuda row to the GPU runner's result),
    but between two answers nothing can choose. ``origins`` name the parts in
    those messages (their files).
    """
    origins = origins or [f"part {n + 1}" for n in range(len(documents))]
    fixtures = merged_fixtures(documents, origins)
    machines: dict[str, dict[str, Any]] = {}
    kept: dict[str, tuple[dict[str, Any], str]] = {}
    adapters: dict[str, dict[str, Any]] = {}
    given_way = 0
    for document, origin in zip(documents, origins):
        adapters.update(document.get("adapters", {}))
        renamed = {name: add_machine(machines, info) for name, info in document_machines(document).items()}
        only = next(iter(renamed.values())) if len(renamed) == 1 else ""
        for record in document["results"]:
            record = dict(record, machine=renamed.get(record.get("machine") or "", only))
            earlier = kept.get(record["test_id"])
            if earlier and _answers(earlier[0]) and _answers(record):
                raise ResultsFileError(_two_answers(earlier, (record, origin)))
            given_way += earlier is not None
            if earlier is None or _answers(record) and not _answers(earlier[0]):
                kept[record["test_id"]] = (record, origin)
    checked, unmatched = merge_known_audits(documents)
    return results_document(
        (record for record, _ in kept.values()), complete=all(d.get("complete", False) for d in documents),
        created=max((d.get("created", "") for d in documents), default=""),
        fixtures_sha256=fixtures, machine=shared_facts(machines.values()), machines=machines,
        adapters=adapters, known_checked=checked, known_unmatched=unmatched,
        planned=None if any(d.get("planned") is None for d in documents)
        else sum(d["planned"] for d in documents) - given_way,
        suite_version=_shared([d.get("suite_version") for d in documents]), selection=merged_selection(documents))


def _shared(values: list[Any]) -> Any:
    """The one value every part has; None when they differ or any lacks it."""
    return values[0] if values and all(v is not None and v == values[0] for v in values) else None


def _answers(record: dict[str, Any]) -> bool:
    """The record holds an answer: it is not a skip, nor the stand-in for a result never produced."""
    return record.get("status") != "skipped" and record.get("produced", True) is not False


def _two_answers(earlier: tuple[dict[str, Any], str], later: tuple[dict[str, Any], str]) -> str:
    (first, first_origin), (second, second_origin) = earlier, later
    return (f"{safe_text(first['test_id'])[:200]}: two results to merge, from {first_origin} "
            f"(machine {first['machine'] or '?'}) and {second_origin} (machine {second['machine'] or '?'}); "
            "a merge keeps one result per test (only a skipped one gives way to one that ran): "
            "merge runs of different adapters, devices or cases")


def merged_fixtures(documents: list[dict[str, Any]], origins: list[str]) -> str:
    """The one fixture set all parts were made on ('' if none says); parts made on two are refused."""
    made = [(d.get("fixtures_sha256") or "", origin) for d, origin in zip(documents, origins)]
    made = [(sha, origin) for sha, origin in made if sha]
    for sha, origin in made[1:]:
        if sha != made[0][0]:
            raise ResultsFileError(f"{origin}: made on other fixtures than {made[0][1]} (fixtures sha256 "
                                   f"{sha[:12]}… against {made[0][0][:12]}…): results merge only from one "
                                   "fixture set")
    return made[0][0] if made else ""


def merge_known_audits(documents: list[dict[str, Any]]) -> tuple[list[str] | None, list[str] | None]:
    """Entries unmatched in the merged run: unmatched in some part and cleared by none.

    Each part (one tox env, say) checks only the entries for the adapters it
    ran; an entry one part found unmatched still matched if another part that
    checked it did not find it unmatched.
    """
    audited = [d for d in documents if d.get("known_checked") is not None]
    if not audited:
        return None, None
    checked = list(dict.fromkeys(p for d in audited for p in d["known_checked"]))
    cleared = {p for d in audited for p in d["known_checked"] if p not in (d.get("known_unmatched") or ())}
    unmatched = [p for p in dict.fromkeys(p for d in audited for p in d.get("known_unmatched") or ())
                 if p not in cleared]
    return checked, unmatched
