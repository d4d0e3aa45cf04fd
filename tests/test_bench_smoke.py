"""A smoke run of the benchmark (issues 5, 12 and 13): the bench's own code, ~0.5 s per point, no
timing assertions.

It starts the fake upstream and `gatewayz serve` as subprocesses on free loopback ports, drives
them with the Python load loop (no wrk, no LiteLLM) at concurrency 2 on every route (chat,
Messages and Responses, to the fake's OpenAI and Anthropic APIs), and checks that every answer and stream was
whole, that every route was compared with its reference and that the markdown report was
written. Every process it starts is stopped before it returns.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench import report, run
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
            "0.5",  # 18 points in all: every route on gatewayz, the three floors on direct
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
    assert "| gatewayz | chat | 2 |" in text  # a detail row of the measured point
    assert "| gatewayz | msg-native | 2 |" in text
    assert "| gatewayz | resp | 2 |" in text
    assert "## Routes next to chat" in text

    results = json.loads(reports[0].with_suffix(".json").read_text())
    targets = {t["key"]: t for t in results["targets"]}
    assert set(targets) == {"direct", "gatewayz"}
    # The direct target calls each of the fake's APIs in its own shape: the floors.
    assert set(targets["direct"]["points"]) == {
        "chat-c2",
        "probe-c2",
        "msg-native-c2",
        "msg-native-probe-c2",
        "resp-c2",
        "resp-probe-c2",
        "emb-c2",
        "emb-float-c2",
    }
    assert set(targets["gatewayz"]["points"]) == {
        "chat-c2",
        "probe-c2",
        "chat-hist-c2",
        "chat-hist-probe-c2",
        "msg-c2",
        "msg-probe-c2",
        "chat-claude-c2",
        "chat-claude-probe-c2",
        "msg-native-c2",
        "msg-native-probe-c2",
        "resp-c2",
        "resp-probe-c2",
        "resp-claude-c2",
        "resp-claude-probe-c2",
        "emb-c2",
        "emb-float-c2",
    }
    for t in targets.values():
        assert t["status"] == "ok", t.get("note")
        for entry in t["points"].values():
            for r in entry["runs"]:
                assert r["errors"] == 0, (entry["point"], r)
                assert r["requests"] > 0, (entry["point"], r)

    # Every Messages point was set against its reference, with every figure measured.
    rows = {r.point: r for r in report.route_rows(results)}
    assert set(rows) == {
        "chat-hist-c2",
        "chat-hist-probe-c2",
        "msg-c2",
        "msg-probe-c2",
        "msg-native-c2",
        "msg-native-probe-c2",
        "resp-c2",
        "resp-probe-c2",
        "resp-claude-c2",
        "resp-claude-probe-c2",
        "emb-c2",
        "emb-float-c2",
    }
    assert rows["msg-c2"].reference == "chat-c2"
    assert rows["msg-native-probe-c2"].reference == "chat-claude-probe-c2"
    assert rows["resp-probe-c2"].reference == "probe-c2"
    assert rows["resp-claude-c2"].reference == "chat-claude-c2"
    for row in rows.values():
        assert row.met is not None, row
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
