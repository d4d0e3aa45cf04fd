"""PostgreSQL + Redis added p50 at c=1 (issue 20, item 3), optionally next to a baseline checkout.

    .venv/bin/python -m bench.pg_added                        # 5 rounds of 5 s
    .venv/bin/python -m bench.pg_added --baseline /tmp/base   # the same, and a gateway run from
                                                              # another checkout's `shared`/`functions`

Every round measures, one after the other at concurrency 1, the fake upstream directly (the floor),
the gateway on the current code and (with `--baseline`) the baseline gateway, all on the same
database, Redis and fake at the same moments; the added p50 of a gateway is its p50 minus the
floor's in the same round, and the figure is the median over the rounds. The machine is shared:
compare the two gateways within one run rather than across runs.

Each measurement also says how long PostgreSQL's WAL flushes took in it (ms per flush, from
pg_stat_wal): the settlement's durable commit waits for one, and on a virtual disk its latency
moves from round to round (an idle disk answers a flush several times slower than a busy one);
the added p50 moves with it.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench import load
from bench.routes import CHAT
from bench.scale import Stack, add_common, loadgen, new_work, say_stderr
from bench.targets import UPSTREAM_KEY


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pg_added", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement")
    p.add_argument(
        "--baseline", type=Path, default=None, help="a checkout root holding shared/ and functions/"
    )
    add_common(p)
    args = p.parse_args(argv)
    say = say_stderr
    wrk = loadgen(args.no_install, say, args.python_loadgen)
    names = ["current"] + (["baseline"] if args.baseline else [])
    code: list[Path | None] = [None] + ([args.baseline] if args.baseline else [])
    stack = Stack(new_work("pg-added"), say, database=args.database, processes=len(code), code=code).start(
        wrk
    )
    added: dict[str, list[float]] = {n: [] for n in names}
    flush_ms: dict[str, list[float]] = {n: [] for n in names}
    floors: list[float] = []
    errors = 0
    try:
        token = stack.user()
        stack.ready(token)
        for i in range(len(code)):
            stack.load(token, 4, 1.0, i)  # warm pools and caches
        direct = f"http://127.0.0.1:{stack.upstream_port}{CHAT.path}"
        body, direct_headers = CHAT.body("gpt-4o", False), CHAT.request_headers(UPSTREAM_KEY)
        for r in range(args.rounds):
            if wrk:
                body_file = stack.work / "direct.json"
                body_file.write_bytes(body)
                floor = load.run_wrk(wrk, direct, body_file, direct_headers, 1, args.seconds)
            else:
                floor = load.run_python(direct, body, direct_headers, 1, args.seconds, False)
            floors.append(floor.p50_ms)
            line = [f"round {r + 1}: floor p50 {floor.p50_ms:.3f} ms"]
            order = range(len(code)) if r % 2 == 0 else reversed(range(len(code)))
            for i in order:
                flushes, ms = stack.wal_flushes()
                res = stack.load(token, 1, args.seconds, i)
                flushes_after, ms_after = stack.wal_flushes()
                flush = (ms_after - ms) / max(1, flushes_after - flushes)
                errors += res.errors
                added[names[i]].append(res.p50_ms - floor.p50_ms)
                flush_ms[names[i]].append(flush)
                line.append(
                    f"{names[i]} +{res.p50_ms - floor.p50_ms:.3f} ms ({res.rps:,.0f}/s, WAL flush {flush:.3f} ms)"
                )
            say("; ".join(line))
    finally:
        stack.stop()
    for name in names:
        values = added[name]
        print(
            f"{name}: added p50 at c=1, median of {len(values)} rounds: +{statistics.median(values):.3f} ms "
            f"(rounds: {', '.join(f'{v:.3f}' for v in values)}); WAL flush median "
            f"{statistics.median(flush_ms[name]):.3f} ms"
        )
    print(f"floor (direct) p50: median {statistics.median(floors):.3f} ms; errors {errors}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
