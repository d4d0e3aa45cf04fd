"""Real clients for end-to-end tests that are not Python packages: installed from the pinned
tests/clients/package.json + package-lock.json with the machine's npm, once per lock file, into a
cache directory outside the repository (`npm ci`: exactly the locked versions)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "clients"
CACHE = Path(
    os.environ.get("GATEWAYZ_TEST_CLIENTS_DIR", Path.home() / ".cache" / "gatewayz" / "test-clients")
)


def node_clients() -> Path:
    """The directory holding node_modules/ of the pinned clients (installed on first use)."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("SKIPPED LOUDLY: Node.js and npm are not installed, so the Claude Code tests cannot run")
    lock = (HERE / "package-lock.json").read_bytes() + (HERE / "package.json").read_bytes()
    target = CACHE / hashlib.sha256(lock).hexdigest()[:16]
    if not (target / ".installed").exists():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(HERE / name, target / name)
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=target, check=True, timeout=600
        )
        (target / ".installed").touch()
    return target
