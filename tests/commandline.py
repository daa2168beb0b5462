"""What the command-line tests share: the installed script, and what "one clear line" means.

Every command's normal path and its bad-input path are tested through the
installed ``conformance`` console script in a subprocess, as a user runs it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONSOLE_SCRIPT = Path(sys.executable).with_name("conformance")


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """Bad input's answer: exit 2, one line ``conformance: error: ...`` on stderr, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("conformance: error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` and its bytes: what bad input must leave as it was."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
