"""A smoke run of the benchmark (issue 5): the bench's own code, ~1 s per point, no timing assertions.

It starts the fake upstream and `gatewayz serve` as subprocesses on free loopback ports, drives
them with the Python load loop (no wrk, no LiteLLM) at concurrency 2, and checks that every
answer was a success and that the markdown report was written. Every process it starts is
stopped before it returns.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench import run
from bench.procs import tree
from bench.targets import gatewayz_bin


def test_bench_smoke(tmp_path: Path) -> None:
    assert gatewayz_bin().exists(), "the gatewayz console script is not installed (make install)"
    code = run.main(
        [
            "--quick",
            "--targets",
            "direct,gatewayz",
            "--duration",
            "1",
            "--concurrency",
            "2",
            "--loadgen",
            "python",
            "--warmup",
            "0.2",
            "--slow-streams",
            "10",
            "--slow-stream-seconds",
            "0.5",
            "--no-install",
            "--label",
            "smoke",
            "--out-dir",
            str(tmp_path),
        ]
    )
    assert code == 0
    reports = list(tmp_path.glob("*-smoke.md"))
    assert len(reports) == 1
    text = reports[0].read_text()
    assert "## Summary" in text and "## Issue-5 targets" in text
    assert "| gatewayz | 2 |" in text  # a detail row of the measured point

    results = json.loads(reports[0].with_suffix(".json").read_text())
    targets = {t["key"]: t for t in results["targets"]}
    assert set(targets) == {"direct", "gatewayz"}
    for t in targets.values():
        assert t["status"] == "ok", t.get("note")
        assert set(t["points"]) == {"chat-c2", "probe-c2"}
        for entry in t["points"].values():
            for r in entry["runs"]:
                assert r["errors"] == 0, r
                assert r["requests"] > 0, r
    slow = targets["gatewayz"]["slow_streams"]
    assert slow["errors"] == 0 and slow["ok"] == 10
    assert targets["gatewayz"]["startup_s"] > 0

    # Nothing the bench started is left running.
    assert not [cmd for cmd in _descendants() if "bench.fake_upstream" in cmd or "gatewayz serve" in cmd]


def _descendants() -> list[str]:
    out = []
    for pid in tree(os.getpid())[1:]:
        try:
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return out
