"""`python -m bench.breaker`: what the shared circuit breakers add to one request (issue 15).

Issue 15 is done when its closing note shows the breaker's added cost per request, at most 50 µs.
This drives `shared.routing.health.HealthBook` — the one breaker implementation, over the store
`open_hot_store` builds (memory, or Redis behind the fallback wrapper, as the gateway does) — with
the calls one chat request makes on a model with two offers:

- `refresh`  — before planning: a clock check; once a second (`GATEWAYZ_HEALTH_REFRESH`) it is the
               store round trip that sends this process's events and reads every breaker;
- `plan`     — the router's reads while ordering two offers: `is_saturated` and `state` each;
- `call`     — the failover walk's `state` read before the call and `success` after it;
- `tokens`   — the throughput sample after the answer;
- `total`    — the four in a row: the breakers' whole share of one request.

Requests are paced at `--rate` per second (a closed loop at full speed would put one store round
trip among millions of requests and hide it), so the mean of `total` includes the once-a-second
round trip amortised over that rate; p50 is the request that does not pay it, max the one that
does. Every point runs twice: `mean (run 1 / run 2)`. The machine is shared and noisy.

    .venv/bin/python -m bench.breaker                      # memory + redis, 1000 req/s, 2 × 5 s
    .venv/bin/python -m bench.breaker --rate 200 --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.hot import HotStore, MemoryHot, open_hot_store  # noqa: E402
from shared.routing.health import HealthBook, breaker_config  # noqa: E402

OPS = ("refresh", "plan", "call", "tokens", "total")
OFFERS = (("openai", "openai/gpt-4o"), ("openrouter", "openai/gpt-4o"))


async def run_point(hot: HotStore, rate: int, seconds: float) -> dict[str, Any]:
    cfg, refresh_s = breaker_config({})
    health = HealthBook(hot, cfg, refresh_s)
    samples: dict[str, list[float]] = {op: [] for op in OPS}
    interval = 1.0 / rate
    n = int(rate * seconds)
    await health.refresh(force=True)  # connections open, script loaded
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter_ns()
        await health.refresh()
        t1 = time.perf_counter_ns()
        for provider, model in OFFERS:
            health.is_saturated(provider, model)
            health.state(provider, model)
        t2 = time.perf_counter_ns()
        provider, model = OFFERS[i % 2]
        health.state(provider, model)
        await health.success(provider, model, 12.5)
        t3 = time.perf_counter_ns()
        health.tokens(provider, model, 20, 0.25)
        t4 = time.perf_counter_ns()
        for op, a, b in (("refresh", t0, t1), ("plan", t1, t2), ("call", t2, t3), ("tokens", t3, t4),
                         ("total", t0, t4)):  # fmt: skip
            samples[op].append((b - a) / 1000)
        # Pace the loop: the next request starts on its slot (sleeping off the rest of this one).
        delay = start + (i + 1) * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    if getattr(hot, "degraded", False):
        raise RuntimeError("the store fell back to memory during the run: the figures are not Redis's")
    out: dict[str, Any] = {}
    for op, values in samples.items():
        s = sorted(values)
        out[op] = {"p50": s[len(s) // 2], "mean": statistics.fmean(s), "max": s[-1]}
    return out


async def main(args: argparse.Namespace) -> None:
    print(f"breaker cost per request, {args.rate} req/s for {args.seconds} s, {args.runs} runs (µs)")
    print(f"{'store':8} {'op':8} {'p50':>22} {'mean':>22} {'max':>24}")
    for backend in args.backends:
        runs = []
        for _ in range(args.runs):
            if backend == "memory":
                hot: HotStore = MemoryHot()
            else:
                hot = open_hot_store(args.redis_url)
            try:
                runs.append(await run_point(hot, args.rate, args.seconds))
            finally:
                await hot.close()
        for op in OPS:
            cells = []
            for stat in ("p50", "mean", "max"):
                values = [r[op][stat] for r in runs]
                cells.append(f"{statistics.fmean(values):.1f} ({' / '.join(f'{v:.1f}' for v in values)})")
            print(f"{backend:8} {op:8} {cells[0]:>22} {cells[1]:>22} {cells[2]:>24}")


def cli(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.breaker", description=__doc__.split("\n")[0])
    p.add_argument("--backends", type=lambda s: s.split(","), default=["memory", "redis"])
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    p.add_argument("--rate", type=int, default=1000, help="requests per second")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--runs", type=int, default=2)
    asyncio.run(main(p.parse_args(argv)))


if __name__ == "__main__":
    cli()
