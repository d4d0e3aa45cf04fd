"""`python -m bench.cold_start --artifact` runs (issue 16): it imports each function of an
artifact from that directory alone, with nothing written beside it, and tabulates wall time, CPU
time and RSS per target. No timing is asserted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench import cold_start


def fake_artifact(root: Path) -> Path:
    (root / "functions").mkdir(parents=True)
    (root / "functions" / "__init__.py").write_text("")
    (root / "functions" / "demo.py").write_text("import json\n\nhandler = json.dumps\n")
    (root / "functions" / "helper.py").write_text("VALUE = 1\n")  # no handler: not a function
    return root


def test_artifacts_are_compared_function_by_function(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = fake_artifact(tmp_path / "a"), fake_artifact(tmp_path / "b")
    out = tmp_path / "report.md"
    cold_start.main(
        [
            "--runs",
            "1",
            "--python",
            sys.executable,
            "--artifact",
            f"old={first}",
            "--artifact",
            f"new={second}",
            "--out",
            str(out),
        ]
    )
    table = out.read_text()
    assert (
        "| function (medians) | old: import (ms) | old: import CPU (ms) | old: peak RSS (MB) | new: import (ms)"
        in table
    )
    rows = [line for line in table.splitlines() if line.startswith("| `functions/")]
    assert [row.split("|")[1].strip() for row in rows] == ["`functions/demo.py`"]
    assert len(rows[0].split("|")) == 3 + 6  # label, then three figures per artifact
    assert not list(first.rglob("*.pyc")), "an artifact is imported read-only (-B)"


def test_a_directory_without_functions_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not a Lambda artifact"):
        cold_start.main(["--runs", "1", "--artifact", str(tmp_path)])
