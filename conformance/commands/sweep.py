"""``conformance sweep``: one adapter's matrix across releases of one package, and its history report.

``conformance sweep --adapter onnx-native --versions "onnxruntime==1.15.0,1.18.1,1.32.0"`` makes one
virtual environment per version, runs ``conformance run`` in each and writes one history report
(``conformance.results.history``, ``conformance.report.render_history``) over the results:

    OUTPUT/                        # default reports/sweep-ADAPTER-PACKAGE
      onnxruntime-1.15.0/          # each version's own report dir: results.json, junit.xml, index.html
      ...
      sweep.json                   # what was asked, and per version how it was installed and ran
      history.html, history.json   # case x version

The environments are cached under ``$CONFORMANCE_CACHE_DIR/sweep-venvs`` (or ``--venv-dir``), keyed by
what is installed in them: a second sweep over the same versions installs nothing. Each holds the
suite itself, installed editable from this source tree (so every version runs today's cases and
verdict rules), the requirements of the adapter's extras as ``pyproject.toml`` pins them (the
same extras tox gives its environment), with the swept package pinned to the version instead, and
whatever ``--with`` adds (``--with "numpy<2"`` for releases built before NumPy 2).

Where pip refuses a version beside the pinned frameworks (Keras < 3.12 beside tensorflow-cpu
2.21), the version is installed as a **forced** ``--no-deps`` overlay on the default environment,
and labelled so: the run's results carry ``machine.install`` (``CONFORMANCE_INSTALL``) and the
history shows the column as forced. A version that installs in neither way, or whose run ends
with a usage error, is a column saying why, not a crash. Versions run oldest first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from conformance.caches import cache_root
from conformance.commands.exits import EXIT_OK, UsageError
from conformance.files import check_output_dir
from conformance.results.machine import INSTALL_VARIABLE
from conformance.results.records import write_json_atomic

DISTRIBUTION = "rnn-conformance"
SCHEMA = "rnn-conformance/sweep/1"
# Each built-in adapter's pyproject extras: the ones tox.ini's environment for it installs
# (tests/test_tox.py holds the two to each other).
ADAPTER_EXTRAS = {
    "keras-tensorflow": ("keras", "tensorflow"), "keras-jax": ("keras", "jax"), "keras-torch": ("keras", "torch"),
    "tf-keras": ("keras", "tensorflow"), "torch": ("torch",), "flax": ("jax",),
    "onnx-keras": ("keras", "onnx", "tensorflow"), "onnx-keras-jax": ("jax", "jax2onnx", "keras", "onnx"),
    "onnx-keras-torch": ("keras", "onnx", "torch"),
    "onnx-torch": ("onnx", "torch"), "onnx-native": ("onnx",), "onnx-native-layout1": ("onnx",),
    "openvino": ("openvino",), "openvino-inputs": ("openvino",), "openvino-torch": ("openvino", "torch"),
    "openvino-keras": ("keras", "openvino", "tensorflow"),
    "tract": ("tract",), "tract-inputs": ("tract",),
    "executorch": ("executorch",),
    "torch-compile": ("torch",),
    "litert-keras": ("keras", "litert"), "litert-tf-keras": ("keras", "litert", "tensorflow"),
}
# Installed after the rest with --no-deps, as tox does: tf-keras requires the full tensorflow wheel.
NO_DEPS_REQUIREMENTS = {"tf-keras": ("tf-keras==2.21.*",), "litert-tf-keras": ("tf-keras==2.21.*",)}
PIP = ("-m", "pip", "install", "--no-compile", "--disable-pip-version-check")


@dataclass(frozen=True)
class Sweep:
    """What was asked: one adapter, one package, its versions oldest first, and the run's options."""

    adapter: str
    package: str
    versions: tuple[str, ...]
    extra_requirements: tuple[str, ...] = ()
    run_options: tuple[str, ...] = ()


@dataclass
class VersionRun:
    """One version's row of sweep.json: how it was installed, how its run ended, where its results are."""

    version: str
    label: str
    install: str = ""  # "normal", "forced --no-deps overlay", or "failed"
    install_note: str = ""  # pip's refusal (forced, failed) or "cached"
    install_s: float = 0.0
    run_exit: int | None = None
    run_note: str = ""
    run_s: float = 0.0
    results: str = ""  # the version's results.json, relative to the sweep's directory
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def forced(self) -> bool:
        return self.install.startswith("forced")


class InstallFailed(Exception):
    """pip could not make the environment; the message is pip's first ERROR line.

    ``conflict``: pip refused because of the other pins (a forced overlay may still install
    it), not because the version does not exist for this Python.
    """

    def __init__(self, message: str, conflict: bool = False):
        super().__init__(message)
        self.conflict = conflict


def parse_versions(text: str) -> tuple[str, tuple[str, ...]]:
    """'onnxruntime==1.15.0,1.18.1' -> ('onnxruntime', ('1.15.0', '1.18.1')), oldest first."""
    from packaging.version import InvalidVersion, Version

    package, equals, rest = text.partition("==")
    versions = [v.strip() for v in rest.split(",") if v.strip()]
    if not equals or not package.strip() or not versions:
        raise UsageError(f"--versions {text!r}: expected PACKAGE==V1,V2,... (e.g. onnxruntime==1.15.0,1.32.0)")
    try:
        ordered = sorted(dict.fromkeys(versions), key=Version)
    except InvalidVersion as exc:
        raise UsageError(f"--versions {text!r}: {exc}") from None
    return package.strip(), tuple(ordered)


def source_root() -> Path:
    """The suite's source tree, which every sweep environment installs editable."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise UsageError(f"sweep installs the suite from its source tree; {root} has no pyproject.toml "
                         "(install the suite from a checkout: pip install -e .)")
    return root


def _name(requirement: str) -> str:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    return canonicalize_name(Requirement(requirement).name)


def extra_requirements(extras: tuple[str, ...]) -> list[str]:
    """The suite's requirements for ``extras``, as pyproject.toml pins them (markers dropped)."""
    from packaging.requirements import Requirement

    requirements = []
    for text in metadata.requires(DISTRIBUTION) or []:
        requirement = Requirement(text)
        if requirement.marker and any(requirement.marker.evaluate({"extra": e}) for e in extras):
            requirement.marker = None
            requirements.append(str(requirement))
    return list(dict.fromkeys(requirements))


def requirements_for(sweep: Sweep, version: str | None) -> list[str]:
    """The environment's requirements; ``version`` None: the default ones (a forced overlay's base)."""
    base = extra_requirements(ADAPTER_EXTRAS.get(sweep.adapter, ()))
    base += list(sweep.extra_requirements)
    if version is None:
        return base
    kept = [r for r in base if _name(r) != _name(sweep.package)]
    return kept + [f"{sweep.package}=={version}"]


def environment_key(sweep: Sweep, version: str, root: Path) -> str:
    """Names the cached environment: what it installs, the Python, the source tree and its pyproject."""
    facts = [sys.version, str(root), (root / "pyproject.toml").read_text(encoding="utf-8"),
             requirements_for(sweep, version), requirements_for(sweep, None),
             NO_DEPS_REQUIREMENTS.get(sweep.adapter, ())]
    digest = hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:16]
    return path_part(f"{sweep.adapter}-{sweep.package}-{version}-{digest}")


def path_part(name: str) -> str:
    """``name`` as one safe path component: a ``module:Class`` adapter's ``:`` (which ``venv``
    refuses: it separates PATH) and any ``/`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._+=-]", "_", name)


def _pip(python: Path, arguments: list[str]) -> None:
    done = subprocess.run([str(python), *PIP, *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        said = done.stderr + done.stdout
        raise InstallFailed(pip_refusal(said, done.returncode),
                            conflict="ResolutionImpossible" in said or "conflicting dependencies" in said)


def pip_refusal(said: str, returncode: int) -> str:
    """Why pip refused, in a line: "no such version" for a requirement no index holds, else pip's
    first ERROR line that says why (not its notes on versions it ignored for another Python)."""
    missing = re.search(r"^ERROR: No matching distribution found for (\S+)", said, re.MULTILINE)
    if missing:
        return f"no such version: pip finds no {missing.group(1)} for this Python and platform"
    lines = [line for line in said.splitlines()
             if line.startswith("ERROR") and not line.startswith("ERROR: Ignored the following")]
    return (lines[0] if lines else f"pip exited {returncode}")[:300]


def _new_environment(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, capture_output=True)
    return path / "bin" / "python"


def install(sweep: Sweep, version: str, venv_dir: Path, root: Path) -> tuple[Path, str, str]:
    """(the environment's bin dir, how it was installed, a note); InstallFailed when pip can't.

    Built under a ``.partial`` name and renamed when whole, so a killed sweep leaves no half
    environment in the cache (the venv's scripts then name the old path: it is used through
    ``python -m``).
    """
    final = venv_dir / environment_key(sweep, version, root)
    marker = final / "sweep-install.json"
    if marker.is_file():
        made = json.loads(marker.read_text(encoding="utf-8"))
        return final / "bin", made["install"], f"cached ({made['note']})" if made["note"] else "cached"
    partial = final.with_name(final.name + ".partial")
    try:
        how, note = _install_into(partial, sweep, version, root)
    except InstallFailed:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    (partial / "sweep-install.json").write_text(json.dumps({"install": how, "note": note}), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return final / "bin", how, note


def _install_into(partial: Path, sweep: Sweep, version: str, root: Path) -> tuple[str, str]:
    """pip as a user would; where pip refuses the version beside the pins, the forced overlay."""
    python = _new_environment(partial)
    suite = ["-e", str(root)]
    try:
        _pip(python, suite + requirements_for(sweep, version))
        how, note = "normal", ""
    except InstallFailed as refusal:
        if not refusal.conflict:
            raise
        python = _new_environment(partial)
        _pip(python, suite + requirements_for(sweep, None))
        _pip(python, ["--no-deps", f"{sweep.package}=={version}"])
        how, note = "forced --no-deps overlay", f"pip refused it with the pinned frameworks: {refusal}"
    for requirement in NO_DEPS_REQUIREMENTS.get(sweep.adapter, ()):
        _pip(python, ["--no-deps", requirement])
    return how, note


def run_version(sweep: Sweep, run: VersionRun, bin_dir: Path, output: Path) -> None:
    """``conformance run`` in the version's environment, its output passed through with a prefix."""
    report_dir = output / run.label.replace(" ", "-")
    command = [str(bin_dir / "python"), "-m", "conformance", "run", "--adapter", sweep.adapter,
               "--report-dir", str(report_dir), *sweep.run_options]
    environment = {**os.environ, INSTALL_VARIABLE: f"{run.install}: {run.install_note}" if run.forced
                   else run.install}
    environment.pop("VIRTUAL_ENV", None)
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=environment, errors="replace")
    try:
        last = pass_through(process, run.label)
    except KeyboardInterrupt:
        run.run_exit, run.run_s = stop_run(process, run.label), round(time.monotonic() - started, 1)
        run.run_note = f"interrupted; its INCOMPLETE report: {report_dir}"
        raise
    run.run_exit = process.wait()
    run.run_s = round(time.monotonic() - started, 1)
    if (report_dir / "results.json").is_file() and run.run_exit in (0, 1):
        run.results = str((report_dir / "results.json").relative_to(output))
        document = json.loads((report_dir / "results.json").read_text(encoding="utf-8"))
        run.versions = (document.get("adapters", {}).get(sweep.adapter) or {}).get("versions") or {}
    else:
        run.run_note = f"conformance run exited {run.run_exit}: {last[:300]}"


def pass_through(process: subprocess.Popen, label: str) -> str:
    """The run's output, each line prefixed with the version's label; returns its last non-empty line."""
    last = ""
    for line in process.stdout:
        last = line.strip() or last
        print(f"  {label}: {line.rstrip()}", file=sys.stderr, flush=True)
    return last


def stop_run(process: subprocess.Popen, label: str) -> int:
    """Ctrl-C during a version's run: the run is asked to stop (SIGINT, which it answers by writing
    its INCOMPLETE report) and waited for, its output still read (a closed pipe would kill it
    before it writes); a further Ctrl-C cannot cut that short. Returns its exit status."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        print(f"sweep: interrupted; waiting for the run of {label} to write its report", file=sys.stderr, flush=True)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        pass_through(process, label)
        return process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


def sweep_versions(sweep: Sweep, output: Path, venv_dir: Path) -> list[VersionRun]:
    root = source_root()
    runs = []
    for number, version in enumerate(sweep.versions, 1):
        run = VersionRun(version=version, label=f"{sweep.package} {version}")
        print(f"sweep: [{number}/{len(sweep.versions)}] {run.label}: installing", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            bin_dir, run.install, run.install_note = install(sweep, version, venv_dir, root)
        except InstallFailed as failure:
            run.install, run.install_note = "failed", str(failure)
        run.install_s = round(time.monotonic() - started, 1)
        print(f"sweep: [{number}/{len(sweep.versions)}] {run.label}: {run.install}"
              f"{' (' + run.install_note + ')' if run.install_note else ''} in {run.install_s:g} s",
              file=sys.stderr, flush=True)
        try:
            if run.install != "failed":
                run_version(sweep, run, bin_dir, output)
        finally:  # an interrupted version has its row too
            runs.append(run)
            write_sweep_file(sweep, runs, output)
    return runs


def write_sweep_file(sweep: Sweep, runs: list[VersionRun], output: Path) -> None:
    import conformance

    write_json_atomic(output / "sweep.json", {
        "schema": SCHEMA, "suite_version": conformance.__version__, "adapter": sweep.adapter,
        "package": sweep.package, "versions": list(sweep.versions),
        "requirements": requirements_for(sweep, None), "run_options": list(sweep.run_options),
        "runs": [asdict(run) for run in runs]})


def write_history(sweep: Sweep, runs: list[VersionRun], output: Path, drift_factor: float) -> Path:
    from conformance.report import render_history
    from conformance.results.history import HistoryRun, build_history
    from conformance.results.reading import load_any

    entries = []
    for run in runs:
        document = load_any([output / run.results]) if run.results else None
        note = run.run_note or (f"install failed: {run.install_note}" if run.install == "failed" else "")
        if run.forced:
            note = f"forced --no-deps overlay ({run.install_note})"
        entries.append(HistoryRun(run.label, document, note=note, forced=run.forced))
    return render_history(build_history(entries, drift_factor=drift_factor), output)


def run_options(args: argparse.Namespace) -> tuple[str, ...]:
    """The ``conformance run`` options a sweep passes on to every version's run."""
    options = []
    for flag, value in (("-k", args.keyword), ("--device", args.device), ("--dtype", args.dtype),
                        ("--shards", args.shards), ("--fixtures-dir", args.fixtures_dir),
                        ("--onnx-opset", args.onnx_opset)):
        if value not in (None, ""):
            options += [flag, str(value)]
    for path in args.known_differences:
        options += ["--known-differences", str(Path(path).resolve())]
    if args.full:
        options.append("--full")
    return tuple(options)


def sweep_command(args: argparse.Namespace) -> int:
    """Exit 0 when every version was installed or given its row; 2 on bad input."""
    from conformance.adapters import load_adapter
    from conformance.commands.run import check_keyword

    package, versions = parse_versions(args.versions)
    load_adapter(args.adapter)  # UnknownAdapterError -> one line, exit 2
    if args.adapter not in ADAPTER_EXTRAS and not args.with_requirements:
        raise UsageError(f"--adapter {args.adapter}: not a built-in adapter; say what its environment "
                         "needs with --with REQUIREMENT")
    check_keyword(args.keyword)
    for requirement in args.with_requirements:
        try:
            _name(requirement)
        except Exception:  # noqa: BLE001 - packaging's InvalidRequirement
            raise UsageError(f"--with {requirement!r}: not a pip requirement") from None
    output = args.output or Path("reports") / path_part(f"sweep-{args.adapter}-{package}")
    check_output_dir(output)
    venv_dir = args.venv_dir or ((cache_root() or output) / "sweep-venvs")
    check_output_dir(venv_dir)
    sweep = Sweep(args.adapter, package, versions, tuple(args.with_requirements), run_options(args))
    started = time.monotonic()
    runs = sweep_versions(sweep, output, venv_dir)
    path = write_history(sweep, runs, output, args.drift_factor)
    print(f"sweep: {len(runs)} versions in {time.monotonic() - started:.0f} s; history: {path}")
    return EXIT_OK
