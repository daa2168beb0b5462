"""Device rows only for the devices an adapter declares (``declared_devices``).

A CPU-only third-party adapter gets no cuda rows under ``--device all``; a
built-in (GPU-capable) adapter keeps its cuda rows, skipped with the reason
where the machine has no GPU. The plan ``conformance run`` makes in its own
process and the pytest collection of an adapter process agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.adapters import BUILTIN_ADAPTERS, load_adapter
from conformance.fixtures import load_cases
from conformance.plugin import device_rows, keyword_filter, matrix_params
from tests.commandline import CONSOLE_SCRIPT, one_line_error, snapshot
from tests.test_examples import example_source

REPO = Path(__file__).resolve().parent.parent
ORACLE = "tests.oracle_adapters:OracleAdapter"
EXAMPLE = "my_lstm_adapter:LstmCellAdapter"  # examples/my_lstm_adapter.py, as a vendor saves it


def run_conformance(*args: str, pythonpath: str = str(REPO)) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONSOLE_SCRIPT), "run", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": pythonpath})


def test_an_adapter_without_declared_devices_declares_cpu_only():
    assert load_adapter(ORACLE).declared_devices == ("cpu",)  # the Adapter base's default
    assert load_adapter("tests.oracle_adapters:BareOracleAdapter").declared_devices == ("cpu",)  # no base


GPU_BUILTINS = ("keras-tensorflow", "keras-jax", "keras-torch", "tf-keras", "torch", "flax", "onnx-keras",
                "onnx-torch")  # the built-ins whose frameworks run on CUDA (tract, say, does not)


def test_the_gpu_builtins_declare_cpu_and_cuda_and_reading_it_imports_no_framework():
    """conformance run plans in its own process: reading the declarations must import nothing heavy."""
    probe = ("import sys, json; from conformance.adapters import BUILTIN_ADAPTERS, load_adapter; "
             "declared = {n: load_adapter(n).declared_devices for n in BUILTIN_ADAPTERS}; "
             "heavy = [m for m in ('torch', 'tensorflow', 'jax', 'keras', 'onnxruntime', 'tf_keras', 'flax') "
             "if m in sys.modules]; print(json.dumps([declared, heavy]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO)
    declared, heavy = json.loads(done.stdout)
    assert {name: declared[name] for name in GPU_BUILTINS} == {name: ["cpu", "cuda"] for name in GPU_BUILTINS}
    assert set(declared) == set(BUILTIN_ADAPTERS) and all("cpu" in devices for devices in declared.values())
    assert heavy == []


def test_the_rows_are_the_devices_asked_for_that_the_adapter_declares():
    adapters = [load_adapter(ORACLE), load_adapter("tests.row_adapters:DeclaresCudaOracle")]
    assert device_rows("all", adapters) == {"oracle": ("cpu",), "declares-cuda": ("cpu", "cuda")}
    assert device_rows("cuda", adapters) == {"oracle": (), "declares-cuda": ("cuda",)}
    assert device_rows("cpu", adapters) == {"oracle": ("cpu",), "declares-cuda": ("cpu",)}


def collected_ids(adapter: str, keyword: str, report_dir: Path) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "conformance" / "test_conformance.py"), "--collect-only",
         "-q", "--no-header", "-p", "no:cacheprovider", "--adapter", adapter, "--device", "all", "-k", keyword,
         "--report-dir", str(report_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    return [line.split("::", 1)[1].partition("[")[2][:-1] for line in result.stdout.splitlines() if "::" in line]


@pytest.mark.parametrize("adapter", [ORACLE, "tests.row_adapters:DeclaresCudaOracle"])
def test_the_plan_is_what_pytest_collects_for_the_declared_devices(adapter, tmp_path):
    loaded = load_adapter(adapter)
    selects = keyword_filter("tutorial")
    planned = [p.test_id for p in matrix_params(load_cases(), device_rows("all", [loaded]), "all")
               if selects(p, False)]
    assert planned == collected_ids(adapter, "tutorial", tmp_path)
    assert {p.split("[")[1].rsplit("-", 2)[1] for p in planned} == set(loaded.declared_devices)


@pytest.mark.slow
def test_a_cpu_only_third_party_adapter_gets_no_cuda_rows_and_a_builtin_keeps_them(tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "my_lstm_adapter.py").write_text(example_source())
    done = run_conformance("--adapter", EXAMPLE, "--adapter", "torch", "--device", "all", "-k", "tutorial",
                           "--report-dir", str(tmp_path / "reports"), pythonpath=f"{tmp_path}{os.pathsep}{REPO}")
    assert done.returncode == 0, done.stderr + done.stdout
    results = json.loads((tmp_path / "reports" / "results.json").read_text())["results"]
    devices = {adapter: {r["device"] for r in results if r["adapter"] == adapter}
               for adapter in ("torch-lstmcell", "torch")}
    assert devices == {"torch-lstmcell": {"cpu"}, "torch": {"cpu", "cuda"}}
    import torch

    if not torch.cuda.is_available():
        cuda = [r for r in results if r["device"] == "cuda"]
        assert {(r["status"], r["message"]) for r in cuda} == {
            ("skipped", "torch: no cuda device visible to the framework on this machine")}


def test_a_declared_device_the_machine_lacks_is_skipped_with_the_reason(tmp_path):
    done = run_conformance("--adapter", "tests.row_adapters:DeclaresCudaOracle", "--device", "cuda",
                           "-k", "tutorial", "--report-dir", str(tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert done.returncode == 0 and len(results) == 24, done.stderr
    assert {(r["status"], r["message"]) for r in results} == {
        ("skipped", "declares-cuda: no cuda device visible to the framework on this machine")}


def test_asking_a_cpu_only_adapter_for_cuda_is_refused_before_anything_is_written(tmp_path):
    line = one_line_error(run_conformance("--adapter", ORACLE, "--device", "cuda", "--report-dir", str(tmp_path)))
    assert line == ("conformance: error: the selection matches no test (--device cuda --dtype all, adapters "
                    f"{ORACLE}); nothing was run or written (conformance cases --match PATTERN lists the case ids "
                    "a pattern selects)")
    assert list(tmp_path.iterdir()) == []


def test_a_k_that_matches_nothing_leaves_the_earlier_report_as_it_was(tmp_path):
    assert run_conformance("--adapter", ORACLE, "-k", "tutorial and float32 and lstm", "--report-dir",
                           str(tmp_path)).returncode == 0
    before = snapshot(tmp_path)
    line = one_line_error(run_conformance("--adapter", ORACLE, "-k", "b9t9", "--report-dir", str(tmp_path)))
    assert line.startswith("conformance: error: the selection matches no test (-k 'b9t9' --device ")
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(any(Path("/dev").glob("nvidia[0-9]*")), reason="this machine has an NVIDIA GPU")
def test_the_default_device_on_a_machine_without_a_gpu_plans_no_cuda_rows(tmp_path):
    """--device auto: a CPU-only user's run holds no cuda rows that could only be skipped."""
    done = run_conformance("--adapter", "tests.row_adapters:DeclaresCudaOracle", "-k", "tutorial", "--report-dir",
                           str(tmp_path))
    document = json.loads((tmp_path / "results.json").read_text())
    assert done.returncode == 0 and {r["device"] for r in document["results"]} == {"cpu"}, done.stderr
    assert document["selection"]["device"] == "cpu"


def test_an_adapter_named_that_cannot_run_at_all_ends_the_run_non_zero_with_its_reason(tmp_path):
    done = run_conformance("--adapter", "tests.row_adapters:UnavailableOracle", "--adapter", ORACLE, "-k",
                           "tutorial", "--report-dir", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert ("conformance: adapter unavailable-oracle could not run here: frobnicate does not import: "
            "ModuleNotFoundError: No module named 'frobnicate' (its 24 results are skipped)") in done.stdout
    assert "adapter oracle could not run" not in done.stdout


def test_k_matches_the_whole_test_id_and_the_run_says_what_it_selected_first(tmp_path):
    """-k keeps pytest's meaning: 'lstm' matches an adapter named oracle-lstmcell in every one of its test
    ids; the line printed before the run starts shows it."""
    done = run_conformance("--adapter", ORACLE, "--adapter", "tests.row_adapters:LstmNamedOracle", "-k",
                           "tutorial and lstm", "--report-dir", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    counts = {name: sum(r["adapter"] == name for r in results) for name in ("oracle", "oracle-lstmcell")}
    assert counts["oracle-lstmcell"] == 24 and 0 < counts["oracle"] < 24
    assert done.stderr.splitlines()[0] == (f"selected: oracle {counts['oracle']} tests, oracle-lstmcell "
                                           f"{counts['oracle-lstmcell']} tests")


def test_a_declared_devices_that_is_a_string_is_one_line(report_dir):
    line = one_line_error(run_conformance("--adapter", "tests.row_adapters:StringDeclaredOracle",
                                          "--report-dir", str(report_dir)))
    assert "declared_devices must be a non-empty tuple of device names" in line and "'cuda'" in line
