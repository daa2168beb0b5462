"""The pytest plugin: options, parametrization and result recording for the conformance tests.

Loaded through the ``pytest11`` entry point. It parametrizes any test that
takes ``conformance_param`` over case x adapter x device x dtype with ids like
``lstm-seq1-state1-per_gate-b2t5[torch-cpu-float32]``, appends one JSON line
per result to the results stream as soon as it is known, and writes
``results.json`` atomically when the session ends. Known differences are
applied at collection, as ``xfail(strict=True)`` marks
(``pytest_collection_modifyitems``). The report header prints the framework
versions, the ``CONFORMANCE_*`` variables in effect and, after collection, the
devices each adapter sees.

The options it registers (group "recurrent-layer conformance suite" in ``pytest --help``):

==============================  =========================================================
``--adapter NAME|module:Class``  adapter to run (repeatable); default: every registered one
``--device cpu|cuda|all``        device rows to produce (default all), for each adapter
                                 only the devices it declares (``declared_devices``); a
                                 declared device the machine lacks is recorded as skipped
``--dtype DTYPE|all``            dtype rows to produce (default all): float32, float64,
                                 float16, bfloat16
``--fixtures-dir DIR``           the golden fixtures (default ``$CONFORMANCE_FIXTURES``,
                                 else the checkout's ``fixtures/``)
``--report-dir DIR``             where the stream and results.json go (default
                                 ``reports/pytest``, a place of its own: a directory
                                 holding a ``conformance run`` report is refused)
``--results-stream FILE.jsonl``  the stream, one JSON line per result
                                 (default ``REPORT_DIR/results.jsonl``)
``--results-json FILE``          the session's results document
                                 (default ``REPORT_DIR/results.json``)
``--known-differences FILE``     a further known-differences list (repeatable; matched
                                 after the built-in one)
``--no-builtin-known-differences``
                                 leave out ``conformance/verdict/known_differences.txt``
``--reduced-precision-defaults`` labelled mode: the runtimes' reduced-precision defaults
                                 (TF32 on GPUs, OpenVINO's bfloat16 hint, ...) left on;
                                 every record carries ``run_info.reduced_precision_defaults``
``--known-failures FILE``        deprecated first spellings of the three options above:
``--no-builtin-known-failures``  each works as its new name does, with a
``--tf32``                       ``PytestDeprecationWarning`` saying what to write instead
``--skip-done``                  leave out tests already in the stream (resuming after a
                                 crash; used by ``conformance run``'s supervisor)
``--plan FILE.json``             run exactly these test ids (a JSON list; written by
                                 ``conformance run``, which decides the plan and ``-k``)
``--fixtures-checked SHA256``    the manifest the calling ``conformance run`` loaded with
                                 every check: the files are checked against its hashes,
                                 the oracle does not replay them again (``load_cases``)
==============================  =========================================================
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conformance import __version__
from conformance.adapters import UnknownAdapterError, adapter_paths
from conformance.adapters.contract import (
    REDUCED_PRECISION_VARIABLE,
    ContractBreach,
    LoadedAdapter,
    check_distinct_names,
    checked_device_name,
    checked_devices,
    checked_versions,
    contract_breach,
    reduced_precision_allowed,
)
from conformance.adapters.worker import AdapterWorker, RemoteAdapter
from conformance.fixtures import FixtureError, default_fixtures_dir, load_cases, load_unseen, manifest_sha256
from conformance.jsonsafe import safe_text
from conformance.matrix.case import DTYPES, Case
from conformance.matrix.properties import case_properties, remember
from conformance.matrix.unseen import fresh_seed
from conformance.onnx.graph import OPSET_VARIABLE as ONNX_OPSET_VARIABLE
from conformance.renamed import NotedRenamed, deprecation
from conformance.results.lock import ReportDirLock
from conformance.results.machine import machine_info, package_versions
from conformance.results.records import (
    REDUCED_PRECISION_KEY,
    JsonlWriter,
    Record,
    audit_known,
    make_record,
    read_jsonl,
    results_document,
    run_selection,
    test_id,
    unseen_record,
    write_json_atomic,
)
from conformance.verdict.known_differences import Audit, known_difference_files, load_known_differences

DEVICES = ("cpu", "cuda")
DIAGNOSES_PER_PROCESS = 200  # unexpected failures diagnosed per adapter process (ConformanceSession.may_diagnose)
ENV_PREFIX = "CONFORMANCE_"
KNOWN_PREFIX = "known difference: "  # an xfail reason that starts so comes from the known-differences lists
DEFAULT_REPORT_DIR = "reports/pytest"
SUPERVISOR_VARIABLE = "CONFORMANCE_SUPERVISOR_PID"  # set by conformance run for its adapter processes
TEST_FUNCTION = "test_adapter_returns_the_keras_output_list"
TEST_MODULE_NAMES = ("test_conformance.py", "conformance")  # what -k sees above the test (module, package)


@dataclass(frozen=True)
class ConformanceParam:
    case: Case
    adapter: str
    device: str
    dtype: str

    @property
    def test_id(self) -> str:
        return test_id(self.case.id, self.adapter, self.device, self.dtype)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "recurrent-layer conformance suite")
    group.addoption("--adapter", action="append", default=[], metavar="NAME|module:Class",
                    help="adapter to run (repeatable); default: every registered adapter")
    group.addoption("--device", default="all", choices=("cpu", "cuda", "all"),
                    help="device rows to produce; cuda rows without a GPU are reported as skipped")
    group.addoption("--dtype", default="all", choices=DTYPES + ("all",))
    group.addoption("--fixtures-dir", default=None, metavar="DIR", help="golden fixtures directory")
    group.addoption("--results-stream", default=None, metavar="FILE.jsonl",
                    help="append one JSON line per result here (default: REPORT_DIR/results.jsonl)")
    group.addoption("--results-json", default=None, metavar="FILE",
                    help="write the session's results document here (default: REPORT_DIR/results.json)")
    group.addoption("--report-dir", default=DEFAULT_REPORT_DIR, metavar="DIR",
                    help=f"where the stream and results.json go (default {DEFAULT_REPORT_DIR})")
    group.addoption("--known-differences", action="append", default=[], metavar="FILE",
                    help="a further list of test ids with reasons whose fails and errors are documented "
                         "findings (repeatable; added after the built-in list)")
    group.addoption("--no-builtin-known-differences", action="store_true",
                    help="leave out the built-in list, conformance/verdict/known_differences.txt")
    group.addoption("--reduced-precision-defaults", action="store_true",
                    help="labelled mode: leave the runtimes' reduced-precision defaults on (TF32 on GPUs, "
                         "OpenVINO's bfloat16 hint, ...); every result carries run_info.reduced_precision_defaults")
    for old, nargs in (("--known-failures", None), ("--no-builtin-known-failures", 0), ("--tf32", 0)):
        group.addoption(old, action=NotedRenamed, nargs=nargs)  # conformance.renamed
    group.addoption("--onnx-opset", type=int, default=None, metavar="N",
                    help="stamp the ONNX models the adapters run with opset N (default: 14, the lowest "
                         "that expresses every graph); recorded as run_info.onnx_opset")
    group.addoption("--skip-done", action="store_true",
                    help="leave out tests already in the results stream (resuming after a crash)")
    group.addoption("--plan", default=None, metavar="FILE.json",
                    help="run exactly the test ids listed in this JSON file (conformance run's plan)")
    group.addoption("--unseen", type=int, default=0, metavar="N",
                    help="also run N cases drawn at run time from the matrix's space (conformance.matrix.unseen), "
                         "judged against the float64 oracle in this process (default 0)")
    group.addoption("--unseen-seed", type=int, default=None, metavar="S",
                    help="the unseen cases' seed (default: a fresh one, printed in the header and recorded; "
                         "give one with pytest-xdist, whose processes must draw the same cases)")
    group.addoption("--fixtures-checked", default=None, metavar="SHA256",
                    help="the SHA-256 of a fixtures manifest the calling run has loaded with every check "
                         "(conformance run hands it on): if it is this manifest's, the files are checked "
                         "against their hashes but the oracle does not replay them again")


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The framework versions and the ``CONFORMANCE_*`` variables in effect: what a run depends on."""
    versions = ", ".join(f"{name} {version}" for name, version in package_versions().items())
    variables = [f"{name}={value}" for name, value in sorted(os.environ.items())
                 if name.startswith(ENV_PREFIX)]
    return [f"conformance frameworks: {versions}",
            f"conformance environment: {' '.join(variables) or f'no {ENV_PREFIX}* variables set'}"]


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    """The devices each adapter sees, printed once the adapters are loaded (at collection)."""
    state = config._conformance
    if state is None or config.option.no_header:
        return []
    count = config.option.unseen
    unseen = [f"conformance unseen cases: {count}, seed {state.unseen_seed}"] if count else []
    return unseen + [f"conformance adapter {name}: {', '.join(info['devices']) or info['reason'] or 'no device'}"
                     for name, info in state.adapter_summary().items()]


class ConformanceSession:
    """Per-process state: adapters (imported once), fixtures, the results stream."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.diagnoses = 0  # may_diagnose's count
        option = config.option
        # absolute from the start: an adapter that changes the working directory must not move them
        report_dir = Path(os.path.abspath(option.report_dir))
        self.stream_path = Path(os.path.abspath(option.results_stream or report_dir / "results.jsonl"))
        self.json_path = Path(os.path.abspath(option.results_json or report_dir / "results.json"))
        self.fixtures_dir = Path(os.path.abspath(option.fixtures_dir or default_fixtures_dir()))
        self.known = load_known_differences(known_difference_files(
            option.known_differences, builtin=not option.no_builtin_known_differences))
        self.cases: list[Case] = []
        self.worker: AdapterWorker | None = None  # the adapters' own process, started with the first adapter
        self.adapters: dict[str, RemoteAdapter] = {}
        self.versions: dict[str, dict[str, str] | None] = {}  # adapter name -> versions(), None: unavailable
        self.breaches: dict[tuple[str, str], str | None] = {}  # (adapter, device) -> contract_breach
        self.records: list[Record] = []
        self.done_ids: set[str] = set()
        self.recorded_ids: set[str] = set()
        self.plan = read_plan(option.plan) if option.plan else None
        self.unseen_seed = option.unseen_seed if option.unseen_seed is not None or not option.unseen else fresh_seed()
        self.planned: dict[str, ConformanceParam] = {}  # this session's collected tests, by test id
        self.writer: JsonlWriter | None = None
        self.lock: ReportDirLock | None = None
        self.created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    def start_stream(self) -> None:
        if SUPERVISOR_VARIABLE not in os.environ:  # conformance run's own processes share its lock
            self.claim_report_dir()
        if self.config.option.skip_done and self.stream_path.exists():
            previous = [Record.from_dict(r) for r in read_jsonl(self.stream_path) if r.get("record") == "result"]
            self.records.extend(previous)
            self.done_ids = {r.test_id for r in previous}
        elif self.stream_path.exists() or self.stream_path.is_symlink():  # a dangling link, too
            self.stream_path.unlink()
        self.writer = JsonlWriter(self.stream_path)

    def claim_report_dir(self) -> None:
        """A plain pytest run writes alone, and never beside another run's report.

        ``index.html`` is what ``conformance run`` and ``conformance report``
        write: a results.json written beside it would leave the report
        describing one run and the results file another.
        """
        directory = self.json_path.parent
        if (directory / "index.html").exists():
            raise ValueError(f"{directory} holds a conformance report (index.html) of another run; "
                             f"pass --report-dir DIR for this pytest run's results "
                             f"(default {DEFAULT_REPORT_DIR})")
        self.lock = ReportDirLock(directory).acquire()

    @property
    def case_dtypes(self) -> dict[str, tuple[str, ...]]:
        """Every case of the matrix (before -k) and its dtypes."""
        return {case.id: case.dtypes for case in self.cases}

    def adapter(self, name: str) -> RemoteAdapter:
        """The adapter registered as, or whose ``name`` is, ``name``: loaded once, in the session's
        worker process, which never holds an answer (``conformance.adapters.worker``)."""
        if name not in self.adapters:
            if self.worker is None:
                self.worker = AdapterWorker()
            adapter = RemoteAdapter(self.worker, name)
            self.adapters[name] = self.adapters[adapter.name] = adapter
        return self.adapters[name]

    def close_worker(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None

    def adapter_names(self) -> list[str]:
        return self.config.option.adapter or list(adapter_paths())

    def adapter_versions(self, name: str) -> dict[str, str] | None:
        """What version-scoped known differences are judged by (asked once per adapter); None where
        the framework is unavailable, so that no scoped entry applies to its (skipped) tests."""
        if name not in self.versions:
            adapter = self.adapter(name)
            try:
                self.versions[name] = checked_versions(adapter) if adapter.available() is None else None
            except ContractBreach:  # every test of the adapter is an error saying so (contract_breach)
                self.versions[name] = None
        return self.versions[name]

    def contract_breach(self, param: ConformanceParam) -> str | None:
        """The adapter's answers that break the contract, for this test's device (``contract_breach``;
        asked once per adapter and device); None for an unavailable adapter: its tests are skips."""
        key = (param.adapter, param.device)
        if key not in self.breaches:
            adapter = self.adapter(param.adapter)
            self.breaches[key] = contract_breach(adapter, param.device) if adapter.available() is None else None
        return self.breaches[key]

    def may_diagnose(self) -> bool:
        """Whether the next unexpected failure is diagnosed: the first ``DIAGNOSES_PER_PROCESS`` of an
        adapter process are (a completely broken adapter's every failure would cost minutes)."""
        self.diagnoses += 1
        return self.diagnoses <= DIAGNOSES_PER_PROCESS

    def announce(self, param: ConformanceParam) -> None:
        """A 'started' line lets a supervisor name the test that killed the process."""
        assert self.writer is not None
        sys.stderr.flush()
        self.writer.append({"record": "started", "test_id": param.test_id, "stderr_at": stderr_position()})

    def record(self, record: Record) -> None:
        assert self.writer is not None
        self.records.append(record)
        self.recorded_ids.add(record.test_id)
        self.writer.append(record.to_dict())

    def adapter_summary(self) -> dict[str, dict[str, Any]]:
        return {adapter.name: adapter_entry(adapter) for adapter in {id(a): a for a in self.adapters.values()}.values()}

    def known_audit(self) -> Audit:
        """The known-differences entries this session checked and those that matched no result."""
        names = {record.adapter for record in self.records}
        return audit_known(self.known, self.records, self.case_dtypes, selected=bool(self.config.option.keyword),
                           versions={name: self.adapter_versions(name) for name in names if name in self.adapters})

    def unreached(self) -> list[Record]:
        """A ``not_run`` for each collected test the session ended without recording."""
        missing = [param for test_id, param in self.planned.items()
                   if test_id not in self.recorded_ids and safe_text(test_id) not in self.done_ids]
        return [record_for(param, None, "not_run", "not run: the pytest session ended before this test "
                           "(interrupted, or stopped by -x / --maxfail)", produced=False) for param in missing]

    def write_document(self, complete: bool, audit: Audit | None) -> None:
        unreached = self.unreached()
        document = results_document(
            self.records + unreached, complete=complete and not unreached, created=self.created,
            planned=len(self.planned) + len(self.done_ids),
            fixtures_sha256=manifest_sha256(self.fixtures_dir), machine=machine_info(),
            adapters=self.adapter_summary(), known_checked=audit and audit.checked,
            known_unmatched=audit and audit.unmatched_patterns, suite_version=__version__,
            selection=self.selection())
        write_json_atomic(self.json_path, document)

    def selection(self) -> dict[str, Any]:
        """What this session was asked to run, as far as pytest's options say."""
        option = self.config.option
        return run_selection(keyword=option.keyword, device=option.device, dtype=option.dtype,
                             adapters=[self.adapter(name).name for name in self.adapter_names()],
                             plan=self.plan is not None, unseen=unseen_record(option.unseen, self.unseen_seed))


def read_plan(path: str) -> set[str]:
    """The test ids of a plan file (a JSON list of strings)."""
    try:
        plan = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"--plan {path}: cannot be read as JSON ({exc})") from None
    if not isinstance(plan, list) or not all(isinstance(test_id, str) for test_id in plan):
        raise ValueError(f"--plan {path}: expected a JSON list of test ids")
    return set(plan)


def stderr_position() -> int | None:
    """Where the next byte written to stderr lands, when stderr is a file (a supervisor's)."""
    try:
        info = os.fstat(2)
    except OSError:
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def watch_supervisor(pid: int) -> None:
    """An adapter process never outlives its supervisor, even a SIGKILLed one.

    Once the parent is gone the process is re-parented; the watcher sees it
    and kills the process group (the adapter process and anything it started).
    """
    def watch() -> None:
        while os.getppid() == pid:
            time.sleep(0.5)
        if os.getpgrp() == os.getpid():  # the group leader, as conformance run starts it
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os._exit(3)

    threading.Thread(target=watch, name="conformance-supervisor-watch", daemon=True).start()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance: a case run through an adapter")
    supervisor = os.environ.get(SUPERVISOR_VARIABLE, "")
    if supervisor.isdigit():
        watch_supervisor(int(supervisor))
    for option in getattr(config.option, "deprecated_options", ()):
        config.issue_config_time_warning(pytest.PytestDeprecationWarning(deprecation(option)), stacklevel=2)
    if getattr(config.option, "reduced_precision_defaults", False):
        os.environ[REDUCED_PRECISION_VARIABLE] = "1"  # read by the adapters (contract.reduced_precision_allowed)
    if getattr(config.option, "onnx_opset", None) is not None:
        os.environ[ONNX_OPSET_VARIABLE] = str(config.option.onnx_opset)  # read by conformance.onnx.model_versions
    config._conformance = None  # created when a conformance test is collected
    config._conformance_refused = ""  # why the session was refused (bad adapter, fixtures, lists, dir)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The worker ends with the session, however the session ended."""
    state = getattr(config, "_conformance", None)
    if state is not None:
        state.close_worker()


def planned_case_ids(plan: set[str] | None) -> set[str] | None:
    """The case ids of a plan's test ids (``case_id[adapter-device-dtype]``): an adapter process
    of ``conformance run`` loads those fixtures alone. None: no plan, every case."""
    return None if plan is None else {test_id.partition("[")[0] for test_id in plan}


def session_of(config: pytest.Config) -> ConformanceSession:
    """The session, created and started (fixtures and adapters loaded, report dir claimed) at collection."""
    assert config._conformance is not None, "created in pytest_generate_tests"
    return config._conformance


def started_session(config: pytest.Config) -> ConformanceSession:
    """Everything that can be refused is checked before the report dir is touched: the
    known-differences lists, the fixtures, every adapter; then the dir is claimed."""
    session = ConformanceSession(config)
    session.cases = load_cases(session.fixtures_dir, vouched_manifest=config.option.fixtures_checked,
                               only=planned_case_ids(session.plan)) \
        + load_unseen(config.option.unseen, session.unseen_seed)
    remember(session.cases)  # the properties known-differences conditions are judged by
    try:
        check_distinct_names({name: session.adapter(name) for name in session.adapter_names()})
        session.start_stream()
    except BaseException:  # a refused session leaves no worker behind
        session.close_worker()
        raise
    return session


def devices_for(choice: str) -> tuple[str, ...]:
    """The device rows ``--device`` asks for."""
    return DEVICES if choice == "all" else (choice,)


def device_rows(choice: str, adapters: list[LoadedAdapter]) -> dict[str, tuple[str, ...]]:
    """Adapter name -> its device rows: those ``--device`` asks for that the adapter declares.

    Static (``declared_devices`` is a class attribute), so that ``conformance
    run`` plans in its own process, where no framework is imported. A device
    the adapter declares but the machine lacks keeps its rows (skipped, saying why).
    """
    return {adapter.name: tuple(d for d in devices_for(choice) if d in adapter.declared_devices)
            for adapter in adapters}


def matrix_params(cases: list[Case], rows: dict[str, tuple[str, ...]], dtype_choice: str) -> list[ConformanceParam]:
    """Every case x adapter x device x dtype asked for (``rows``: ``device_rows``), in the order the tests run."""
    return [ConformanceParam(case, name, device, dtype) for name, devices in rows.items() for case in cases
            for device in devices for dtype in case.dtypes if dtype_choice in ("all", dtype)]


def keyword_filter(expression: str) -> Callable[[ConformanceParam, bool], bool]:
    """Whether pytest's ``-k expression`` selects a test (given whether it is a known difference),
    decided without collecting it, so that ``conformance run`` knows its plan before any process starts.

    The names are those pytest's ``KeywordMatcher`` gives the test: its item
    name, the module and package above it, and its one marker (``xfail``, for
    a known difference). ``tests/test_run_plan.py`` checks the
    choice against pytest's own collection.
    """
    selects = keyword_selects(expression)
    return lambda param, known: selects([f"{TEST_FUNCTION}[{param.test_id}]".lower(), *TEST_MODULE_NAMES,
                                         *(("xfail",) if known else ())])


def keyword_selects(expression: str) -> Callable[[list[str]], bool]:
    """Whether pytest's ``-k expression`` selects what is known by ``names`` (lower case): as
    pytest's ``KeywordMatcher``, each name in the expression matches as a case-insensitive
    substring of one of them. ValueError for call parameters, as pytest refuses them."""
    if not expression:
        return lambda names: True
    from _pytest.mark.expression import Expression

    compiled = Expression.compile(expression)

    def selects(names: list[str]) -> bool:
        def matcher(subname: str, /, **kwargs: Any) -> bool:
            if kwargs:  # as pytest's KeywordMatcher refuses them, once evaluation reaches them
                raise ValueError(f"bad -k expression {expression!r}: keyword expressions do not support "
                                 "call parameters")
            return any(subname.lower() in name for name in names)

        return compiled.evaluate(matcher)

    return selects


def _params(session: ConformanceSession, cases: list[Case]) -> list[ConformanceParam]:
    adapters = [session.adapter(requested) for requested in session.adapter_names()]
    params = matrix_params(cases, device_rows(session.config.option.device, adapters), session.config.option.dtype)
    if session.plan is not None:
        params = [p for p in params if p.test_id in session.plan]
    return [p for p in params if safe_text(p.test_id) not in session.done_ids]  # done: as the stream stores them


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize over the plan; a refusal waits for ``pytest_collection_modifyitems`` to end the
    session (``pytest.exit`` here would be reported as a collection error, traceback and all)."""
    config = metafunc.config
    if "conformance_param" not in metafunc.fixturenames or config._conformance_refused:
        return
    if config._conformance is None:
        try:
            config._conformance = started_session(config)
        except (FixtureError, UnknownAdapterError, ValueError) as exc:
            config._conformance_refused = str(exc)
            return
    session = config._conformance
    params = _params(session, session.cases)
    metafunc.parametrize("conformance_param", params, ids=[p.test_id for p in params])


def param_of(item: pytest.Item) -> ConformanceParam | None:
    callspec = getattr(item, "callspec", None)  # only parametrized items have one
    return callspec.params.get("conformance_param") if callspec else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The one place that decides which tests are known differences: a strict xfail mark each.

    A known test that fails or errors is xfailed; one that passes is XPASS(strict), a
    failure in pytest's eyes, while its record stays ``pass`` and the entry is named as
    matching no result (``KnownDifferences.audit``).
    """
    if config._conformance_refused:
        pytest.exit(config._conformance_refused, returncode=2)
    state = config._conformance
    if state is None:
        return
    for item in items:
        param = param_of(item)
        reason = param and state.known.reason_for(param.test_id, state.adapter_versions(param.adapter),
                                                  case_properties(param.case))
        if reason:
            item.add_marker(pytest.mark.xfail(strict=True, reason=KNOWN_PREFIX + reason))


def known_reason(item: pytest.Item) -> str | None:
    """The known-differences reason collection marked ``item`` with, or None."""
    mark = item.get_closest_marker("xfail")
    reason = str(mark.kwargs.get("reason", "")) if mark else ""
    return reason.removeprefix(KNOWN_PREFIX) if reason.startswith(KNOWN_PREFIX) else None


@pytest.fixture
def conformance_session(request: pytest.FixtureRequest) -> ConformanceSession:
    return session_of(request.config)


@pytest.fixture
def conformance_known(request: pytest.FixtureRequest) -> str | None:
    """The reason this test is a known difference (its xfail mark), or None."""
    return known_reason(request.node)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A conformance test that broke before recording its result still leaves an ``error`` record."""
    report = yield
    state = item.config._conformance
    param = param_of(item)
    broke = report.failed or (call.excinfo is not None and hasattr(report, "wasxfail"))
    if state is None or param is None or not broke or param.test_id in state.recorded_ids:
        return report
    adapter = state.adapters.get(param.adapter)
    state.record(record_for(param, adapter, "error", f"the test harness raised during {report.when}: "
                            f"{call.excinfo.typename if call.excinfo else 'failure'}",
                            stderr=report.longreprtext[-4000:], known=known_reason(item)))
    return report


def pytest_collection_finish(session: pytest.Session) -> None:
    """Tell a supervisor how many tests this process will run (after -k deselection)."""
    state = session.config._conformance
    if state is not None and state.writer is not None:
        state.planned = {param.test_id: param for param in map(param_of, session.items) if param}
        state.writer.append({"record": "collected", "count": len(session.items)})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config._conformance
    if state is None or state.writer is None:
        return
    interrupted = exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR)
    audit = None if interrupted else state.known_audit()
    state.write_document(complete=not interrupted, audit=audit)
    state.close_worker()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        for entry in audit.unmatched if audit else ():
            reporter.write_line(f"conformance: known-differences entry matched no result: {entry.text} "
                                f"({entry.origin})")
        reporter.write_line(f"conformance: results written to {state.json_path}")


def skip_reason(adapter: Any, device: str) -> str | None:
    """Why this adapter can't run here at all: framework missing, or no such device."""
    reason = adapter.available()
    if reason is not None:
        return f"{adapter.name}: {reason}"
    if device not in adapter.devices():
        return f"{adapter.name}: no {device} device visible to the framework on this machine"
    return None


def adapter_entry(adapter: LoadedAdapter) -> dict[str, Any]:
    """What an adapter says about itself, for results.json's ``adapters``: an answer the contract
    does not allow is left out, and the breach named in ``contract_breach``."""
    reason = adapter.available()
    entry: dict[str, Any] = {"available": reason is None, "reason": reason, "devices": [], "versions": {},
                             "device_names": {}}
    if reason is None:
        try:
            entry["devices"] = checked_devices(adapter)
            entry["versions"] = checked_versions(adapter)
            entry["device_names"] = {d: checked_device_name(adapter, d) for d in entry["devices"]}
        except ContractBreach as exc:
            entry["contract_breach"] = str(exc)
    return entry


def record_for(param: ConformanceParam, adapter: Any, status: str, message: str, **extra: Any) -> Record:
    device_name = ""  # a skipped or unreached row names no device: the framework may not see one
    if status != "skipped" and adapter is not None:
        try:
            device_name = checked_device_name(adapter, param.device)
        except Exception:  # noqa: BLE001 - an optional nicety must not lose the result
            pass
    if reduced_precision_allowed():  # every row of such a run, so that no result of it passes for the verdict
        extra["run_info"] = dict(extra.get("run_info") or {}, **{REDUCED_PRECISION_KEY: True})
    return make_record(case=param.case, adapter=param.adapter, device=param.device, dtype=param.dtype,
                       status=status, message=message, device_name=device_name, **extra)


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
