"""relay_container/build_native.py refuses what it must not touch and says why.

The build itself runs in ``make test`` (``make native``) and its result is what the second
pass of the relay's tests imports (tests/relay/test_compiled.py checks that it does).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TIMEOUT

SCRIPT = ROOT / "relay_container" / "build_native.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_without_an_output_directory_it_explains_usage() -> None:
    """No --out: usage and exit code 2, nothing built."""
    result = run()
    assert result.returncode == 2
    assert "--out" in result.stderr


def test_an_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    """--out naming a file: a clear error, and the file is left as it was."""
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    result = run("--out", str(target))
    assert result.returncode == 1
    assert "not a directory" in result.stderr
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("name", ["src", "home"], ids=["project-dir", "home-dir"])
def test_a_directory_holding_something_else_is_never_cleared(tmp_path: Path, name: str) -> None:
    """--out pointing at a non-empty directory that is not an earlier build: refused, intact."""
    target = tmp_path / name
    target.mkdir()
    (target / "precious.py").write_text("x = 1\n")
    result = run("--out", str(target))
    assert result.returncode == 1
    assert "refusing to clear it" in result.stderr
    assert (target / "precious.py").read_text() == "x = 1\n"
