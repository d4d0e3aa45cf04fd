"""Load generators: wrk with a Lua script (the default), and a Python closed loop on aiohttp.

Both are closed loops: `concurrency` clients, each sending its next request as soon as the last
answer ended, for `duration` seconds. The Python loop is also the streaming probe: per stream it
records time to first byte (the first body bytes after the headers) and total time, and it
counts a stream as an error unless it ends the way its API ends one (`routes.Api.stream_end`:
`data: [DONE]` for chat, `event: message_stop` for Messages), and an answer as an error unless
it carries its API's mark (`"choices"`, `"stop_reason"`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.routes import CHAT, Api

HERE = Path(__file__).resolve().parent
WRK_LUA = HERE / "wrk_post.lua"


@dataclass
class LoadResult:
    tool: str  # "wrk" | "python"
    concurrency: int
    duration: float  # seconds actually measured
    requests: int  # completed answers (2xx and non-2xx)
    errors_status: int = 0  # non-2xx answers (wrk: status > 399) and, for streams, no stream end
    errors_socket: int = 0  # connect/read/write errors and timeouts
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    ttfb_p50_ms: float | None = None  # streaming probe only
    ttfb_p99_ms: float | None = None
    cpu: dict[str, float] = field(default_factory=dict)  # role -> CPU % over the run

    @property
    def rps(self) -> float:
        ok = self.requests - self.errors_status
        return ok / self.duration if self.duration > 0 else 0.0

    @property
    def errors(self) -> int:
        return self.errors_status + self.errors_socket

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["rps"] = self.rps
        out["errors"] = self.errors
        return out


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, round(q / 100.0 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


# ---- wrk ------------------------------------------------------------------------------------


def wrk_path() -> str | None:
    return shutil.which("wrk")


def ensure_wrk(install: bool, say: Callable[[str], None]) -> str | None:
    """wrk from Debian's packages; installed with apt-get when missing (root only)."""
    path = wrk_path()
    if path or not install:
        return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        say("wrk is missing and cannot be installed here (not root or no apt-get)")
        return None
    say("installing wrk from Debian's packages (apt-get update && apt-get install -y wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0:
            say(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
            return None
    return wrk_path()


def run_wrk(
    wrk: str,
    url: str,
    body_file: Path,
    headers: Mapping[str, str],
    concurrency: int,
    duration: float,
    timeout_s: float = 10.0,
    tokens: Sequence[str] = (),
) -> LoadResult:
    """`tokens`: API keys the requests take in turn (the script's BENCH_TOKENS), over `headers`'."""
    lines = "\n".join(f"{name}: {value}" for name, value in headers.items())
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file), "BENCH_HEADERS": lines}
    if tokens:
        env["BENCH_TOKENS"] = " ".join(tokens)
    seconds = max(1, round(duration))
    cmd = [
        wrk,
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(WRK_LUA),
        url,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-800:]} {proc.stderr[-800:]}")
    d = json.loads(line[len("BENCH_JSON ") :])
    return LoadResult(
        tool="wrk",
        concurrency=concurrency,
        duration=d["duration_us"] / 1e6,
        requests=d["requests"],
        errors_status=d["status"],
        errors_socket=d["connect"] + d["read"] + d["write"] + d["timeout"],
        p50_ms=d["p50_us"] / 1000,
        p90_ms=d["p90_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        max_ms=d["max_us"] / 1000,
    )


# ---- Python closed loop / streaming probe ---------------------------------------------------


def _session(concurrency: int, timeout_s: float) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=0, limit_per_host=0, force_close=False, enable_cleanup_closed=False
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        skip_auto_headers=("User-Agent",),
    )


async def _one(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    stream: bool,
    api: Api,
) -> tuple[bool, float, float | None]:
    """(ok, total seconds, ttfb seconds); raises on socket errors."""
    t0 = time.perf_counter()
    ttfb = None
    async with session.post(url, data=body, headers=headers) as resp:
        if stream:
            first = await resp.content.readany()
            ttfb = time.perf_counter() - t0
            tail = first[-api.stream_tail :]
            while True:
                chunk = await resp.content.readany()
                if not chunk:
                    break
                tail = (tail + chunk)[-api.stream_tail :]
            ok = resp.status == 200 and api.stream_end in tail
        else:
            data = await resp.read()
            ok = resp.status == 200 and api.answer_mark in data
    return ok, time.perf_counter() - t0, ttfb


async def _closed_loop(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    concurrency: int,
    duration: float,
    stream: bool,
    timeout_s: float,
    api: Api,
    tokens: Sequence[str] = (),
) -> LoadResult:
    lat: list[float] = []
    ttfbs: list[float] = []
    counts = {"ok": 0, "bad": 0, "socket": 0}
    hdrs = {"content-type": "application/json", **headers}
    async with _session(concurrency, timeout_s) as session:
        loop = asyncio.get_running_loop()
        t_start = loop.time()
        deadline = t_start + duration

        async def worker(k: int) -> None:
            mine = {**hdrs, "authorization": f"Bearer {tokens[k % len(tokens)]}"} if tokens else hdrs
            while loop.time() < deadline:
                try:
                    ok, total, ttfb = await _one(session, url, body, mine, stream, api)
                except (aiohttp.ClientError, OSError, TimeoutError):
                    counts["socket"] += 1
                    await asyncio.sleep(0.01)
                    continue
                if ok:
                    counts["ok"] += 1
                    lat.append(total)
                    if ttfb is not None:
                        ttfbs.append(ttfb)
                else:
                    counts["bad"] += 1

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = loop.time() - t_start
    lat.sort()
    ttfbs.sort()
    return LoadResult(
        tool="python",
        concurrency=concurrency,
        duration=elapsed,
        requests=counts["ok"] + counts["bad"],
        errors_status=counts["bad"],
        errors_socket=counts["socket"],
        p50_ms=percentile(lat, 50) * 1000,
        p90_ms=percentile(lat, 90) * 1000,
        p99_ms=percentile(lat, 99) * 1000,
        max_ms=(lat[-1] * 1000) if lat else 0.0,
        ttfb_p50_ms=percentile(ttfbs, 50) * 1000 if stream else None,
        ttfb_p99_ms=percentile(ttfbs, 99) * 1000 if stream else None,
    )


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run_python(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    concurrency: int,
    duration: float,
    stream: bool,
    timeout_s: float = 30.0,
    api: Api = CHAT,
    tokens: Sequence[str] = (),
) -> LoadResult:
    """`tokens`: API keys spread over the connections (connection k takes token k mod n)."""
    return asyncio.run(
        _closed_loop(url, body, headers, concurrency, duration, stream, timeout_s, api, tokens)
    )


# ---- many concurrent slow streams (memory) ---------------------------------------------------


@dataclass
class SlowStreamsResult:
    streams: int
    ok: int
    errors: int
    seconds: float
    rss_before_mb: float
    rss_peak_mb: float
    rss_after_mb: float
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    total_p50_ms: float
    error_samples: list[str] = field(default_factory=list)

    @property
    def growth_per_stream_kb(self) -> float:
        return (self.rss_peak_mb - self.rss_before_mb) * 1e6 / 1024 / max(1, self.streams)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["growth_per_stream_kb"] = self.growth_per_stream_kb
        return out


async def _slow_streams(
    url: str, body: bytes, headers: Mapping[str, str], n: int, rss: Callable[[], float], timeout_s: float
) -> SlowStreamsResult:
    hdrs = {"content-type": "application/json", **headers}
    before = rss()
    peak = before
    ttfbs: list[float] = []
    totals: list[float] = []
    errors: list[str] = []
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss())
            await asyncio.sleep(0.1)

    async with _session(n, timeout_s) as session:

        async def one() -> None:
            try:
                ok, total, ttfb = await _one(session, url, body, hdrs, True, CHAT)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                errors.append(type(exc).__name__ + ": " + str(exc)[:120])
                return
            if ok:
                totals.append(total)
                if ttfb is not None:
                    ttfbs.append(ttfb)
            else:
                errors.append("incomplete stream or non-200")

        sampler = asyncio.create_task(sample())
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        seconds = time.perf_counter() - t0
        done.set()
        await sampler
    await asyncio.sleep(0.5)
    after = rss()
    ttfbs.sort()
    totals.sort()
    return SlowStreamsResult(
        streams=n,
        ok=len(totals),
        errors=len(errors),
        seconds=seconds,
        rss_before_mb=before,
        rss_peak_mb=peak,
        rss_after_mb=after,
        ttfb_p50_ms=percentile(ttfbs, 50) * 1000,
        ttfb_p99_ms=percentile(ttfbs, 99) * 1000,
        total_p50_ms=percentile(totals, 50) * 1000,
        error_samples=sorted(set(errors))[:5],
    )


def run_slow_streams(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    n: int,
    rss: Callable[[], float],
    timeout_s: float = 60.0,
) -> SlowStreamsResult:
    return asyncio.run(_slow_streams(url, body, headers, n, rss, timeout_s))
