"""The Lambda artifact's bytecode (issue 16, cold starts): compiled by the runtime's Python version
as unchecked-hash `.pyc` (trusted without the source's mtime, which the deployment zip does not
keep), other versions' `.pyc` dropped, and a clear warning when no such Python is at hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.test_deploy_config import ROOT, load_file_module

build = load_file_module(ROOT / "infra/lambda/build.py", "gatewayz_lambda_build")
HERE = f"{sys.version_info.major}.{sys.version_info.minor}"


def artifact(tmp_path: Path) -> Path:
    package = tmp_path / "functions"
    (package / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "chat.py").write_text("ANSWER = 42\n")
    (package / "__pycache__" / "chat.cpython-39.pyc").write_bytes(b"another version's")
    return tmp_path


def test_every_module_gets_unchecked_hash_bytecode_of_the_runtime_version(tmp_path: Path) -> None:
    out = artifact(tmp_path)
    build.compile_bytecode(out, HERE)
    pyc = Path(importlib.util.cache_from_source(str(out / "functions" / "chat.py")))
    header = pyc.read_bytes()[:16]
    assert header[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(header[4:8], "little") == 0b01  # PEP 552: hash-based, source not checked
    assert not (out / "functions" / "__pycache__" / "chat.cpython-39.pyc").exists()
    # Read-only like /var/task: the import uses the shipped .pyc even when the source changed.
    (out / "functions" / "chat.py").write_text("ANSWER = 0\n")
    spec = importlib.util.spec_from_file_location("lambda_chat", out / "functions" / "chat.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.ANSWER == 42


def test_without_the_runtime_python_the_build_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = artifact(tmp_path)
    build.compile_bytecode(out, "3.99")
    assert "no python3.99 on PATH" in capsys.readouterr().err
    assert not list(out.rglob("*.pyc"))
