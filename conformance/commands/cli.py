"""The ``conformance`` command (also ``python -m conformance``).

Subcommands: run, report, compare, explain, adapters, cases, fixtures build|verify,
bench, findings, export onnx, repro. Bad input of any kind (unknown adapter,
malformed results file, unwritable report dir or output path, bad -k
expression, broken fixtures, an unknown test id) prints one line
``conformance: error: ...`` and exits 2; nothing already written is touched.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from conformance.commands.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
from conformance.commands.search import add_parser as search_parser
from conformance.matrix.case import DTYPES
from conformance.renamed import add_renamed


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text names it already or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not action.option_strings or action.default in (None, False, [], "", argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # argparse's own errors: one line, exit 2
        raise UsageError(message)


def build_parser() -> Parser:
    parser = Parser(prog="conformance", description="Recurrent-layer conformance suite")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = commands.add_parser("run", help="run the conformance matrix and write reports")
    run.add_argument("--adapter", action="append", default=[], metavar="NAME|module:Class",
                     help="an adapter by name (conformance adapters lists them) or a package.module:Class path, "
                          "found on the Python path or in the current directory (repeatable; default: every "
                          "registered adapter)")
    run.add_argument("--device", choices=("auto", "cpu", "cuda", "all"), default="auto",
                     help="the device rows to run, each adapter's among those it declares: auto is cpu, and all "
                          "where the machine has an NVIDIA GPU (a /dev/nvidia0 device); with cuda or all, a "
                          "declared device the machine lacks is reported as skipped (default: auto)")
    run.add_argument("--dtype", choices=DTYPES + ("all",), default="all",
                     help="the dtype rows to run (all: each case's own dtypes)")
    run.add_argument("-k", dest="keyword", default="", metavar="EXPR",
                     help="pytest -k expression on the whole test id CASE[ADAPTER-DEVICE-DTYPE], the adapter's "
                          "name included (as in pytest: -k lstm also selects every case of an adapter whose name "
                          "holds 'lstm'); the run says how many tests of each adapter it selected before it starts")
    run.add_argument("--full", action="store_true",
                     help="every case on every adapter: without it (and without -k), the adapters that "
                          "compile per structure run the covering plan (every factor value and pair of "
                          "values; the run says which pairs it left out)")
    run.add_argument("--unseen", type=int, default=0, metavar="N",
                     help="also run N cases drawn now from the whole space the matrix covers, which no adapter "
                          "can have been tuned to, judged by the same rules against the float64 oracle and "
                          "counted apart (default 0)")
    run.add_argument("--seed", type=int, default=None, metavar="S",
                     help="the unseen cases' seed: the same seed draws the same cases anywhere (default: a "
                          "fresh one, recorded with the results)")
    run.add_argument("--report-dir", type=Path, default=Path("reports"),
                     help="where results.json, junit.xml and index.html are written")
    run.add_argument("--jobs", type=int, default=2, help="adapter processes at once (default 2)")
    run.add_argument("--shards", type=int, default=1, metavar="N",
                     help="split each adapter's plan into N contiguous parts, a process each (at most "
                          "--jobs at once): one long adapter on several cores (default 1)")
    run.add_argument("--case-timeout", type=float, default=300.0, metavar="SECONDS",
                     help="a test that runs longer is killed and recorded as an error (default 300)")
    run.add_argument("--startup-timeout", type=float, default=300.0, metavar="SECONDS",
                     help="an adapter process silent that long from its start (pytest, fixtures, its "
                          "framework loading) is killed, and the tests it had left are errors saying so (default 300)")
    run.add_argument("--max-restarts", type=int, default=50, metavar="N",
                     help="restarts of a crashing adapter process before the rest of its plan is "
                          "recorded as given up (default 50)")
    run.add_argument("--fixtures-dir", type=Path, default=None, metavar="DIR",
                     help="the golden fixtures to run (default: the ones installed with the suite)")
    add_known_differences(run)
    run.add_argument("--onnx-opset", type=int, default=None, metavar="N",
                     help="stamp the ONNX models the ONNX adapters run with opset N (default 14, the lowest "
                          "that expresses every graph), for a runtime that wants another; recorded per result")
    add_renamed(run, run.add_argument(
        "--reduced-precision-defaults", action="store_true",
        help="labelled mode: leave the runtimes' reduced-precision defaults on (TF32 on GPUs, "
             "OpenVINO's bfloat16 hint, ...); the float32 verdict runs with them off"))

    report = commands.add_parser("report", help="render index.html from results files")
    report.add_argument("results", nargs="+", type=Path,
                        help="results.json files, .jsonl streams, or a directory of <env>/results.json")
    report.add_argument("-o", "--output-dir", type=Path, default=Path("reports"),
                        help="where index.html (and, for a merge, results.json and junit.xml) are written")

    compare = commands.add_parser("compare", help="regression report between two runs")
    compare.add_argument("baseline", type=Path, help="the earlier run: a results.json, a stream or a report dir")
    compare.add_argument("current", type=Path, help="the later run, in any of the same forms")
    compare.add_argument("-o", "--output", type=Path, default=Path("reports/regression.html"),
                         help="the HTML regression report")
    compare.add_argument("--json", type=Path, default=None, metavar="PATH",
                         help="where the regression JSON goes (default: beside -o, e.g. regression.json)")
    compare.add_argument("--growth-factor", type=float, default=10.0,
                         help="a tensor's max abs error growing by more than this factor is a regression")
    compare.add_argument("--by-case", action="store_true",
                         help="match results by case, device and dtype, the adapter left out (one adapter per run)")
    add_known_differences(compare)

    explain = commands.add_parser("explain", help="a cell's output list and how each framework spells it; or one "
                                                  "result's verdict and diagnosis (the porting mistake it matches)")
    explain.add_argument("cell", metavar="CELL|TEST_ID",
                         help="a Keras cell (simple_rnn, lstm, gru), or a test id as conformance run printed it, "
                              "e.g. 'lstm-seq1-state0-random-b3t5[torch-cpu-float32]'")
    explain.add_argument("--report-dir", type=Path, default=Path("reports"),
                         help="with a TEST_ID: the run whose results.json holds it")
    explain.add_argument("--return-sequences", action="store_true", help="the layer's return_sequences=True")
    explain.add_argument("--return-state", action="store_true", help="the layer's return_state=True")

    adapters = commands.add_parser(
        "adapters", help="every adapter: what it requires and the installed versions (read from package "
                         "metadata, in seconds), the devices it declares, its default plan",
        description="Lists every adapter (built in, entry points) without importing a framework: the "
                    "modules it requires with the installed distributions' versions. --check imports each "
                    "adapter's framework in a process of its own and asks it (minutes with every framework).")
    adapters.add_argument("--check", action="store_true",
                          help="import each framework and ask the adapter itself: available or why not, versions, "
                               "the devices it sees (default: off)")

    cases = commands.add_parser("cases", help="the matrix's cases with their coverage, from the fixtures manifest")
    cases.add_argument("--match", metavar="PATTERN", default=None,
                       help="only ids matching this shell-style pattern, e.g. '*saturating*'")
    cases.add_argument("--json", action="store_true", help="JSON rows instead of a table")
    cases.add_argument("--fixtures-dir", type=Path, default=None, metavar="DIR",
                       help="the golden fixtures to list (default: the ones installed with the suite)")

    fixtures = commands.add_parser("fixtures", help="build or verify the golden fixtures")
    fixtures.add_argument("action", choices=("build", "verify"),
                          help="build: compute every case with the exact oracle; verify: check hashes and replay it")
    fixtures.add_argument("--fixtures-dir", type=Path, default=None, metavar="DIR",
                          help="the fixtures directory (default: the one installed with the suite)")

    bench = commands.add_parser("bench", help="measure speed and memory; writes reports/benchmark.json")
    bench.add_argument("--adapter", action="append", default=[], metavar="NAME|module:Class",
                       help="an adapter to measure (repeatable; default: every registered adapter)")
    bench.add_argument("--output", type=Path, default=None,
                       help="default reports/benchmark.json (--tox: reports/benchmark-tox.json)")
    bench.add_argument("--quick", action="store_true", help="a small sample of cases (smoke run)")
    bench.add_argument("--tox", action="store_true",
                       help="time tox.ini's whole matrix (tox run-parallel -m matrix) here, cold then warm")
    bench.add_argument("--full", action="store_true",
                       help="with --tox: time the full plan (tox run-parallel -m matrix -- --full)")
    bench.add_argument("--label", default="matrix", metavar="LABEL",
                       help="with --tox: the tox label to time, e.g. deployment (the deployment rows alone)")

    findings = commands.add_parser("findings", help="FINDINGS.md's measured tables from results files")
    findings.add_argument("results", nargs="+", type=Path,
                          help="results.json files, .jsonl streams, or a directory of <env>/results.json")
    findings.add_argument("--write", type=Path, metavar="FINDINGS.md",
                          help="rewrite the generated sections between their markers in this file")

    export = commands.add_parser("export", help="write the cases in the ONNX backend-test data layout")
    export.add_argument("format", choices=("onnx",), help="the format (ONNX models)")
    export.add_argument("directory", type=Path, metavar="DIR", help="a new or empty directory, or an earlier export")
    export.add_argument("-k", dest="keyword", default="", metavar="EXPR",
                        help="pytest -k expression on the case ids")
    export.add_argument("--weights", choices=("initializers", "inputs", "both"), default="both",
                        help="W, R, B as constant initializers, as graph inputs, or both (default)")
    export.add_argument("--dtype", choices=DTYPES + ("all",), default="all", help="the dtype rows to export")
    export.add_argument("--fixtures-dir", type=Path, default=None, metavar="DIR",
                        help="the golden fixtures to export (default: the ones installed with the suite)")

    repro = commands.add_parser("repro", help="a standalone reproducer (model, inputs, expected outputs, script) "
                                              "for one result of an adapter with a reproducer")
    repro.add_argument("test_id", metavar="TEST_ID",
                       help="a conformance test id, e.g. 'lstm-seq1-state0-random-b3t5[onnx-native-cpu-float32]'")
    repro.add_argument("-o", "--output-dir", type=Path, required=True, metavar="DIR",
                       help="where the reproducer's files go (required)")
    repro.add_argument("--adapter", default=None, metavar="module:Class",
                       help="the adapter a third-party test id names (its name is in the id as run printed it; "
                            "default: the built-in or entry-point adapter of that name)")
    repro.add_argument("--fixtures-dir", type=Path, default=None, metavar="DIR",
                       help="the golden fixtures the case comes from (default: the ones installed with the suite)")

    search_parser(commands)

    sweep = commands.add_parser("sweep", help="one adapter's matrix across releases of a package, and its history")
    sweep.add_argument("--adapter", required=True, metavar="NAME",
                       help="the adapter to run in every version (required)")
    sweep.add_argument("--versions", required=True, metavar="PACKAGE==V1,V2,...",
                       help="the package and its releases, one environment each (required)")
    sweep.add_argument("--with", dest="with_requirements", action="append", default=[], metavar="REQUIREMENT",
                       help="one more requirement in every version's environment (repeatable), e.g. 'numpy<2'")
    sweep.add_argument("-o", "--output", type=Path, default=None, metavar="DIR",
                       help="default reports/sweep-ADAPTER-PACKAGE")
    sweep.add_argument("--venv-dir", type=Path, default=None, metavar="DIR",
                       help="where the environments are cached (default $CONFORMANCE_CACHE_DIR/sweep-venvs)")
    sweep.add_argument("-k", dest="keyword", default="", metavar="EXPR",
                       help="pytest -k expression on the whole test id, passed on to every version's run")
    sweep.add_argument("--full", action="store_true",
                       help="every case in every version's run (default: conformance run's default plan)")
    sweep.add_argument("--device", choices=("cpu", "cuda", "all"), default=None,
                       help="passed on to every version's conformance run (default: run's)")
    sweep.add_argument("--dtype", choices=DTYPES + ("all",), default=None,
                       help="passed on to every version's conformance run (default: run's)")
    sweep.add_argument("--shards", type=int, default=None, metavar="N",
                       help="passed on to every version's conformance run (default: run's)")
    sweep.add_argument("--fixtures-dir", type=Path, default=None, metavar="DIR",
                       help="the golden fixtures every version runs (default: the ones installed with the suite)")
    sweep.add_argument("--onnx-opset", type=int, default=None, metavar="N",
                       help="passed on to every version's conformance run (see run --onnx-opset)")
    add_renamed(sweep, sweep.add_argument(
        "--known-differences", type=Path, action="append", default=[], metavar="FILE",
        help="a further known-differences list for every version's run (repeatable)"))
    sweep.add_argument("--drift-factor", type=float, default=10.0,
                       help="a passing result whose error moves by more than this factor is flagged as drift")

    history = commands.add_parser("history", help="case x run table of several runs (releases), oldest first")
    history.add_argument("results", nargs="+", type=Path, metavar="RESULTS",
                         help="results.json files, .jsonl streams or report dirs, one column each, oldest first")
    history.add_argument("-o", "--output", type=Path, default=Path("reports/history"), metavar="DIR",
                         help="where history.html and history.json go")
    history.add_argument("--label", dest="labels", action="append", default=[], metavar="TEXT",
                         help="a column's label, once per RESULTS (default: its adapters' framework versions)")
    history.add_argument("--drift-factor", type=float, default=10.0, metavar="F",
                         help="a result whose error moves by more than this factor, same status, is drift")
    history.add_argument("--by-case", action="store_true",
                         help="rows by case, device and dtype: lines up the results of different adapters")
    for listed in commands._choices_actions:  # each --help opens with what the command list says of it
        subcommand = commands.choices[listed.dest]
        subcommand.description = subcommand.description or listed.help
    return parser


def add_known_differences(command: argparse.ArgumentParser) -> None:
    """The known-differences options of run and compare, each with its deprecated first spelling."""
    add_renamed(command, command.add_argument(
        "--known-differences", type=Path, action="append", default=[], metavar="FILE",
        help="a further known-differences list (repeatable; added after the built-in one)"))
    add_renamed(command, command.add_argument(
        "--no-builtin-known-differences", action="store_true",
        help="leave out the built-in list, conformance/verdict/known_differences.txt"))


def command_fixtures(args: argparse.Namespace) -> int:
    from conformance import fixtures
    from conformance.files import check_output_dir

    if args.action == "build":
        directory = args.fixtures_dir or fixtures.default_fixtures_dir()
        check_output_dir(directory)
        manifest = fixtures.build(args.fixtures_dir)
        print(f"built {len(manifest['cases'])} cases in {directory}")
        return EXIT_OK
    count = fixtures.verify(args.fixtures_dir)
    print(f"verified {count} cases: hashes match, the exact oracle reproduces every stored answer bit for "
          f"bit, and the float64 oracle is within {fixtures.FORWARD_ULPS} ULPs of it")
    return EXIT_OK


def command_explain(args: argparse.Namespace) -> int:
    from conformance.commands.explain import explain, explain_result
    from conformance.matrix.spec import CELLS

    if args.cell in CELLS:
        print(explain(args.cell, args.return_sequences, args.return_state))
    else:
        print(explain_result(args.cell, args.report_dir))
    return EXIT_OK


def command_adapters(args: argparse.Namespace) -> int:
    from conformance.commands.probe import listing, probe_all

    if not args.check:
        print("\n".join(listing()))
        return EXIT_OK
    rows = probe_all()
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        if row["available"]:
            versions = ", ".join(f"{k} {v}" for k, v in row["versions"].items())
            print(f"{row['name']:<{width}}  available    devices: {','.join(row['devices'])}  {versions}")
        else:
            print(f"{row['name']:<{width}}  unavailable  {row['reason']}")
    return EXIT_OK


def command_report(args: argparse.Namespace) -> int:
    """index.html, with results.json and junit.xml beside it: the three always describe one run.

    Rendering the output dir's own results.json rewrites only the page; any
    other source (a merge, another run's file, a stream) replaces all three,
    each checked before any is written, under the dir's lock.
    """
    from conformance.files import REPORT_FILES, check_outputs_in
    from conformance.report import write_report
    from conformance.results.lock import ReportDirBusy, ReportDirLock
    from conformance.results.reading import expand, load_any

    sources = expand(args.results)
    own_results = len(sources) == 1 and sources[0].resolve() == (args.output_dir / "results.json").resolve()
    check_outputs_in(args.output_dir, ("index.html",) if own_results else REPORT_FILES)
    document = load_any(sources)
    try:
        lock = ReportDirLock(args.output_dir).acquire()
    except ReportDirBusy as exc:
        raise UsageError(str(exc)) from None
    path = write_report(document, args.output_dir, ("index.html",) if own_results else REPORT_FILES)
    lock.release()
    print(f"report: {path} ({len(sources)} results file(s), {len(document['results'])} results)")
    return EXIT_OK


def command_compare(args: argparse.Namespace) -> int:
    """Exit 0: no regressions; 1: regressed (the cases named on stdout); 2: bad input, or nothing
    in common to compare.

    Everything is checked before anything is written: the factor, the output
    paths (neither may be a compared file), the results files, the
    known-differences lists and, with ``--by-case``, one adapter per run.
    """
    from conformance.files import check_output_file
    from conformance.report import render_regression
    from conformance.results.reading import load_any
    from conformance.results.records import write_json_atomic
    from conformance.results.regression import (
        check_growth_factor,
        colliding_adapters,
        compare_runs,
        comparison_document,
        nothing_compared,
        summary_text,
    )
    from conformance.verdict.known_differences import known_difference_files, load_known_differences

    try:
        check_growth_factor(args.growth_factor)
    except ValueError:
        raise UsageError(f"--growth-factor {args.growth_factor:g}: expected a finite number > 1") from None
    json_path = args.json or args.output.with_suffix(".json")
    compared = (args.baseline.resolve(), args.current.resolve())
    for flag, path in (("", args.output), ("--json ", json_path)):
        if path.resolve() in compared:
            raise UsageError(f"{flag}{path}: the report would overwrite a results file being compared")
        check_output_file(path)
    if json_path.resolve() == args.output.resolve():
        raise UsageError(f"{json_path}: the regression JSON would overwrite the HTML report (-o); "
                         "name another with --json PATH")
    try:
        known = load_known_differences(known_difference_files(args.known_differences,
                                                              not args.no_builtin_known_differences))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    baseline, current = load_any([args.baseline]), load_any([args.current])
    for path, document in ((args.baseline, baseline), (args.current, current)):
        if args.by_case and (adapters := colliding_adapters(document)):
            raise UsageError(f"--by-case needs one adapter per run; {path} holds {', '.join(adapters)}")
    regression = compare_runs(baseline, current, args.growth_factor, known=known, by_case=args.by_case)
    if (why := nothing_compared(regression, baseline, current)) is not None:
        raise UsageError(why)
    try:
        path = render_regression(regression, baseline, current, args.output)
        write_json_atomic(json_path, comparison_document(
            regression, {"baseline": (str(args.baseline), baseline), "current": (str(args.current), current)}))
    except OSError as exc:
        raise UsageError(f"{args.output}: not writable ({exc.strerror or exc})") from None
    print(summary_text(regression))
    print(f"regression JSON: {json_path}")
    print(f"regression report: {path}")
    return EXIT_FAILED if regression.regressed else EXIT_OK


def command_run(args: argparse.Namespace) -> int:
    from conformance.commands.run import run_command

    return run_command(args)


def command_bench(args: argparse.Namespace) -> int:
    from conformance.commands.bench import bench_command, check_options
    from conformance.commands.bench_tox import bench_tox_command

    if args.tox and (args.adapter or args.quick):
        raise UsageError("bench --tox times the whole tox matrix: it takes no --adapter or --quick")
    if args.full and not args.tox:
        raise UsageError("bench --full goes with --tox (each adapter's bench runs its whole matrix already)")
    args.output = args.output or Path("reports/benchmark-tox.json" if args.tox else "reports/benchmark.json")
    check_options(args)
    if args.label != "matrix" and not args.tox:
        raise UsageError("bench --label goes with --tox (it names the tox label to time)")
    return bench_tox_command(args.output, args.full, args.label) if args.tox else bench_command(args)


def command_findings(args: argparse.Namespace) -> int:
    from conformance.commands.findings import findings_command

    return findings_command(args)


def command_export(args: argparse.Namespace) -> int:
    from conformance.commands.export import export_command

    return export_command(args)


def command_cases(args: argparse.Namespace) -> int:
    from conformance.commands.cases import cases_command

    return cases_command(args)


def command_search(args: argparse.Namespace) -> int:
    from conformance.commands.search import search_command

    return search_command(args)


def command_sweep(args: argparse.Namespace) -> int:
    from conformance.commands.sweep import sweep_command

    return sweep_command(args)


def command_history(args: argparse.Namespace) -> int:
    from conformance.commands.history import history_command

    return history_command(args)


def command_repro(args: argparse.Namespace) -> int:
    from conformance.commands.repro import repro_command

    return repro_command(args)


COMMANDS = {"fixtures": command_fixtures, "explain": command_explain, "adapters": command_adapters,
            "report": command_report, "compare": command_compare, "run": command_run,
            "bench": command_bench, "findings": command_findings, "export": command_export,
            "repro": command_repro, "sweep": command_sweep, "history": command_history, "cases": command_cases,
            "search": command_search}


def main(argv: Sequence[str] | None = None) -> int:
    from conformance.adapters import UnknownAdapterError
    from conformance.files import OutputPathError
    from conformance.fixtures import FixtureError
    from conformance.results.records import ResultsFileError

    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except (UsageError, FixtureError, ResultsFileError, UnknownAdapterError, OutputPathError) as exc:
        print(f"conformance: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("conformance: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return reader_went_away()


def reader_went_away() -> int:
    """stdout's reader closed it (``conformance cases | head``): stop quietly, as other Unix tools
    do, instead of a traceback; stdout goes to /dev/null so that Python's flush at exit cannot
    raise again. Exit 141, the shell's code for a SIGPIPE death."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


if __name__ == "__main__":
    sys.exit(main())
