"""Profile Gatewayz under load: `python -m bench.profile [--modes chat,stream] [--concurrency 10]`.

Starts the fake upstream and a Gatewayz target (default `gatewayz`, i.e. `gatewayz serve` on the
embedded default), drives it with wrk (or the Python loop) at a fixed concurrency and samples the
gateway process with py-spy (installed from PyPI into bench/.work/tools-venv). Writes the
collapsed stacks and a speedscope file under bench/.work/ and a markdown summary — top frames by
own time, by inclusive time, and time per package — to bench/results/<UTC date>-profile.md.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import load
from bench.procs import free_port, raise_nofile, spawn, wait_for_line
from bench.report import table
from bench.run import RESULTS, git_sha
from bench.targets import ROOT, TARGETS, WORK, Ctx, chat_body, detect_features, start

TOOLS_VENV = WORK / "tools-venv"
PY_SPY_VERSION = "0.4.3"

# Which package a frame belongs to, by its (py-spy shortened) file path; first match wins.
PACKAGES = [
    ("gatewayz shared/", ("shared/",)),
    ("gatewayz functions/", ("functions/",)),
    ("fastapi", ("fastapi/",)),
    ("starlette", ("starlette/",)),
    ("uvicorn", ("uvicorn/",)),
    ("aiohttp (+ multidict, yarl)", ("aiohttp/", "multidict/", "yarl/")),
    ("anyio", ("anyio/",)),
    ("pydantic", ("pydantic",)),
    ("granian", ("granian/",)),
    ("asyncio + event loop (uvloop, C)", ("asyncio/",)),
]


def ensure_py_spy(install: bool) -> Path:
    exe = TOOLS_VENV / "bin" / "py-spy"
    if exe.exists():
        return exe
    if not install:
        raise SystemExit(f"py-spy is missing in {TOOLS_VENV} (--no-install)")
    subprocess.run([sys.executable, "-m", "venv", str(TOOLS_VENV)], check=True, timeout=300)
    subprocess.run(
        [
            str(TOOLS_VENV / "bin" / "pip"),
            "install",
            "-q",
            "--disable-pip-version-check",
            f"py-spy=={PY_SPY_VERSION}",
        ],
        check=True,
        timeout=600,
    )
    return exe


def package_of(frame: str) -> str:
    # py-spy raw frames look like `function (path/to/file.py:123)`, paths shortened to the package
    path = frame[frame.rfind("(") + 1 :] if "(" in frame else frame
    for name, prefixes in PACKAGES:
        if any(path.startswith(p) or "/" + p in path for p in prefixes):
            return name
    return "other (stdlib, orjson, ...)"


def function_of(frame: str) -> str:
    """The frame without its line number: `fn (file.py:12)` → `fn (file.py)`."""
    head, sep, _ = frame.rpartition(":")
    return head + ")" if sep and frame.endswith(")") else frame


def short(frame: str) -> str:
    fn, _, loc = frame.partition(" (")
    loc = loc.rstrip(")")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in loc:
            loc = loc.split(marker, 1)[1]
    return f"`{fn}` ({loc})"


def analyse(raw: Path, top: int = 25) -> tuple[int, list[str]]:
    """Collapsed stacks → markdown tables: packages, own time (by function and by line), inclusive."""
    own_line: collections.Counter[str] = collections.Counter()
    own_fn: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    pkg_own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if "(" in f]
        if not frames:
            continue
        total += n
        leaf = frames[-1]
        own_line[leaf] += n
        own_fn[function_of(leaf)] += n
        pkg_own[package_of(leaf)] += n
        for f in {function_of(f) for f in frames}:
            incl[f] += n
    out: list[str] = []

    def pct(n: int) -> str:
        return f"{100.0 * n / total:.1f} %" if total else "–"

    out.append(f"{total:,} samples.")
    out.append("")
    out.append(
        "Own time by package (the file of the innermost Python frame; C code, syscalls included, counts for the Python frame that called it):"
    )
    out.append("")
    out.append(table(["package", "own"], [[k, pct(v)] for k, v in pkg_own.most_common()]))
    out.append("")
    out.append(f"Top {top} functions by own time:")
    out.append("")
    out.append(table(["function", "own"], [[short(k), pct(v)] for k, v in own_fn.most_common(top)]))
    out.append("")
    out.append("Top 12 lines by own time:")
    out.append("")
    out.append(table(["line", "own"], [[short(k), pct(v)] for k, v in own_line.most_common(12)]))
    out.append("")
    inner = [(k, v) for k, v in incl.most_common() if v < 0.99 * total][: top + 10]
    out.append(f"Top {len(inner)} functions by inclusive time (below the event loop itself):")
    out.append("")
    out.append(table(["function", "inclusive"], [[short(k), pct(v)] for k, v in inner]))
    out.append("")
    return total, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    p.add_argument(
        "--target", default="gatewayz", choices=[k for k, t in TARGETS.items() if t.kind == "gatewayz"]
    )
    p.add_argument("--modes", default="chat,stream", help="chat, stream or both (default)")
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--duration", type=float, default=15.0, help="seconds of sampling per mode")
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--no-install", action="store_true")
    p.add_argument("--out", type=Path, help="the markdown summary (default bench/results/<date>-profile.md)")
    args = p.parse_args(argv)

    def say(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)

    py_spy = ensure_py_spy(not args.no_install)
    wrk = load.ensure_wrk(not args.no_install, say)
    raise_nofile(4096)
    started = dt.datetime.now(dt.UTC)
    work = WORK / f"profile-{started:%Y%m%dT%H%M%SZ}"
    work.mkdir(parents=True, exist_ok=True)
    up_port = free_port()
    upstream = spawn(
        "upstream",
        [sys.executable, "-m", "bench.fake_upstream", "--port", str(up_port)],
        {**os.environ, "PYTHONPATH": str(ROOT)},
        work / "upstream.log",
    )
    sections: list[str] = [
        f"# Gatewayz profile — {started:%Y-%m-%d %H:%M:%SZ}",
        "",
        f"Command: `python -m bench.profile {' '.join(argv if argv is not None else sys.argv[1:])}`; "
        f"Gatewayz {git_sha()}; target `{args.target}`; py-spy {PY_SPY_VERSION} at {args.rate} Hz "
        f"(on-CPU samples only); load: {'wrk' if wrk else 'python loop'} at c={args.concurrency}, "
        "zero-delay fake upstream.",
        "",
    ]
    try:
        wait_for_line(upstream, "READY", 15)
        ctx = Ctx(work, up_port, upstream.pid, not args.no_install, say, detect_features())
        run = start(TARGETS[args.target], ctx)
        try:
            load.run_python(run.url(), chat_body(run.spec.model, False), run.headers(), 4, 1.0, False)
            for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
                stream = mode == "stream"
                raw = work / f"{mode}.raw.txt"
                speedscope = work / f"{mode}.speedscope.json"
                load_s = args.duration + 4
                result: list[load.LoadResult] = []

                def drive(
                    stream: bool = stream,
                    load_s: float = load_s,
                    mode: str = mode,
                    result: list[load.LoadResult] = result,
                ) -> None:
                    body = chat_body(run.spec.model, stream)
                    if wrk:
                        f = work / f"{mode}-body.json"
                        f.write_bytes(body)
                        result.append(
                            load.run_wrk(wrk, run.url(), f, run.headers(), args.concurrency, load_s)
                        )
                    else:
                        result.append(
                            load.run_python(run.url(), body, run.headers(), args.concurrency, load_s, stream)
                        )

                t = threading.Thread(target=drive)
                t.start()
                time.sleep(1.5)
                say(f"py-spy record: {mode}, c={args.concurrency}, {args.duration:g} s")
                for fmt, path in (("raw", raw), ("speedscope", speedscope)):
                    subprocess.run(
                        [
                            str(py_spy),
                            "record",
                            "--pid",
                            str(run.pid),
                            "--duration",
                            str(int(args.duration / 2)),
                            "--rate",
                            str(args.rate),
                            "--format",
                            fmt,
                            "--output",
                            str(path),
                        ],
                        check=True,
                        capture_output=True,
                        timeout=args.duration + 60,
                    )
                t.join()
                r = result[0] if result else None
                total, tables = analyse(raw)
                sections.append(f"## {mode} (c={args.concurrency})")
                sections.append("")
                if r is not None:
                    sections.append(
                        f"Under the profiler: {r.rps:,.0f}/s, p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms, "
                        f"errors {r.errors}. Raw stacks: `{raw.relative_to(ROOT)}`; speedscope: "
                        f"`{speedscope.relative_to(ROOT)}`."
                    )
                    sections.append("")
                sections += tables
                say(f"{mode}: {total} samples")
        finally:
            run.stop()
    finally:
        upstream.stop()
    out = args.out or RESULTS / f"{started:%Y-%m-%d}-profile.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(sections) + "\n")
    say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
