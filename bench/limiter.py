"""`python -m bench.limiter`: what the rate limiter adds to one request, on memory and on Redis.

Issue 4 asks for the limiter's added latency per request. This drives the limiter's own code
(`shared.limits.limiter.Limiter` over the store `open_hot_store` builds from the settings: memory,
or Redis behind the fallback wrapper, exactly as the gateway does) with the calls one inference
request makes:

- `check_ip`  — layer 1, before authentication: one atomic check (2 rules);
- `admit`     — layer 2: one atomic check of 6 rules (requests and tokens per minute and per day,
                the plan's and the key's) and 2 concurrency slots;
- `finish`    — after the answer: the token correction (4 rules, forced) and the slot release;
- `total`     — the three in a row: the limiter's whole share of one request.

Every call is timed with `perf_counter_ns` after a warm-up (script loaded, pool connections open),
at closed-loop concurrency 1 (the floor) and 10 (tasks sharing one event loop and one connection
pool, as a busy gateway does), each point twice: every figure is `mean (run 1 / run 2; ±half the
spread)`. `redis PING` is the bare round trip through the same redis-py pool: what Redis costs
before any limiter logic. The limits are set so high that nothing is ever refused (a refusal is
cheaper, not dearer). Redis keys live in logical DB 12 under a prefix of this run and are deleted
at the end.

    .venv/bin/python -m bench.limiter                      # ~1 minute: memory + redis, c=1,10, 2 runs
    .venv/bin/python -m bench.limiter -n 2000 --runs 1     # quick look
    .venv/bin/python -m bench.limiter --backends memory,redis,upstash-bridge
    .venv/bin/python -m bench.limiter --out-dir bench/results   # also write <date>-limiter.md/.json

`upstash-bridge` runs the Upstash backend through the test bridge to the local Redis
(tests/fakes/upstash_bridge.py): it measures the client and protocol overhead only, not Upstash's
network latency, which dominates in production.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.accounts.keys import KeyRecord, PlanLimits  # noqa: E402
from shared.config import LimitSettings  # noqa: E402
from shared.hot import HotStore, MemoryHot, open_hot_store  # noqa: E402
from shared.limits.limiter import Limiter  # noqa: E402

DEFAULT_REDIS = "redis://127.0.0.1:6379/12"
OPS = ("check_ip", "admit", "finish", "total")
BIG = 10**12  # limits nothing reaches: every call is an allowed one


def key_record(prefix: str) -> KeyRecord:
    """A key with its own limits under a plan's: 6 rules and 2 slots per admission."""
    return KeyRecord(
        key_id=f"{prefix}key",
        user_id=f"{prefix}user",
        scopes=frozenset({"inference"}),
        rate_limits={"requests_per_minute": BIG, "tokens_per_minute": BIG, "concurrency": 10**6},
        plan=PlanLimits(
            requests_per_minute=BIG,
            requests_per_day=BIG,
            tokens_per_minute=BIG,
            tokens_per_day=BIG,
            concurrency=10**6,
        ),
    )


def percentile(sorted_us: list[float], q: float) -> float:
    if not sorted_us:
        return float("nan")
    i = min(len(sorted_us) - 1, max(0, round(q * (len(sorted_us) - 1))))
    return sorted_us[i]


def summarize(samples: dict[str, list[float]], wall: float, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"requests_per_s": n / wall if wall else 0.0}
    for op, values in samples.items():
        s = sorted(values)
        out[op] = {"p50": percentile(s, 0.50), "p99": percentile(s, 0.99), "mean": statistics.fmean(s)}
    return out


async def run_point(hot: HotStore, prefix: str, n: int, concurrency: int, warmup: int) -> dict[str, Any]:
    limiter = Limiter(hot, LimitSettings(ip_rpm=BIG, ip_auth_failures=BIG))
    key = key_record(prefix)
    samples: dict[str, list[float]] = {op: [] for op in OPS}

    async def one(i: int, record: bool) -> None:
        ip = f"{prefix}10.0.{i % 250}.{i % 7}"
        t0 = time.perf_counter_ns()
        await limiter.check_ip(ip)
        t1 = time.perf_counter_ns()
        admission = await limiter.admit(key, f"req_{i}", 120)
        t2 = time.perf_counter_ns()
        await limiter.finish(admission, 80)
        t3 = time.perf_counter_ns()
        if record:
            samples["check_ip"].append((t1 - t0) / 1000)
            samples["admit"].append((t2 - t1) / 1000)
            samples["finish"].append((t3 - t2) / 1000)
            samples["total"].append((t3 - t0) / 1000)

    async def worker(start: int, count: int, record: bool) -> None:
        for i in range(start, start + count):
            await one(i, record)

    async def loop(count: int, record: bool) -> float:
        per = count // concurrency
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w * per, per, record) for w in range(concurrency)))
        return time.perf_counter() - t0

    await loop(max(warmup, concurrency), record=False)
    wall = await loop(n, record=True)
    if getattr(hot, "degraded", False):
        raise RuntimeError(f"{hot.name} fell back to memory during the run: the figures are not Redis's")
    return summarize(samples, wall, len(samples["total"]))


async def redis_ping(url: str, n: int) -> dict[str, float]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, socket_timeout=1.0)
    try:
        for _ in range(200):
            await client.ping()
        values = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            await client.ping()
            values.append((time.perf_counter_ns() - t0) / 1000)
    finally:
        await client.aclose()
    s = sorted(values)
    return {"p50": percentile(s, 0.5), "p99": percentile(s, 0.99), "mean": statistics.fmean(s)}


def cleanup_redis(url: str, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
        return len(keys)
    finally:
        client.close()


class Backend:
    def __init__(self, name: str, redis_url: str) -> None:
        self.name = name
        self.redis_url = redis_url
        self.bridge: Any = None

    def open(self) -> HotStore:
        if self.name == "memory":
            return MemoryHot()
        if self.name == "redis":
            return open_hot_store(self.redis_url)  # FallbackHot(RedisHot): the production wrapper
        if self.name == "upstash-bridge":
            if self.bridge is None:
                from tests.fakes.upstash_bridge import UpstashBridge

                self.bridge = UpstashBridge(self.redis_url, token="bench-bridge-token").start()
            return open_hot_store(None, self.bridge.url, self.bridge.token)
        raise SystemExit(f"unknown backend {self.name!r} (memory, redis, upstash-bridge)")

    def close(self) -> None:
        if self.bridge is not None:
            self.bridge.stop()
            self.bridge = None


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"bench:{uuid.uuid4().hex[:10]}:"
    results: dict[str, Any] = {"points": {}}
    backends = [Backend(name, args.redis_url) for name in args.backends]
    try:
        for backend in backends:
            for concurrency in args.concurrency:
                runs, errors = [], []
                for run in range(args.runs):
                    hot = backend.open()
                    try:
                        point = await run_point(hot, f"{prefix}{run}:", args.n, concurrency, args.warmup)
                    except RuntimeError as exc:
                        errors.append(str(exc))
                        print(
                            f"  {backend.name:>14} c={concurrency:<3} run {run + 1}: {exc}", file=sys.stderr
                        )
                        continue
                    finally:
                        await hot.close()
                    runs.append(point)
                    print(
                        f"  {backend.name:>14} c={concurrency:<3} run {run + 1}: total p50 "
                        f"{point['total']['p50']:.0f} µs, p99 {point['total']['p99']:.0f} µs",
                        file=sys.stderr,
                    )
                results["points"][f"{backend.name}/c{concurrency}"] = {
                    "backend": backend.name,
                    "concurrency": concurrency,
                    "runs": runs,
                    "errors": errors,
                }
        if any(b.name != "memory" for b in backends):
            results["redis_ping"] = [await redis_ping(args.redis_url, args.n) for _ in range(args.runs)]
    finally:
        for backend in backends:
            backend.close()
        if any(b.name != "memory" for b in backends):
            results["deleted_keys"] = cleanup_redis(args.redis_url, prefix)
    return results


def fmt(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:,.0f}"
    half = (max(values) - min(values)) / 2
    return f"{mean:,.0f} ({' / '.join(f'{v:,.0f}' for v in values)}; ±{half:,.0f})"


def render(results: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# Limiter latency (issue 4)",
        "",
        f"{meta['started']} · {meta['machine']} · Gatewayz {meta['git']} · N={meta['n']} per point, "
        f"{meta['runs']} run(s) · `{meta['command']}`",
        "",
        "Microseconds per call of the limiter, as one inference request makes them (`total` = "
        "check_ip + admit + finish). Figures: mean (run 1 / run 2; ±half the spread).",
        "",
        "| backend | c | total p50 | total p99 | check_ip p50 | check_ip p99 | admit p50 | admit p99 "
        "| finish p50 | finish p99 | requests/s through the limiter |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for point in results["points"].values():
        runs = point["runs"]
        if not runs:
            lines.append(f"| {point['backend']} | {point['concurrency']} | *failed*: {point['errors'][0]} |")
            continue
        cells = []
        for op in ("total", "check_ip", "admit", "finish"):
            for q in ("p50", "p99"):
                cells.append(fmt([r[op][q] for r in runs]))
        rps = fmt([r["requests_per_s"] for r in runs])
        lines.append(f"| {point['backend']} | {point['concurrency']} | {' | '.join(cells)} | {rps} |")
    if "redis_ping" in results:
        pings = results["redis_ping"]
        lines += [
            "",
            f"Bare Redis round trip (redis-py `PING`, c=1): p50 {fmt([p['p50'] for p in pings])} µs, "
            f"p99 {fmt([p['p99'] for p in pings])} µs. On Redis one request here makes 4 limiter "
            "round trips: check_ip 1, admit 1, finish 2 (the token correction, as usage differs from "
            "the estimate, and the slot release); the velocity flag and the key-cache epoch add one "
            "read per second per instance.",
        ]
    lines += [
        "",
        "The machine is shared and noisy (2 cores): compare backends within one run, and read the "
        "spread before believing a difference.",
        "",
    ]
    return "\n".join(lines)


def git_sha() -> str:
    import subprocess

    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "shared"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "") if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.limiter", description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=5000, help="timed requests per point and run (default 5000)")
    p.add_argument("--warmup", type=int, default=300, help="untimed requests first (default 300)")
    p.add_argument("--runs", type=int, default=2, help="runs per point (default 2)")
    p.add_argument("--concurrency", default="1,10", help="closed-loop concurrency levels (default 1,10)")
    p.add_argument("--backends", default="memory,redis", help="memory,redis[,upstash-bridge]")
    p.add_argument("--redis-url", default=DEFAULT_REDIS, help=f"default {DEFAULT_REDIS}")
    p.add_argument("--out-dir", type=Path, help="also write <UTC date>-limiter.md and .json there")
    args = p.parse_args(argv)
    args.concurrency = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    args.backends = [b.strip() for b in str(args.backends).split(",") if b.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    try:
        import uvloop

        runner: Callable[[Awaitable[Any]], Any] = uvloop.run  # the gateway's loop
    except ImportError:  # pragma: no cover - Windows
        runner = asyncio.run
    results = runner(measure(args))
    meta = {
        "started": f"{started:%Y-%m-%d %H:%M:%SZ}",
        "machine": f"{os.cpu_count()} cores {platform.machine()}, Python {platform.python_version()}",
        "git": git_sha(),
        "n": args.n,
        "runs": args.runs,
        "command": "python -m bench.limiter " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    text = render(results, meta)
    print(text)
    if args.out_dir:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        base = args.out_dir / f"{started:%Y-%m-%d}-limiter"
        base.with_suffix(".md").write_text(text)
        base.with_suffix(".json").write_text(json.dumps({"meta": meta, **results}, indent=2))
        print(f"wrote {base}.md and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
