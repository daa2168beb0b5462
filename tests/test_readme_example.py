"""The README's third-party adapter runs, as written, through `conformance run`."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def example_source() -> str:
    text = README.read_text()
    block = re.search(r"<!-- example-adapter:start -->\s*```python\n(.*?)```", text, re.S)
    assert block, "README lost its example adapter"
    return block.group(1)


@pytest.mark.slow
def test_the_readme_example_adapter_passes_the_lstm_tutorial_cases(tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "my_lstm_adapter.py").write_text(example_source())
    report_dir = tmp_path / "reports"
    done = subprocess.run(
        [sys.executable, "-m", "conformance", "run", "--adapter", "my_lstm_adapter:LstmCellAdapter",
         "-k", "tutorial or initial_state", "--device", "cpu", "--report-dir", str(report_dir)],
        capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr + done.stdout
    results = json.loads((report_dir / "results.json").read_text())["results"]
    tutorial_lstm = [r for r in results if r["cell"] == "lstm" and r["option"] == "tutorial"]
    assert len(tutorial_lstm) == 8 and {r["status"] for r in tutorial_lstm} == {"pass"}
    assert {r["status"] for r in results} == {"pass", "unsupported"}
