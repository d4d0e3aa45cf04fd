"""Reserve cost stays flat with history (issue 20, item 1): one user's paid-request p50 at c=1
after `--history` requests of their own history, next to a fresh user's, with autovacuum off on
the growing tables (the worst case: nothing cleans up the history). Must stay within 10 %.

    .venv/bin/python -m bench.history_flat                           # 100,000 requests of history
    .venv/bin/python -m bench.history_flat --history 2000 --seconds 1 --rounds 1   # a smoke

The history is made by the gateway itself (a closed loop at c=10 until the user has that many
request records): every request leaves its closed hold, its ledger row and its record, and with
autovacuum off every closed hold stays a dead entry in the open-holds index the reserve reads.
Then the two users are measured alternately, `--rounds` times each for `--seconds`, on the same
gateway; the figure is the ratio of the medians. The machine is shared: other work moves both
users' figures alike within a round, and each round reports it.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.scale import Stack, add_common, loadgen, new_work, say_stderr

TOLERANCE = 0.10


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.history_flat", description=__doc__.split("\n\n")[0])
    p.add_argument("--history", type=int, default=100_000, help="requests of history for the old user")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement at c=1")
    p.add_argument("--rounds", type=int, default=5)
    add_common(p)
    args = p.parse_args(argv)
    say = say_stderr
    wrk = loadgen(args.no_install, say, args.python_loadgen)
    stack = Stack(new_work("history"), say, database=args.database, autovacuum=False).start(wrk)
    p50: dict[str, list[float]] = {"old": [], "fresh": []}
    errors = 0
    try:
        old = stack.user()
        stack.ready(old)
        started = time.monotonic()
        made = 0
        while made < args.history:
            chunk = max(
                1.0, min(20.0, (args.history - made) / 300)
            )  # ~300 req/s: re-count often near the end
            errors += stack.load(old, 10, chunk).errors
            made = int(stack.query("SELECT COUNT(*) FROM request_records")[0][0])
            say(f"history: {made:,} requests in {time.monotonic() - started:.0f} s")
        fresh = stack.user()  # made after the history, as a new customer would be
        stack.load(fresh, 1, 1.0)  # its first request warms what a first request warms
        for r in range(args.rounds):
            order = ("fresh", "old") if r % 2 == 0 else ("old", "fresh")
            line = []
            for who in order:
                res = stack.load(fresh if who == "fresh" else old, 1, args.seconds)
                errors += res.errors
                p50[who].append(res.p50_ms)
                line.append(f"{who} p50 {res.p50_ms:.3f} ms ({res.rps:,.0f}/s)")
            say(f"round {r + 1}: " + "; ".join(line))
        dead = stack.query("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'credit_holds'")[0][0]
    finally:
        stack.stop()
    old_p50, fresh_p50 = statistics.median(p50["old"]), statistics.median(p50["fresh"])
    ratio = old_p50 / fresh_p50 if fresh_p50 else float("inf")
    print(
        f"history {made:,} requests (autovacuum off; {dead:,} dead holds): p50 at c=1 old user {old_p50:.3f} ms, "
        f"fresh user {fresh_p50:.3f} ms, ratio {ratio:.3f} — {'within' if ratio <= 1 + TOLERANCE else 'NOT within'} "
        f"{TOLERANCE:.0%}; errors {errors}"
    )
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
