"""Cold start per function (issue 16): import each Lambda function module in a fresh interpreter,
as a new execution environment does, and report the import time and the peak RSS.

    .venv/bin/python -m bench.cold_start              # 5 fresh processes per function, medians
    .venv/bin/python -m bench.cold_start --runs 9 --out bench/results/cold-start.md
    # Lambda artifacts (`python3 infra/lambda/build.py DIR`) side by side, on the Lambda Python:
    .venv/bin/python -m bench.cold_start --python python3.12 --artifact old=/tmp/a --artifact new=/tmp/b

The figure is the module import (what Lambda's init phase runs before the first event), not the
first request (which also builds the runtime: the catalog, the database pool). RSS is the
process's peak (`ru_maxrss`), interpreter included; `python -c pass` is shown as the floor (Linux
carries the launching process's own peak across the exec, so run the bench on its own, not from a
large process such as a test session). The
CPU time of the import is shown beside the wall time: on a shared machine, waiting for a core
inflates the wall time, not the CPU time.

Without `--artifact` the modules come from this checkout on this interpreter (the `.pyc` cache of
the virtual environment warm). An artifact is imported as Lambda imports it: from its directory,
nothing else on the path, nothing written (`/var/task` is read-only, so a module without a usable
`.pyc` is compiled from source at every cold start). Targets are measured in turn for each
function, so that the machine's load drifts over all of them alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, resource, sys, time
t0, c0 = time.perf_counter(), time.process_time()
if sys.argv[1] != "-":
    module = __import__("functions." + sys.argv[1], fromlist=["handler"])
elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"ms": elapsed * 1000, "cpu_ms": cpu * 1000, "rss_mb": rss}))
"""


@dataclass(frozen=True)
class Target:
    name: str
    python: str
    directory: Path
    artifact: bool

    def command(self, function: str) -> list[str]:
        args = [self.python, "-X", "frozen_modules=on"]
        if self.artifact:
            # As on Lambda: the artifact's root is the path, and nothing is written beside it
            # (-B: -I ignores PYTHONDONTWRITEBYTECODE with every other PYTHON* variable).
            args += ["-I", "-B"]
            probe = f"import sys; sys.path.insert(0, {str(self.directory)!r})\n{PROBE}"
        else:
            probe = PROBE
        return [*args, "-c", probe, function]


def function_names(root: Path = ROOT) -> list[str]:
    """functions/*.py modules that deploy as a Lambda function (they define `handler` or a job)."""
    names = []
    for path in sorted((root / "functions").glob("*.py")):
        text = path.read_text()
        if not path.stem.startswith("_") and ("\nhandler = " in text or "def reap_holds" in text):
            names.append(path.stem)
    return names


def measure_once(target: Target, name: str) -> tuple[float, float, float]:
    out = subprocess.run(
        target.command(name), cwd=target.directory, capture_output=True, text=True, check=True
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    return figures["ms"], figures["cpu_ms"], figures["rss_mb"]


def measure(targets: list[Target], name: str, runs: int) -> list[tuple[float, float, float]]:
    """Median (wall ms, CPU ms, MB) per target; the targets alternate run by run."""
    samples: list[list[tuple[float, float, float]]] = [[] for _ in targets]
    for _ in range(runs):
        for i, target in enumerate(targets):
            samples[i].append(measure_once(target, name))
    return [tuple(statistics.median(s[k] for s in got) for k in range(3)) for got in samples]  # type: ignore[misc]


def targets_of(args: argparse.Namespace) -> list[Target]:
    if not args.artifact:
        return [Target("checkout", args.python, ROOT, artifact=False)]
    out = []
    for spec in args.artifact:
        name, _, directory = spec.rpartition("=")
        path = Path(directory).resolve()
        if not (path / "functions").is_dir():
            raise SystemExit(f"{path}: not a Lambda artifact (no functions/ in it)")
        out.append(Target(name or path.name, args.python, path, artifact=True))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--python", default=sys.executable, help="the interpreter (default: this one)")
    parser.add_argument(
        "--artifact",
        action="append",
        metavar="[NAME=]DIR",
        help="a Lambda artifact directory (infra/lambda/build.py); repeat to compare",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the table (Markdown) here")
    args = parser.parse_args(argv)
    targets = targets_of(args)
    heads = " | ".join(
        f"{t.name}: import (ms) | {t.name}: import CPU (ms) | {t.name}: peak RSS (MB)" for t in targets
    )
    rows = [f"| function (medians) | {heads} |", "|---|" + "---:|---:|---:|" * len(targets)]

    def row(label: str, figures: list[tuple[float, float, float]]) -> str:
        cells = " | ".join(f"{ms:.0f} | {cpu:.0f} | {rss:.0f}" for ms, cpu, rss in figures)
        return f"| {label} | {cells} |"

    rows.append(row("(interpreter only)", measure(targets, "-", args.runs)))
    for name in function_names(targets[0].directory):
        rows.append(row(f"`functions/{name}.py`", measure(targets, name, args.runs)))
        print(rows[-1], flush=True)
    table = "\n".join(rows)
    print(table)
    if args.out:
        command = " ".join(["python -m bench.cold_start", *(argv if argv is not None else sys.argv[1:])])
        args.out.write_text(f"# Cold start per function\n\n`{command}`\n\n{table}\n")


if __name__ == "__main__":
    main()
