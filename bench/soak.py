"""Soak (issue 20, item 4): one user at the maximum rate on PostgreSQL + Redis for a long time;
reserve latency and requests/s in the last minute must stay within 10 % of the first minute's.

    .venv/bin/python -m bench.soak                           # 10 minutes, autovacuum as the server has it
    .venv/bin/python -m bench.soak --autovacuum off          # the worst case: the growing tables never vacuumed
    .venv/bin/python -m bench.soak --seconds 120             # a shorter soak
    .venv/bin/python -m bench.soak --seconds 6 --window 2    # a smoke
    .venv/bin/python -m bench.soak --seconds 180 --history 150000 --autovacuum off
                                                             # a short soak on a long history

The load is a closed loop of `--concurrency` connections (the most one gateway process serves),
measured in back-to-back windows. Per window: requests/s and p50 from the load generator, and the
reserve's server time — the mean time inside the reserve routine (`pg_stat_user_functions`, so
the queueing on the user's lock and the index reads, without the network or the gateway). "First"
and "last" are the first and last minute (for a soak shorter than five minutes, the first and last
fifth). `--history N` gives the user N closed holds before the soak (inserted and closed in bulk,
as N settled requests leave them, without their ledger rows and records): a short soak then
starts where a long one would have taken the table. Noise: other work on the machine moves every
figure; each window reports it.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from bench.scale import Stack, add_common, loadgen, new_work, say_stderr

TOLERANCE = 0.10
MIN_CALLS = 100  # reservations at each end for their time to be compared


def summarise(windows: list[dict[str, Any]], span: float) -> dict[str, Any]:
    def pick(ws: list[dict[str, Any]]) -> dict[str, float]:
        calls = sum(w["reserve_calls"] for w in ws)
        settles = sum(w["settle_calls"] for w in ws)
        return {
            "rps": statistics.fmean(w["rps"] for w in ws),
            "reserve_calls": calls,
            "reserve_ms": sum(w["reserve_ms_total"] for w in ws) / calls if calls else 0.0,
            "settle_ms": sum(w["settle_ms_total"] for w in ws) / settles if settles else 0.0,
            "p50_ms": statistics.median(w["p50_ms"] for w in ws),
        }

    total = windows[-1]["end_s"]
    edge = span if total >= 5 * span else total / 5
    first = pick([w for w in windows if w["start_s"] < edge] or windows[:1])
    last = pick([w for w in windows if w["end_s"] > total - edge] or windows[-1:])
    flat_rps = last["rps"] >= (1 - TOLERANCE) * first["rps"]
    # A settlement that writes a spare hold (shared.billing.spares) does a reservation's reading
    # of the open holds too: both must stay flat. On spares (a lone stream, c=1) reservations are
    # rare (one after each key-cache refresh): too few to say anything, they are not compared.
    judged = ["settle_ms"] + (
        ["reserve_ms"] if min(first["reserve_calls"], last["reserve_calls"]) >= MIN_CALLS else []
    )
    flat_reserve = all(last[k] <= (1 + TOLERANCE) * first[k] for k in judged)
    return {"edge_s": edge, "first": first, "last": last, "flat_rps": flat_rps, "flat_reserve": flat_reserve}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=600.0, help="length of the soak")
    p.add_argument("--window", type=float, default=10.0, help="seconds per measured window")
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument(
        "--autovacuum", choices=("on", "off"), default="on", help="off: never vacuum the growing tables"
    )
    p.add_argument("--history", type=int, default=0, help="closed holds the user starts with")
    p.add_argument("--out", type=Path, default=None, help="write every window as JSON here")
    add_common(p)
    args = p.parse_args(argv)
    say = say_stderr
    wrk = loadgen(args.no_install, say, args.python_loadgen)
    stack = Stack(new_work("soak"), say, database=args.database, autovacuum=args.autovacuum == "on").start(
        wrk
    )
    windows: list[dict[str, Any]] = []
    try:
        token = stack.user()
        stack.ready(token)
        if args.history:
            say(f"history: {args.history:,} closed holds for the user")
            stack.query(
                "INSERT INTO credit_holds (id, user_id, request_id, amount_pico, status, expires_at, created_at)"
                " SELECT 'hold_history' || g, h.user_id, 'req_history' || g, 5, 'open', now(), now()"
                f" FROM (SELECT user_id FROM credit_holds LIMIT 1) h, generate_series(1, {int(args.history)}) g"
                " RETURNING 1"
            )
            stack.query(
                "UPDATE credit_holds SET status = 'settled', closed_at = now() WHERE id LIKE 'hold_history%' RETURNING 1"
            )
        stack.load(token, args.concurrency, min(2.0, args.window))  # warm
        elapsed = 0.0
        before = stack.counters()
        while elapsed < args.seconds:
            res = stack.load(token, args.concurrency, args.window)
            after = stack.counters()
            d = after.minus(before)
            before = after
            calls = d["calls"].get("reserve", 0)
            others = max(
                0.0,
                d["machine_busy_s"]
                - d["gateway_cpu_s"]
                - d["pg_cpu_s"]
                - d["redis_cpu_s"]
                - d["upstream_cpu_s"],
            )
            w = {
                "start_s": elapsed,
                "end_s": elapsed + d["seconds"],
                "rps": res.rps,
                "p50_ms": res.p50_ms,
                "p99_ms": res.p99_ms,
                "errors": res.errors,
                "reserve_calls": calls,
                "reserve_ms_total": d["call_ms"].get("reserve", 0.0),
                "reserve_ms": d["call_ms"].get("reserve", 0.0) / calls if calls else 0.0,
                "settle_calls": d["calls"].get("settle", 0),
                "settle_ms_total": d["call_ms"].get("settle", 0.0),
                "settle_ms": d["call_ms"].get("settle", 0.0) / max(1, d["calls"].get("settle", 0)),
                "others_cores": others / d["seconds"],
            }
            elapsed = w["end_s"]
            windows.append(w)
            say(
                f"{w['start_s']:6.0f}-{w['end_s']:4.0f} s: {w['rps']:,.0f} req/s, p50 {w['p50_ms']:.2f} ms, reserve "
                f"{w['reserve_ms']:.3f} ms, settle {w['settle_ms']:.3f} ms in the server, errors {w['errors']}, "
                f"other work {w['others_cores']:.2f} cores"
            )
        server_autovacuum = str(stack.query("SHOW autovacuum")[0][0])
        sizes = stack.query(
            "SELECT relname, n_live_tup, n_dead_tup FROM pg_stat_user_tables "
            "WHERE relname IN ('credit_holds', 'credit_transactions', 'request_records') ORDER BY relname"
        )
    finally:
        stack.stop()
    summary = summarise(windows, 60.0)
    summary["tables"] = {str(r[0]): {"live": int(r[1]), "dead": int(r[2])} for r in sizes}
    summary["errors"] = sum(w["errors"] for w in windows)
    summary["autovacuum"] = args.autovacuum
    summary["server_autovacuum"] = server_autovacuum
    f, last = summary["first"], summary["last"]
    print(
        f"soak {windows[-1]['end_s']:.0f} s, autovacuum {args.autovacuum} (the server's: {server_autovacuum}), "
        f"history {args.history:,} closed holds, c={args.concurrency}: first "
        f"{summary['edge_s']:.0f} s {f['rps']:,.0f} req/s, reserve {f['reserve_ms']:.3f} ms, settle "
        f"{f['settle_ms']:.3f} ms, p50 {f['p50_ms']:.2f} ms; last {summary['edge_s']:.0f} s {last['rps']:,.0f} req/s, "
        f"reserve {last['reserve_ms']:.3f} ms, settle {last['settle_ms']:.3f} ms, p50 "
        f"{last['p50_ms']:.2f} ms; req/s {'flat' if summary['flat_rps'] else 'NOT flat'}, reserve and settle "
        f"{'flat' if summary['flat_reserve'] else 'NOT flat'} (within {TOLERANCE:.0%}); errors {summary['errors']}; "
        f"tables {summary['tables']}"
    )
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "windows": windows}, indent=2))
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
