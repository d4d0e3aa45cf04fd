"""The server's Dockerfile agrees with what it runs (issue 16; no Docker daemon is needed): its
CMD is a command line `gatewayz serve` accepts, listening where EXPOSE, HEALTHCHECK and the
README's `docker run` say; it installs pyproject's runtime dependencies on the Lambda functions'
Python and copies what the server reads at run time."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from shared.cli import parser

ROOT = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    logical = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in logical.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def only(keyword: str) -> str:
    found = [rest for key, rest in instructions() if key == keyword]
    assert len(found) == 1, (keyword, found)
    return found[0]


def test_the_command_is_a_serve_the_cli_accepts_on_the_exposed_port() -> None:
    command = json.loads(only("CMD"))  # the exec form: no shell between Docker and the server
    assert command[:2] == ["gatewayz", "serve"]
    args = parser().parse_args(command[1:])
    assert args.host == "0.0.0.0"  # reachable through `docker run -p`, not only inside the container
    assert args.log_format == "json"
    assert only("EXPOSE") == str(args.port)
    healthcheck = only("HEALTHCHECK")
    assert f"http://127.0.0.1:{args.port}/health" in healthcheck
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"docker run [^\n]*-p \d+:{args.port} ", readme), "the README's docker run line"
    assert "docker build -t gatewayz ." in readme


def test_the_image_installs_pyproject_on_the_functions_python_and_copies_what_serve_reads() -> None:
    base = only("FROM")
    template = (ROOT / "template.yaml").read_text()
    lambda_python = re.search(r"Runtime: python(3\.\d+)", template)
    assert lambda_python and base == f"python:{lambda_python.group(1)}-slim"
    run = " ".join(rest for key, rest in instructions() if key == "RUN")
    assert "['project']['dependencies']" in run and "--requirement" in run  # never the dev extras
    assert "pip install" in run and not re.search(r"pip install (?!--)", run), "packages by hand"
    copied = {source for key, rest in instructions() if key == "COPY" for source in rest.split()[:-1]}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied and "infra/migrations" in copied  # serve migrates on start
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for path in copied:
        assert (ROOT / path).exists() and (f"!{path}" in ignored or f"!{path}/" in ignored), path
    env = only("ENV")
    assert "GATEWAYZ_DATABASE_URL=sqlite:////data/gatewayz.db" in env and only("VOLUME") == '["/data"]'
