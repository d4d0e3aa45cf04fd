"""Cold start per function (issue 16): import each Lambda function module in a fresh interpreter,
as a new execution environment does, and report the import time and the peak RSS.

    .venv/bin/python -m bench.cold_start              # 5 fresh processes per function, medians
    .venv/bin/python -m bench.cold_start --runs 9 --out bench/results/cold-start.md

The figure is the module import (what Lambda's init phase runs before the first event), not the
first request (which also builds the runtime: the catalog, the database pool). RSS is the
process's peak (`ru_maxrss`), interpreter included; `python -c pass` is shown as the floor.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, resource, sys, time
t0 = time.perf_counter()
if sys.argv[1] != "-":
    module = __import__("functions." + sys.argv[1], fromlist=["handler"])
elapsed = time.perf_counter() - t0
print(json.dumps({"ms": elapsed * 1000, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def function_names() -> list[str]:
    """functions/*.py modules that deploy as a Lambda function (they define `handler` or a job)."""
    names = []
    for path in sorted((ROOT / "functions").glob("*.py")):
        text = path.read_text()
        if not path.stem.startswith("_") and ("\nhandler = " in text or "def reap_holds" in text):
            names.append(path.stem)
    return names


def measure(name: str, runs: int) -> tuple[float, float]:
    times, rss = [], []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-X", "frozen_modules=on", "-c", PROBE, name],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        times.append(figures["ms"])
        rss.append(figures["rss_mb"])
    return statistics.median(times), statistics.median(rss)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="also write the table (Markdown) here")
    args = parser.parse_args(argv)
    rows = ["| function | import (ms, median) | peak RSS (MB) |", "|---|---:|---:|"]
    floor_ms, floor_rss = measure("-", args.runs)
    rows.append(f"| (interpreter only) | {floor_ms:.0f} | {floor_rss:.0f} |")
    for name in function_names():
        ms, rss = measure(name, args.runs)
        rows.append(f"| `functions/{name}.py` | {ms:.0f} | {rss:.0f} |")
        print(rows[-1], flush=True)
    table = "\n".join(rows)
    print(table)
    if args.out:
        args.out.write_text(
            f"# Cold start per function\n\n`python -m bench.cold_start --runs {args.runs}`\n\n{table}\n"
        )


if __name__ == "__main__":
    main()
