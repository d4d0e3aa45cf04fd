"""`python -m bench.request_records_index`: what the `request_records (created_at)` index (the usage
rollup's per-day scans and the retention's oldest-first batches, issue 18) costs each settled
request on PostgreSQL: one more index entry per request-record insert.

In a throw-away schema holding `--rows` records, single-row insert transactions (the record as the
settlement writes it) run in alternating blocks without and with the index, so that both see the
same machine noise; `synchronous_commit` is off by default, since the commit's fsync (milliseconds)
would otherwise hide a difference of microseconds. The machine is shared and noisy: compare the two
lines of one run.

    .venv/bin/python -m bench.request_records_index
    .venv/bin/python -m bench.request_records_index --url postgresql://postgres@127.0.0.1:5432/test --sync
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime

import psycopg

from shared.store.migrate import for_dialect, read_migrations

INSERT = """
INSERT INTO request_records (request_id, user_id, key_id, model, provider, endpoint, status, http_status,
    input_tokens, output_tokens, cost_pico, latency_ms, created_at)
VALUES (%s, 'usr_bench', NULL, 'openai/gpt-4o', 'openai', 'chat', 'ok', 200, 10, 10, 5, 100, %s)
"""
PREFILL = """
INSERT INTO request_records (request_id, user_id, model, endpoint, status, http_status, created_at)
SELECT 'pre' || g, 'usr_bench', 'openai/gpt-4o', 'chat', 'ok', 200, now() - (g || ' seconds')::interval
FROM generate_series(1, %s) g
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("GATEWAYZ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--url", default=default)
    p.add_argument("--rows", type=int, default=200_000, help="records already in the table")
    p.add_argument("--block", type=int, default=1500, help="inserts per block")
    p.add_argument("--rounds", type=int, default=6, help="blocks of each kind")
    p.add_argument("--sync", action="store_true", help="keep synchronous_commit on")
    args = p.parse_args()
    schema = "bench_idx_" + os.urandom(4).hex()
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        try:
            conn.execute(f"SET search_path TO {schema}")
            if not args.sync:
                conn.execute("SET synchronous_commit TO off")
            for _, script in read_migrations():
                conn.execute(for_dialect(script, "postgres"))  # type: ignore[arg-type]
            conn.execute(
                "INSERT INTO users (id, email, plan_id, created_at) VALUES ('usr_bench', 'b@x', 'free', now())"
            )
            conn.execute(PREFILL, (args.rows,))
            conn.execute("ANALYZE request_records")
            times: dict[str, list[float]] = {"without": [], "with": []}
            count = 0
            for _ in range(args.rounds):
                for kind in ("without", "with"):
                    conn.execute("DROP INDEX IF EXISTS request_records_created")
                    if kind == "with":
                        conn.execute("CREATE INDEX request_records_created ON request_records (created_at)")
                    for _ in range(args.block):
                        count += 1
                        start = time.perf_counter()
                        with conn.transaction():
                            conn.execute(INSERT, (f"req_{count}", datetime.now(UTC)))
                        times[kind].append(time.perf_counter() - start)
            for kind, samples in times.items():
                samples.sort()
                print(
                    f"{kind:>7} index: median {statistics.median(samples) * 1e6:7.1f} µs  "
                    f"p90 {samples[int(len(samples) * 0.9)] * 1e6:7.1f} µs  "
                    f"mean {statistics.mean(samples) * 1e6:7.1f} µs  ({len(samples)} inserts)"
                )
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
