"""Capacity model (issue 20, item 5): what one paid request costs the shared services, measured, and
what that predicts; then four gateway processes on one PostgreSQL and one Redis, measured next to
the prediction.

    .venv/bin/python -m bench.capacity                    # 20 s phases (~2.5 min)
    .venv/bin/python -m bench.capacity --seconds 5        # shorter

Phase 0: one gateway process, one user, a closed loop at `--concurrency`: one user's ceiling.
Phase 1: one gateway process, its load spread over `--users-per-gateway` users: per request,
database transactions and routine calls (and the statements inside them), their server time,
PostgreSQL backend CPU, WAL bytes, Redis commands (as sent, and as the server counts them with the
scripts' own calls) and Redis CPU, and the CPU of the gateway, the fake upstream and the load
generator — the model's inputs.
Phase 2: `--processes` gateways, each with users of its own (instances serving their customers),
all loaded at once, next to what phase 1's cost per request predicts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.scale import Stack, add_common, loadgen, new_work, say_stderr
from shared.billing.ledger_sql import RESERVE, SETTLE

# Published figures the model converts with (check them against your plan before relying on them).
UPSTASH_USD_PER_100K = 0.20  # Upstash Redis pay-as-you-go, per 100,000 commands
# Supavisor (the Supabase pooler) client connections per compute size.
SUPABASE_POOLER_CLIENTS = {
    "Micro": 200,
    "Small": 400,
    "Medium": 600,
    "Large": 800,
    "XL": 1000,
    "2XL": 1500,
    "4XL": 3000,
}
POOL_MAX = 10  # PostgresDatabase's max_size: connections one gateway process opens at most
CLIENT_SENT = ("evalsha", "eval")  # what the gateway sends to Redis (the rest are its scripts' own calls)


def routine_statements() -> dict[str, int]:
    """Statements inside each routine on PostgreSQL, for a key without spend limits whose
    last_used_at is not due (the common case: both are gated off)."""
    gates = {"track_spend": False, "touch_key": False}
    return {
        r.name: len(
            [
                s
                for s in r.statements
                if s.dialect in (None, "postgres") and not (s.when and not gates.get(s.when))
            ]
        )
        for r in (RESERVE, SETTLE)
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    stack: Stack,
    tokens: list[list[str]],
    concurrency: int,
    seconds: float,
    stats_wait: float,
    gateways: list[int],
) -> dict[str, Any]:
    """Loads at once, load i spread over the users of `tokens[i]` on gateway `gateways[i]`; the
    interval's deltas."""
    # An idle PostgreSQL backend reports its statistics (transactions, routine calls) up to 10 s
    # late (PGSTAT_IDLE_INTERVAL): wait that long on both sides of the interval.
    time.sleep(stats_wait)
    before, children = stack.counters(), _children_cpu()
    with ThreadPoolExecutor(len(tokens)) as pool:
        results = list(
            pool.map(lambda i: stack.load(tokens[i], concurrency, seconds, gateways[i]), range(len(tokens)))
        )
    loadgen_s = _children_cpu() - children
    delta = stack.counters().minus(before)  # CPU, WAL, Redis and records: as the load ends
    time.sleep(stats_wait)
    landed = stack.counters().minus(before)  # PostgreSQL's statistics, once reported
    delta.update({k: landed[k] for k in ("xacts", "calls", "call_ms")})
    delta["loadgen_cpu_s"] = loadgen_s
    delta["load_seconds"] = max(r.duration for r in results)
    delta["rps"] = sum(r.rps for r in results)
    delta["errors"] = sum(r.errors for r in results)
    delta["p50_ms"] = [round(r.p50_ms, 2) for r in results]
    return delta


def per_request(d: dict[str, Any]) -> dict[str, Any]:
    n = max(1, d["requests"])
    client = sum(d["redis_cmdstats"].get(c, 0) for c in CLIENT_SENT)
    return {
        "requests": d["requests"],
        "xacts": d["xacts"] / n,
        "routine_calls": {k: v / n for k, v in d["calls"].items()},
        "routine_server_ms": {k: d["call_ms"][k] / max(1, v) for k, v in d["calls"].items()},
        "pg_cpu_ms": 1000 * d["pg_cpu_s"] / n,
        "wal_bytes": d["wal_bytes"] / n,
        "redis_sent": client / n,
        "redis_server_commands": d["redis_commands"] / n,
        "redis_cpu_ms": 1000 * d["redis_cpu_s"] / n,
        "gateway_cpu_ms": 1000 * d["gateway_cpu_s"] / n,
        "upstream_cpu_ms": 1000 * d["upstream_cpu_s"] / n,
        "loadgen_cpu_ms": 1000 * d["loadgen_cpu_s"] / n,
    }


def model(one: dict[str, Any]) -> dict[str, Any]:
    sent = one["redis_sent"]
    return {
        "rps_per_pg_core": 1000 / one["pg_cpu_ms"] if one["pg_cpu_ms"] else None,
        "rps_per_redis": 1000 / one["redis_cpu_ms"] if one["redis_cpu_ms"] else None,
        "upstash_commands_per_million": sent * 1e6,
        "upstash_usd_per_million": sent * 1e6 / 100_000 * UPSTASH_USD_PER_100K,
        "gateway_rps_per_core": 1000 / one["gateway_cpu_ms"] if one["gateway_cpu_ms"] else None,
        "instances_per_supabase_pooler": {k: v // POOL_MAX for k, v in SUPABASE_POOLER_CLIENTS.items()},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    say = say_stderr
    wrk = loadgen(args.no_install, say, args.python_loadgen)
    n = args.processes
    stack = Stack(new_work("capacity"), say, database=args.database, processes=n).start(wrk)
    c, secs, wait = args.concurrency, args.seconds, args.stats_wait
    per = args.users_per_gateway
    try:
        tokens = stack.users(n * per)
        groups = [tokens[i * per : (i + 1) * per] for i in range(n)]
        stack.ready(tokens[0])  # every gateway serves every user
        stack.load(groups[0], c, min(2.0, secs / 2))  # warm
        say(f"phase 0: one gateway, one user, c={c}, {secs:g} s (one user's ceiling)")
        alone = measure(stack, [tokens[:1]], c, secs, wait, [0])
        say(f"phase 1: one gateway, {per} users, c={c}, {secs:g} s (the cost per request)")
        one = measure(stack, groups[:1], c, secs, wait, [0])
        say(f"phase 2: {n} gateways, {per} users each, c={c} each, {secs:g} s")
        many = measure(stack, groups, c, secs, wait, list(range(n)))
    finally:
        stack.stop()
    cost = per_request(one)
    cores = os.cpu_count() or 1
    parts = ("gateway_cpu_s", "pg_cpu_s", "redis_cpu_s", "upstream_cpu_s", "loadgen_cpu_s")
    ours_cores = sum(many[k] for k in parts) / many["seconds"]
    others_cores = max(0.0, many["machine_busy_s"] / many["seconds"] - ours_cores)
    cpu_per_request_ms = sum(cost[k.replace("_s", "_ms")] for k in parts)
    # Two predictions for phase 2 from phase 1's cost per request. On this machine every process
    # shares the same cores with other work: the spare cores (all of them minus what other work
    # used meanwhile) are one bound; the CPU our processes actually got is the other, the check
    # that a request costs as much with N instances on the shared services as with one.
    predicted_spare = (cores - others_cores) * 1000 / cpu_per_request_ms
    predicted_share = ours_cores * 1000 / cpu_per_request_ms
    return {
        "command": "python -m bench.capacity "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "machine_cores": cores,
        "routine_statements": routine_statements(),
        "user_ceiling": {
            "rps": alone["rps"],
            "errors": alone["errors"],
            "settle_server_ms": per_request(alone)["routine_server_ms"].get("settle"),
            "reserve_server_ms": per_request(alone)["routine_server_ms"].get("reserve"),
        },
        "one_process": {"users": per, "rps": one["rps"], "errors": one["errors"], "per_request": cost},
        "model": model(cost),
        "four_process": {
            "processes": n,
            "rps": many["rps"],
            "errors": many["errors"],
            "per_request": per_request(many),
            "cpu_per_request_ms": cpu_per_request_ms,
            "others_cores": others_cores,
            "predicted_rps": predicted_spare,
            "measured_over_predicted": many["rps"] / predicted_spare if predicted_spare else None,
            "ours_cores": ours_cores,
            "predicted_rps_from_share": predicted_share,
            "measured_over_share": many["rps"] / predicted_share if predicted_share else None,
            "quiet_machine_rps": cores * 1000 / cpu_per_request_ms,
        },
    }


def render(r: dict[str, Any]) -> str:
    u, o = r["user_ceiling"], r["one_process"]
    c, m, f = o["per_request"], r["model"], r["four_process"]
    lines = [
        f"one user on one gateway: {u['rps']:,.0f} req/s (settle {u['settle_server_ms']:.3f} ms in the server, "
        f"reserve {u['reserve_server_ms']:.3f} ms: one user's settlements take turns on the user's row across "
        "each durable commit)",
        f"one gateway, {o['users']} users: {o['rps']:,.0f} req/s, errors {o['errors']}",
        f"per paid request: {c['xacts']:.2f} transactions, routine calls "
        f"{ {k: round(v, 3) for k, v in c['routine_calls'].items()} } (statements inside: {r['routine_statements']}), "
        f"server time per call ms { {k: round(v, 3) for k, v in c['routine_server_ms'].items()} }",
        f"  PostgreSQL backend CPU {c['pg_cpu_ms']:.3f} ms, WAL {c['wal_bytes']:,.0f} bytes (cluster-wide: other work adds)",
        f"  Redis: {c['redis_sent']:.2f} commands sent ({c['redis_server_commands']:.2f} counted by the server, "
        f"scripts' calls included), CPU {c['redis_cpu_ms']:.3f} ms",
        f"  gateway CPU {c['gateway_cpu_ms']:.3f} ms, fake upstream {c['upstream_cpu_ms']:.3f} ms, load generator "
        f"{c['loadgen_cpu_ms']:.3f} ms",
        f"model: {m['rps_per_pg_core']:,.0f} req/s per PostgreSQL core, {m['rps_per_redis']:,.0f} req/s per Redis, "
        f"{m['gateway_rps_per_core']:,.0f} req/s per gateway core; Upstash {m['upstash_commands_per_million']:,.0f} "
        f"commands per million requests (${m['upstash_usd_per_million']:,.2f}); gateway instances per Supabase "
        f"pooler (pool of {POOL_MAX} each): {m['instances_per_supabase_pooler']}",
        f"{f['processes']} gateways: measured {f['rps']:,.0f} req/s (errors {f['errors']}); "
        f"{f['cpu_per_request_ms']:.3f} ms of CPU per request in all processes",
        f"  predicted from the spare cores ({r['machine_cores']} - {f['others_cores']:.2f} used by other work): "
        f"{f['predicted_rps']:,.0f} req/s, measured/predicted {f['measured_over_predicted']:.2f}",
        f"  predicted from the CPU our processes got ({f['ours_cores']:.2f} cores): {f['predicted_rps_from_share']:,.0f} "
        f"req/s, measured/predicted {f['measured_over_share']:.2f}",
        f"  on a quiet {r['machine_cores']}-core machine the model predicts {f['quiet_machine_rps']:,.0f} req/s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="seconds per phase")
    p.add_argument("--concurrency", type=int, default=10, help="connections per gateway process")
    p.add_argument("--processes", type=int, default=4, help="gateway processes in phase 2")
    p.add_argument(
        "--users-per-gateway",
        type=int,
        default=8,
        help="users each gateway's load spreads over (one user's settlements take turns on its row)",
    )
    p.add_argument(
        "--stats-wait",
        type=float,
        default=11.0,
        help="seconds to let PostgreSQL's statistics land (smoke: less)",
    )
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    add_common(p)
    args = p.parse_args(argv)
    result = run(args)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    print(render(result))
    errors = sum(result[k]["errors"] for k in ("user_ceiling", "one_process", "four_process"))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
