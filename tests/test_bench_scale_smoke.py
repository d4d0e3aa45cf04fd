"""Smoke runs of issue 20's bench modes (`bench.capacity`, `bench.soak`, `bench.history_flat`,
`bench.pg_added`, and `bench.fsync_gap` on a temporary directory):
their own code end to end on the real PostgreSQL and a private Redis, seconds of load with the
Python loop (no wrk), no timing assertions. Each run uses a database of its own, which it drops,
and stops every process it starts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
import pytest

from bench import capacity, fsync_gap, history_flat, pg_added, soak
from bench.scale import PG_BASE
from bench.targets import gatewayz_bin
from tests.services import answers


@pytest.fixture
def database() -> str:
    assert gatewayz_bin().exists(), "the gatewayz console script is not installed (make install)"
    if not answers("127.0.0.1", 5432):
        pytest.fail("the bench's scale modes run on the PostgreSQL at 127.0.0.1:5432, which does not answer")
    return f"gatewayz_scale_smoke_{os.urandom(4).hex()}"


def _gone(database: str) -> bool:
    with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None


COMMON = ["--python-loadgen", "--no-install"]


def test_capacity_smoke(database: str, tmp_path: Path) -> None:
    out = tmp_path / "capacity.json"
    args = [
        "--seconds",
        "1",
        "--processes",
        "2",
        "--users-per-gateway",
        "2",
        "--concurrency",
        "2",
        "--stats-wait",
        "0.5",
    ]
    assert capacity.main([*args, "--database", database, "--out", str(out), *COMMON]) == 0
    result = json.loads(out.read_text())
    cost = result["one_process"]["per_request"]
    assert cost["requests"] > 0 and cost["redis_sent"] > 0 and cost["pg_cpu_ms"] > 0
    assert result["routine_statements"] == {"reserve": 3, "settle": 5}
    assert result["four_process"]["rps"] > 0 and result["four_process"]["predicted_rps_from_share"] > 0
    assert result["user_ceiling"]["rps"] > 0
    assert _gone(database)


def test_soak_smoke(database: str, tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    args = ["--seconds", "2", "--window", "1", "--concurrency", "2", "--autovacuum", "off"]
    assert soak.main([*args, "--database", database, "--out", str(out), *COMMON]) == 0
    result = json.loads(out.read_text())
    assert len(result["windows"]) >= 2 and all(w["reserve_calls"] > 0 for w in result["windows"])
    assert result["summary"]["errors"] == 0 and result["summary"]["tables"]["credit_holds"]["live"] > 0
    assert _gone(database)


def test_history_flat_smoke(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--history", "200", "--seconds", "0.5", "--rounds", "1"]
    assert history_flat.main([*args, "--database", database, *COMMON]) == 0
    line = capsys.readouterr().out
    assert "p50 at c=1 old user" in line and "errors 0" in line
    assert _gone(database)


def test_pg_added_smoke(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--rounds", "1", "--seconds", "0.5"]
    assert pg_added.main([*args, "--database", database, *COMMON]) == 0
    out = capsys.readouterr().out
    assert "current: added p50 at c=1, median of 1 rounds" in out and "WAL flush median" in out
    assert "errors 0" in out
    assert _gone(database)


def test_fsync_gap_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fsync_gap.main(["--dir", str(tmp_path), "--count", "5", "--gaps", "0,0.1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[1:]] == ["gap 0.0 ms", "gap 0.1 ms"]
    assert list(tmp_path.iterdir()) == []  # its file is gone
