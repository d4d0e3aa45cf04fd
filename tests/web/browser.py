"""Debian's Chromium for the browser tests: /usr/bin/chromium, installed by the test session
itself (`apt-get install -y chromium`, as root) when missing; Playwright's own browser download
is not available here, so Playwright drives this one (`executable_path`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def chromium() -> str:
    if not CHROMIUM.exists() and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, timeout=300)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
            check=False,
            env=env,
            timeout=900,
        )
    if not CHROMIUM.exists():
        pytest.skip(
            "SKIPPED LOUDLY: Debian's chromium is not installed and could not be (not root, or no "
            "apt-get): the dashboard's browser tests did not run"
        )
    return str(CHROMIUM)
