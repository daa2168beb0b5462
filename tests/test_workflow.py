"""The GitHub Actions workflow, and the merge of results made on different machines.

The workflow (.github/workflows/conformance.yml) is read as YAML; its environments are the ones
tox.ini's ``matrix`` label holds (its first job's own step lists them); its merge job's own command
line, taken from the YAML, merges two real runs made as two simulated CI runners, laid out as the
artifacts are downloaded. The merge rules themselves (machines kept per record, a skip giving way to a
result, two results of one test or two fixture sets refused) are checked on small documents.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.report import render_regression, render_report
from conformance.report.html import DETAILS_PREFIX
from conformance.results.machine import machine_info
from conformance.results.records import (
    Record,
    ResultsFileError,
    merge_documents,
    records_of,
    results_document,
    validate_results,
)
from conformance.results.regression import compare_runs
from tests.commandline import CONSOLE_SCRIPT, one_line_error, snapshot

yaml = pytest.importorskip("yaml")  # the `test` extra's pyyaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "conformance.yml"
TIMEOUT_S = 300
# Two CI runners as GitHub describes them to a job (RUNNER_NAME, RUNNER_OS, RUNNER_ARCH).
MACHINE_A = {"RUNNER_NAME": "GitHub Actions 7", "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64"}
MACHINE_B = {"RUNNER_NAME": "gpu-box-1", "RUNNER_OS": "Linux", "RUNNER_ARCH": "ARM64"}
ADAPTER_ON = {"A": "tests.oracle_adapters:OracleAdapter", "B": "tests.oracle_adapters:BareOracleAdapter"}


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def job(name: str) -> dict:
    return workflow()["jobs"][name]


def step(job_name: str, uses: str = "", named: str = "") -> dict:
    """The job's one step that uses ``uses`` (an action, without its version) or is named ``named``."""
    found = [s for s in job(job_name)["steps"]
             if (uses and s.get("uses", "").partition("@")[0] == uses) or (named and s.get("name") == named)]
    assert len(found) == 1, (job_name, uses, named, found)
    return found[0]


def run_line(job_name: str, program: str) -> str:
    """The one line of the job's steps that runs ``program``."""
    lines = [line.strip() for s in job(job_name)["steps"] for line in s.get("run", "").splitlines()
             if line.strip().startswith(program + " ")]
    assert len(lines) == 1, (job_name, program, lines)
    return lines[0]


def filled(text: str, values: dict[str, str]) -> str:
    """``text`` with its ``${{ name }}`` expressions filled in, as GitHub fills them before a shell sees them."""
    return re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", lambda m: values[m.group(1)], text)


def tox_label(name: str = "matrix") -> list[str]:
    """tox.ini's ``labels = NAME = ...`` as written."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "tox.ini", encoding="utf-8")
    labels = dict(line.split("=", 1) for line in config["tox"]["labels"].strip().splitlines())
    return [env.strip() for env in labels[f"{name} "].split(",")]


def tox_matrix_label() -> list[str]:
    return tox_label("matrix")


def clean_environment(**variables: str) -> dict[str, str]:
    """This process's environment without CI's or tox's own variables, plus ``variables``."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_", "TOX_", "GITHUB_"))}
    return {**kept, **variables}


# --- the workflow ------------------------------------------------------------------------------


def test_the_workflow_has_an_env_list_a_matrix_a_gpu_job_a_merge_and_the_suites_own_checks():
    assert set(workflow()["jobs"]) == {"envs", "matrix", "gpu", "merge", "checks"}
    triggers = workflow().get("on", workflow().get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request", "workflow_dispatch"} <= set(triggers)


def test_the_envs_step_lists_exactly_the_tox_matrix_label_less_the_report_step(tmp_path):
    pytest.importorskip("tox")
    envs_step = next(s for s in job("envs")["steps"] if s.get("id") == "envs")
    assert envs_step["shell"] == "python"
    script = tmp_path / "envs.py"
    script.write_text(envs_step["run"], encoding="utf-8")
    output = tmp_path / "github_output"
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=clean_environment(GITHUB_OUTPUT=str(output), PATH=path))
    assert done.returncode == 0, done.stderr
    envs = json.loads(output.read_text(encoding="utf-8").removeprefix("envs=").strip())
    label = tox_matrix_label()
    assert label[-1] == "report"
    assert sorted(e["env"] for e in envs) == sorted(label[:-1])
    assert {e["env"]: e["plan"] for e in envs} == {**dict.fromkeys(tox_label("full-plan"), "--full"),
                                                    **dict.fromkeys(tox_label("deployment"), "")}
    assert job("matrix")["strategy"]["matrix"]["include"] == "${{ fromJSON(needs.envs.outputs.envs) }}"


def test_each_matrix_job_runs_its_tox_env_and_passes_the_runner_identity_through_tox():
    pytest.importorskip("tox")
    words = shlex.split(filled(run_line("matrix", "tox"), {"matrix.env": "torch", "matrix.plan": "--full"}))
    assert words[:3] == ["tox", "-e", "torch"]
    assert words[-2:] == ["--", "--full"]  # CI runs the full plan, not the covering plan
    deployment = shlex.split(filled(run_line("matrix", "tox"), {"matrix.env": "executorch", "matrix.plan": ""}))
    assert deployment[-1] == "--"  # a deployment row: its default plan
    overrides = [word for n, word in enumerate(words) if n and words[n - 1] == "-x"]
    done = subprocess.run([sys.executable, "-m", "tox", "config", "-e", "torch", "-k", "pass_env",
                           *[arg for override in overrides for arg in ("-x", override)]],
                          cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, env=clean_environment())
    assert done.returncode == 0, done.stderr
    assert "RUNNER_*" in done.stdout.split()


def test_every_job_sets_up_python_3_11_and_the_tox_jobs_cache_pip():
    for job_name in workflow()["jobs"]:
        assert step(job_name, uses="actions/setup-python")["with"]["python-version"] == "3.11", job_name
    for job_name in ("matrix", "checks", "merge"):
        assert step(job_name, uses="actions/setup-python")["with"]["cache"] == "pip", job_name


def test_each_matrix_job_uploads_its_report_dir_under_a_name_with_its_env_and_runner():
    upload = step("matrix", uses="actions/upload-artifact")["with"]
    assert upload["path"].rstrip("/") == "reports/${{ matrix.env }}"
    assert "${{ matrix.env }}" in upload["name"] and "${{ runner." in upload["name"]
    assert step("matrix", uses="actions/upload-artifact")["if"] == "always()"  # a failing run's results too


def test_the_gpu_job_is_opt_in_runs_on_configurable_labels_and_runs_the_cuda_rows():
    gpu = job("gpu")
    assert "inputs.gpu" in gpu["if"] and "vars.CONFORMANCE_GPU_RUNNER" in gpu["if"]
    assert "inputs.gpu_runner" in gpu["runs-on"] and "vars.CONFORMANCE_GPU_RUNNER" in gpu["runs-on"]
    fallback = re.search(r"\|\| '(\[.*\])'\) \}\}$", gpu["runs-on"])  # neither input nor variable set
    assert fallback and json.loads(fallback.group(1)) == ["self-hosted", "gpu"]
    words = shlex.split(run_line("gpu", ".venv-gpu/bin/conformance"))
    assert words[words.index("--device") + 1] == "cuda" and "--full" in words


def test_the_merge_job_downloads_every_uploaded_result_and_runs_after_every_job():
    merge = job("merge")
    assert merge["if"] == "always()" and set(merge["needs"]) == {"matrix", "gpu"}
    pattern = step("merge", uses="actions/download-artifact")["with"]["pattern"]
    for uploader in ("matrix", "gpu"):
        name = step(uploader, uses="actions/upload-artifact")["with"]["name"]
        assert fnmatch.fnmatch(re.sub(r"\$\{\{[^}]*\}\}", "x", name), pattern), (uploader, name)


def test_the_merge_job_uploads_the_merged_report_with_the_details_files_beside_it():
    """A merged full matrix keeps its result details in files beside index.html (conformance.report.html)."""
    paths = step("merge", uses="actions/upload-artifact")["with"]["path"].split()
    assert {"reports/index.html", "reports/results.json", "reports/junit.xml"} <= set(paths)
    assert any(fnmatch.fnmatch(f"reports/{DETAILS_PREFIX}0123456789ab-0.js", path) for path in paths)


def test_the_checks_job_runs_the_suites_own_tests_and_lint():
    checks = job("checks")
    assert {"tests", "lint"} <= set(checks["strategy"]["matrix"]["env"])
    assert run_line("checks", "tox") == "tox -e ${{ matrix.env }}"


# --- the merge job on two simulated machines ---------------------------------------------------


def artifact_name(env: str, runner: dict[str, str]) -> str:
    """The matrix job's artifact name, its expressions filled in as GitHub fills them."""
    values = {"matrix.env": env, "runner.os": runner["RUNNER_OS"], "runner.arch": runner["RUNNER_ARCH"],
              "runner.name": runner["RUNNER_NAME"]}
    return filled(step("matrix", uses="actions/upload-artifact")["with"]["name"], values)


def conformance_run(runner: dict[str, str], adapter: str, keyword: str, report_dir: Path) -> None:
    done = subprocess.run([str(CONSOLE_SCRIPT), "run", "--adapter", adapter, "-k", keyword,
                           "--report-dir", str(report_dir)], capture_output=True, text=True, timeout=TIMEOUT_S,
                          cwd=report_dir.parent, env=clean_environment(PYTHONPATH=str(ROOT), **runner))
    assert done.returncode == 0, done.stdout + done.stderr


def download(report_dir: Path, into: Path, name: str) -> None:
    """What upload-artifact then download-artifact leave: the report dir's files under the artifact's name.

    Hidden files (the report dir's lock) are not uploaded, as upload-artifact leaves them out.
    """
    shutil.copytree(report_dir, into / name, ignore=shutil.ignore_patterns(".*"))


def merge_command(cwd: Path) -> subprocess.CompletedProcess:
    """The merge job's `conformance report` line, taken from the workflow, through the installed script."""
    words = shlex.split(run_line("merge", "conformance"))
    return subprocess.run([str(CONSOLE_SCRIPT), *words[1:]], capture_output=True, text=True,
                          timeout=TIMEOUT_S, cwd=cwd, env=clean_environment())


def downloads_dir(cwd: Path) -> Path:
    return cwd / step("merge", uses="actions/download-artifact")["with"]["path"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Real runs: the oracle on machine A, the bare oracle on machine B, the oracle's GRUs again on B."""
    root = tmp_path_factory.mktemp("machines")
    plan = {"A": (MACHINE_A, ADAPTER_ON["A"], "tutorial"), "B": (MACHINE_B, ADAPTER_ON["B"], "tutorial"),
            "B-again": (MACHINE_B, ADAPTER_ON["A"], "tutorial and gru")}
    made = {}
    for key, (runner, adapter, keyword) in plan.items():
        (root / key).mkdir()
        conformance_run(runner, adapter, keyword, root / key / "reports")
        made[key] = root / key / "reports"
    return made


@pytest.fixture(scope="module")
def merged(runs, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The merge job's command on machine A's and machine B's artifacts, downloaded as the job does."""
    cwd = tmp_path_factory.mktemp("merge")
    download(runs["A"], downloads_dir(cwd), artifact_name("oracle", MACHINE_A))
    download(runs["B"], downloads_dir(cwd), artifact_name("bare-oracle", MACHINE_B))
    return cwd, merge_command(cwd)


def merged_results(merged) -> dict:
    cwd, done = merged
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((cwd / "reports" / "results.json").read_text(encoding="utf-8"))


def test_the_merge_job_merges_both_machines_results(merged, runs):
    document = merged_results(merged)
    parts = [json.loads((runs[key] / "results.json").read_text(encoding="utf-8")) for key in ("A", "B")]
    assert sorted(r["test_id"] for r in document["results"]) == sorted(
        r["test_id"] for part in parts for r in part["results"])
    assert (merged[0] / "reports" / "index.html").is_file() and (merged[0] / "reports" / "junit.xml").is_file()


def test_the_merged_results_keep_both_machines_with_their_runner_identity(merged):
    machines = merged_results(merged)["machines"]
    assert sorted(machines) == sorted([MACHINE_A["RUNNER_NAME"], MACHINE_B["RUNNER_NAME"]])
    for runner in (MACHINE_A, MACHINE_B):
        info = machines[runner["RUNNER_NAME"]]
        assert (info["runner_name"], info["runner_os"], info["runner_arch"]) == (
            runner["RUNNER_NAME"], runner["RUNNER_OS"], runner["RUNNER_ARCH"])


def test_every_merged_record_keeps_the_machine_that_produced_it(merged):
    expected = {"oracle": MACHINE_A["RUNNER_NAME"], "bare-oracle": MACHINE_B["RUNNER_NAME"]}
    records = merged_results(merged)["results"]
    assert records and {(r["adapter"], r["machine"]) for r in records} == set(expected.items())


def test_the_merged_machine_is_what_both_machines_share(merged):
    document = merged_results(merged)
    assert "runner_name" not in document["machine"]
    assert document["machine"]["python"] == machine_info()["python"]


def test_the_merged_html_report_names_both_machines(merged):
    html = (merged[0] / "reports" / "index.html").read_text(encoding="utf-8")
    machines_table = html.split('id="machines"', 1)[1].split("</table>", 1)[0]
    for runner in (MACHINE_A, MACHINE_B):
        assert runner["RUNNER_NAME"] in machines_table and runner["RUNNER_ARCH"] in machines_table


def test_two_results_of_one_test_from_two_machines_are_one_line_and_exit_2_writing_nothing(runs, tmp_path):
    download(runs["A"], downloads_dir(tmp_path), artifact_name("oracle", MACHINE_A))
    download(runs["B-again"], downloads_dir(tmp_path), artifact_name("oracle-gru", MACHINE_B))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "index.html").write_text("an earlier report")
    before = snapshot(tmp_path / "reports")
    line = one_line_error(merge_command(tmp_path))
    assert "two results to merge" in line and "gru-" in line
    assert MACHINE_A["RUNNER_NAME"] in line and MACHINE_B["RUNNER_NAME"] in line
    assert snapshot(tmp_path / "reports") == before


def test_results_made_on_other_fixtures_are_one_line_and_exit_2(runs, tmp_path):
    download(runs["A"], downloads_dir(tmp_path), artifact_name("oracle", MACHINE_A))
    other = downloads_dir(tmp_path) / artifact_name("bare-oracle", MACHINE_B)
    download(runs["B"], downloads_dir(tmp_path), other.name)
    document = json.loads((other / "results.json").read_text(encoding="utf-8"))
    (other / "results.json").write_text(json.dumps(dict(document, fixtures_sha256="0" * 64)), encoding="utf-8")
    line = one_line_error(merge_command(tmp_path))
    assert "made on other fixtures" in line and other.name in line


def test_a_lone_artifact_downloaded_flat_is_read_too(runs, tmp_path):
    """download-artifact extracts a pattern's only match straight into its path, with no directory."""
    shutil.copytree(runs["A"], downloads_dir(tmp_path), ignore=shutil.ignore_patterns(".*"))
    done = merge_command(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 results file(s)" in done.stdout


# --- the merge rules, on small documents -------------------------------------------------------

MACHINE_X = {"os": "Linux", "python": "3.11.9", "cpu": "x", "node": "n1", "runner_name": "cpu-runner"}
MACHINE_Y = {"os": "Linux", "python": "3.11.9", "cpu": "y", "node": "n2", "runner_name": "gpu-runner"}
CUDA_ID = "lstm-tutorial[torch-cuda-float32]"


def part(records: list[Record], machine: dict, *, planned: int | None = None, fixtures: str = "f" * 64) -> dict:
    return results_document(records, complete=True, created="", fixtures_sha256=fixtures, machine=machine,
                            adapters={"torch": {}}, planned=len(records) if planned is None else planned)


def result(status: str, test_id: str = CUDA_ID, produced: bool = True) -> Record:
    adapter, device, dtype = test_id.partition("[")[2].rstrip("]").split("-")
    return Record(test_id, status, adapter=adapter, device=device, dtype=dtype, produced=produced)


def test_a_run_stamps_every_record_with_its_one_machine():
    document = part([result("pass")], MACHINE_X)
    assert document["machines"] == {"cpu-runner": MACHINE_X}
    assert [r["machine"] for r in document["results"]] == ["cpu-runner"]


@pytest.mark.parametrize("order", ["skip first", "result first"])
def test_a_skipped_cuda_row_gives_way_to_the_gpu_machines_result(order):
    skipped, ran = part([result("skipped")], MACHINE_X), part([result("pass")], MACHINE_Y)
    merged = merge_documents([skipped, ran] if order == "skip first" else [ran, skipped])
    assert [(r["status"], r["machine"]) for r in merged["results"]] == [("pass", "gpu-runner")]
    assert merged["planned"] == merged["produced"] == 1  # one test, planned by both


def test_a_planned_result_never_produced_gives_way_to_one_that_was():
    lost, ran = part([result("error", produced=False)], MACHINE_X), part([result("fail")], MACHINE_Y)
    assert [r["status"] for r in merge_documents([lost, ran])["results"]] == ["fail"]


def test_two_skips_of_one_test_keep_the_first():
    merged = merge_documents([part([result("skipped")], MACHINE_X), part([result("skipped")], MACHINE_Y)])
    assert [r["machine"] for r in merged["results"]] == ["cpu-runner"]


def test_two_results_of_one_test_are_refused_naming_both_parts_and_machines():
    with pytest.raises(ResultsFileError) as refused:
        merge_documents([part([result("pass")], MACHINE_X), part([result("fail")], MACHINE_Y)],
                        ["a/results.json", "b/results.json"])
    message = str(refused.value)
    assert "\n" not in message and CUDA_ID in message
    assert all(word in message for word in ("a/results.json", "b/results.json", "cpu-runner", "gpu-runner"))


def test_parts_made_on_two_fixture_sets_are_refused():
    with pytest.raises(ResultsFileError, match="made on other fixtures"):
        merge_documents([part([result("pass")], MACHINE_X),
                         part([result("pass", "gru-tutorial[torch-cpu-float32]")], MACHINE_Y, fixtures="e" * 64)])


def test_envs_of_one_machine_merge_into_one_machine():
    merged = merge_documents([part([result("pass")], MACHINE_X),
                              part([result("pass", "gru-tutorial[flax-cpu-float32]")], dict(MACHINE_X))])
    assert merged["machines"] == {"cpu-runner": MACHINE_X} and merged["machine"] == MACHINE_X


def test_two_machines_of_one_name_are_kept_apart():
    twin = dict(MACHINE_Y, runner_name="cpu-runner")
    merged = merge_documents([part([result("pass")], MACHINE_X),
                              part([result("pass", "gru-tutorial[torch-cpu-float32]")], twin)])
    assert merged["machines"] == {"cpu-runner": MACHINE_X, "cpu-runner-2": twin}
    assert sorted(r["machine"] for r in merged["results"]) == ["cpu-runner", "cpu-runner-2"]


def test_a_file_older_than_machines_merges_with_its_one_machine():
    old = part([result("pass")], MACHINE_X)
    del old["machines"]
    for record in old["results"]:
        del record["machine"]
    merged = merge_documents([validate_results(old, "old.json"),
                              part([result("pass", "gru-tutorial[torch-cpu-float32]")], MACHINE_Y)])
    assert {r["test_id"]: r["machine"] for r in merged["results"]} == {
        CUDA_ID: "cpu-runner", "gru-tutorial[torch-cpu-float32]": "gpu-runner"}


def test_a_merge_of_merges_keeps_every_machine():
    first = merge_documents([part([result("pass")], MACHINE_X),
                             part([result("pass", "gru-tutorial[torch-cpu-float32]")], MACHINE_Y)])
    third = dict(MACHINE_Y, runner_name="arm-runner", cpu="z")
    merged = merge_documents([first, part([result("pass", "gru-tutorial[flax-cpu-float32]")], third)])
    assert sorted(merged["machines"]) == ["arm-runner", "cpu-runner", "gpu-runner"]
    assert sorted(r["machine"] for r in merged["results"]) == ["arm-runner", "cpu-runner", "gpu-runner"]


def test_a_record_naming_a_machine_the_document_lacks_is_malformed():
    document = part([result("pass")], MACHINE_X)
    document["results"][0]["machine"] = "elsewhere"
    with pytest.raises(ResultsFileError, match=r"\$\.results\[0\]\.machine: 'elsewhere' is not one of"):
        validate_results(document, "r.json")


def test_machine_info_names_the_ci_runner_only_where_one_set_its_variables(monkeypatch):
    for name in MACHINE_A:
        monkeypatch.delenv(name, raising=False)
    assert not {"runner_name", "runner_os", "runner_arch"} & set(machine_info())
    for name, value in MACHINE_A.items():
        monkeypatch.setenv(name, value)
    info = machine_info()
    assert (info["runner_name"], info["runner_os"], info["runner_arch"]) == ("GitHub Actions 7", "Linux", "X64")


def test_one_machines_report_shows_its_machine_card_and_no_machines_table(tmp_path):
    html = render_report(part([result("fail")], MACHINE_X), tmp_path).read_text(encoding="utf-8")
    assert 'id="machines"' not in html and "cpu-runner" in html and "· machine cpu-runner" not in html


def test_a_merged_report_names_the_machine_of_each_column_and_each_panel(tmp_path):
    merged = merge_documents([part([result("fail", "gru-tutorial[torch-cpu-float32]")], MACHINE_X),
                              part([result("fail")], MACHINE_Y)])
    html = render_report(merged, tmp_path).read_text(encoding="utf-8")
    machine_row = html.split('<tr class="machines">', 1)[1].split("</tr>", 1)[0]
    assert re.findall(r">([^<>]+)</th>", machine_row) == ["cpu-runner", "gpu-runner"]  # cpu column, then cuda
    assert "· machine cpu-runner" in html and "· machine gpu-runner" in html
    assert len(records_of(merged)) == 2


def test_a_regression_report_names_a_merged_runs_machines(tmp_path):
    merged = merge_documents([part([result("pass", "gru-tutorial[torch-cpu-float32]")], MACHINE_X),
                              part([result("pass")], MACHINE_Y)])
    html = render_regression(compare_runs(merged, merged, 10.0), merged, merged, tmp_path / "r.html").read_text()
    assert "cpu-runner, gpu-runner" in html
