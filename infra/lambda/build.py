"""Build the Lambda artifact of a Gatewayz function into a directory (`sam build`, via the Makefile).

Every function ships the same artifact, laid out at the root of /var/task:
- the project's packages (`[tool.setuptools.packages.find] include` of pyproject.toml: shared/,
  functions/, with their package data);
- its runtime dependencies (`[project] dependencies`, never the dev extras), installed as wheels
  for the Lambda platform, so the build works from any host without a container;
- the start scripts of this folder (run.sh for the Lambda Web Adapter, with-secrets.sh, ...);
- the bytecode of every module, compiled by the Lambda Python itself (see `compile_bytecode`).

    python3 infra/lambda/build.py OUT_DIR [--python 3.12] [--arch x86_64]

The defaults must match template.yaml (Globals.Function.Runtime and Architectures);
tests/test_deploy_config.py checks that they do.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LAMBDA_PYTHON = "3.12"  # template.yaml: Runtime python3.12 (Amazon Linux 2023, glibc 2.34)
LAMBDA_ARCH = "x86_64"  # template.yaml: Architectures [x86_64]
SCRIPTS = ("run.sh", "with-secrets.sh", "secrets.sh")
_MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}


def platforms(python: str, arch: str) -> list[str]:
    """pip platform tags the Lambda runtime can load (pip does not expand manylinux_2_X itself)."""
    machine = _MACHINE[arch]
    tags = [f"manylinux2014_{machine}"]
    if tuple(int(p) for p in python.split(".")) >= (3, 12):  # AL2023 runtimes: glibc 2.34
        tags += [f"manylinux_2_28_{machine}", f"manylinux_2_34_{machine}"]
    return tags


def project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def dependencies(pyproject: dict[str, object]) -> list[str]:
    return list(pyproject["project"]["dependencies"])  # type: ignore[index]


def packages(pyproject: dict[str, object]) -> list[str]:
    """Top-level package directories named by `[tool.setuptools.packages.find] include`."""
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]  # type: ignore[index]
    names = sorted({pattern.split(".")[0].rstrip("*") for pattern in include})
    return [name for name in names if (ROOT / name / "__init__.py").is_file()]


def build(out: Path, *, python: str = LAMBDA_PYTHON, arch: str = LAMBDA_ARCH) -> None:
    pyproject = project()
    out.mkdir(parents=True, exist_ok=True)
    for name in packages(pyproject):
        shutil.copytree(
            ROOT / name,
            out / name,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache"),
            dirs_exist_ok=True,
        )
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("\n".join(dependencies(pyproject)) + "\n")
        platform_args = [arg for tag in platforms(python, arch) for arg in ("--platform", tag)]
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--quiet",
                "--target",
                str(out),
                "--upgrade",
                "--implementation",
                "cp",
                "--python-version",
                python,
                "--only-binary=:all:",
                *platform_args,
                "--requirement",
                str(requirements),
            ],
            check=True,
        )
    for script in SCRIPTS:
        target = out / script
        shutil.copy2(HERE / script, target)
        target.chmod(0o755)
    compile_bytecode(out, python)


def bytecode_interpreter(python: str) -> str | None:
    """An interpreter of the Lambda Python version: this one, or a working `python3.12` on PATH
    (a pyenv shim can be on PATH and refuse to run)."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python:
        return sys.executable
    candidate = shutil.which(f"python{python}")
    if candidate is None:
        return None
    probe = subprocess.run(
        [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
    )
    return candidate if probe.returncode == 0 and probe.stdout.strip() == python else None


def compile_bytecode(out: Path, python: str) -> None:
    """Ship a `.pyc` of the runtime's own version beside every module.

    /var/task is read-only, so Python cannot cache what it compiles: a module without a matching
    `.pyc` is compiled from source at every cold start (bench/README.md: about 3x the import time).
    pip compiled the dependencies with the build host's Python, whose `.pyc` the Lambda runtime
    ignores unless the versions match, and the project's packages were copied without any. The
    `unchecked-hash` mode makes the runtime trust the `.pyc` without comparing the source's mtime,
    which the zip of `sam build` does not keep exactly (the artifact never changes once built).
    """
    interpreter = bytecode_interpreter(python)
    tag = f"cpython-{python.replace('.', '')}"
    for stale in out.rglob("__pycache__/*.pyc"):
        if f".{tag}." not in stale.name:
            stale.unlink()  # another version's: dead weight in the zip
    if interpreter is None:
        print(
            f"build.py: no python{python} on PATH: the artifact has no bytecode, and every cold start "
            "compiles each module from source (install that Python on the build host)",
            file=sys.stderr,
        )
        return
    # Not check=True: a file some wheel ships that does not compile (a template, a test of another
    # Python) is never imported, and pip itself skips such files the same way.
    done = subprocess.run(
        [
            interpreter,
            "-m",
            "compileall",
            "-q",
            "-f",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
    )
    if done.returncode:
        print("build.py: some files did not compile; they stay source only", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the artifact directory ($ARTIFACTS_DIR under sam build)")
    parser.add_argument("--python", default=LAMBDA_PYTHON, help="Lambda Python version (default %(default)s)")
    parser.add_argument("--arch", default=LAMBDA_ARCH, choices=sorted(_MACHINE))
    args = parser.parse_args(argv)
    build(args.out, python=args.python, arch=args.arch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
