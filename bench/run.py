"""`python -m bench`: run the targets one after the other against one fake upstream, write the report.

See bench/README.md for the options and the meaning of every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import fake_upstream, load, report
from bench.procs import CpuMeter, Proc, free_port, raise_nofile, rss_mb, spawn, wait_for_line
from bench.routes import ROUTES, levels, point_key, with_dependencies
from bench.targets import (
    LITELLM_VERSION,
    ROOT,
    TARGETS,
    WORK,
    Ctx,
    Running,
    TargetSpec,
    between_runs,
    chat_body,
    detect_features,
    skip_reason,
    start,
)

RESULTS = ROOT / "bench" / "results"
README = ROOT / "bench" / "README.md"
README_START = "<!-- bench-results:start -->"
README_END = "<!-- bench-results:end -->"


@dataclass(frozen=True)
class Point:
    key: str
    kind: str  # "chat" (not streamed, wrk) | "stream" (wrk) | "probe" (Python, TTFB) | "chat-delay"
    concurrency: int
    delay_ms: int = 0
    route: str = "chat"  # a key of routes.ROUTES
    floor: str = ""  # the direct target's point that is this one's floor ("": the same key)
    reference: str = ""  # the same target's point this one is compared with ("": none)

    @property
    def stream(self) -> bool:
        return self.kind in ("stream", "probe")


def plan_points(
    concurrency: list[int], use_wrk: bool, quick: bool, routes: list[str] | None = None
) -> list[Point]:
    """Every route's points, a route's next to its reference's (measured one after the other, so
    that a comparison sees the same machine); the 50 ms point last."""
    kinds = ["chat", *(["stream"] if use_wrk else []), "probe"]
    pts = []
    for kind in kinds:
        for c in concurrency:
            if kind == "stream" and c == 1:
                continue  # wrk's whole-stream latency at c=1 says nothing the probe does not
            for route in ROUTES.values():
                if (
                    (routes is not None and route.key not in routes)
                    or c not in levels(route, concurrency, quick)
                    or (kind != "chat" and not route.api.streams)
                ):
                    continue
                key = point_key(route.key, kind, c)
                floor = point_key(route.floor, kind, c)
                ref = point_key(route.reference, kind, c) if route.reference else ""
                pts.append(Point(key, kind, c, 0, route.key, "" if floor == key else floor, ref))
    if not quick:
        c = max(concurrency)
        pts.append(Point(point_key("chat", "chat-delay", c, 50), "chat-delay", c, 50))
    return pts


# ---- machine and versions --------------------------------------------------------------------


def _cpu_ticks() -> tuple[int, int, int]:
    """(steal, busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    total = sum(parts[:8])  # guest time is already inside user
    return parts[7], total - idle - parts[7], total


class StealMeter:
    """Machine-wide figures over an interval: steal % of all CPU time, and busy CPU in % of one core."""

    def start(self) -> None:
        self.s0, self.b0, self.t0 = _cpu_ticks()
        self.w0 = time.perf_counter()

    def stop(self) -> float:
        return self.read()[0]

    def read(self) -> tuple[float, float]:
        s1, b1, t1 = _cpu_ticks()
        wall = time.perf_counter() - self.w0
        steal = 100.0 * (s1 - self.s0) / (t1 - self.t0) if t1 > self.t0 else 0.0
        busy = 100.0 * (b1 - self.b0) / os.sysconf("SC_CLK_TCK") / wall if wall > 0 else 0.0
        return steal, busy


def machine_busy(seconds: float = 0.5) -> float:
    """CPU in use on the whole machine right now, in % of one core."""
    meter = StealMeter()
    meter.start()
    time.sleep(seconds)
    return meter.read()[1]


QUIET_BUDGET = {"left": 180.0}  # seconds of waiting for a quiet machine, over the whole run


def wait_for_quiet(limit: float, max_wait: float, say: Callable[[str], None]) -> float:
    """Wait (at most max_wait s) until the machine's other work uses less than `limit` % of a core.

    Called between runs, when the target is idle: what is busy then is someone else's work.
    Returns the last reading.
    """
    max_wait = min(max_wait, QUIET_BUDGET["left"])
    if max_wait <= 0:
        return 0.0
    t0 = time.monotonic()
    deadline = t0 + max_wait
    busy = machine_busy()
    if busy <= limit:
        return busy
    say(f"  the machine is busy with other work ({busy:.0f} % of a core); waiting up to {max_wait:g} s")
    while busy > limit and time.monotonic() < deadline:
        time.sleep(1.0)
        busy = machine_busy()
    QUIET_BUDGET["left"] -= time.monotonic() - t0
    return busy


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def git_sha() -> str:
    def git(*args: str) -> str:
        proc = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
        )
        return proc.stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "shared", "functions", "pyproject.toml")
    return sha + ("+dirty" if dirty else "")


def versions(wrk: str | None) -> dict[str, Any]:
    def ver(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    wrk_version = None
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=30, check=False)
        wrk_version = (out.stdout or out.stderr).split(" [")[0].replace("wrk ", "").strip() or None
    return {
        "python": platform.python_version(),
        "gatewayz": git_sha(),
        "uvicorn": ver("uvicorn"),
        "aiohttp": ver("aiohttp"),
        "fastapi": ver("fastapi"),
        "wrk": wrk_version,
        "litellm": None,
    }


# ---- one target ----------------------------------------------------------------------------------


def measure_point(
    run: Running, ctx: Ctx, point: Point, duration: float, wrk: str | None, body_file: Path
) -> load.LoadResult:
    route = ROUTES[point.route]
    api = route.api
    body = api.body(run.spec.models[route.upstream], point.stream, point.delay_ms)
    url, headers = run.url(api), run.headers(api)
    pids = {"proxy": run.pid, "upstream": ctx.upstream_pid}
    meter, steal = CpuMeter(pids), StealMeter()
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    self0 = time.process_time()
    meter.start()
    steal.start()
    t0 = time.perf_counter()
    if wrk and point.kind != "probe":
        body_file.write_bytes(body)
        result = load.run_wrk(wrk, url, body_file, headers, point.concurrency, duration)
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        loadgen = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    else:
        result = load.run_python(url, body, headers, point.concurrency, duration, point.stream, api=api)
        loadgen = time.process_time() - self0
    wall = time.perf_counter() - t0
    result.cpu = meter.stop()
    result.cpu["loadgen"] = 100.0 * loadgen / wall if wall > 0 else 0.0
    result.cpu["steal"], busy = steal.read()
    ours = result.cpu["loadgen"] + result.cpu["proxy"]
    if run.pid != ctx.upstream_pid:
        ours += result.cpu["upstream"]
    result.cpu["others"] = max(0.0, busy - ours)  # everything else on the machine (other users' work)
    return result


def warm_up(run: Running, seconds: float, routes: list[str]) -> None:
    """Open the pools and let lazy caches fill, on every route to be measured, before anything is
    recorded."""
    share = seconds / (2 * max(1, len(routes)))
    for key in routes:
        route = ROUTES[key]
        model = run.spec.models[route.upstream]
        for stream in (False, True) if route.api.streams else (False,):
            body = route.api.body(model, stream)
            load.run_python(run.url(route.api), body, run.headers(route.api), 4, share, stream, api=route.api)


def bench_target(
    spec: TargetSpec,
    ctx: Ctx,
    points: list[Point],
    args: argparse.Namespace,
    wrk: str | None,
    say: Callable[[str], None],
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": spec.key,
        "title": spec.title,
        "issue_targets": spec.issue_targets,
        "min_x_litellm": spec.min_x_litellm,
        "points": {},
    }
    reason = skip_reason(spec, ctx)
    if reason:
        say(f"[{spec.key}] skipped: {reason}")
        out.update(status="skipped", note=reason)
        return out
    say(f"[{spec.key}] starting")
    try:
        run = start(spec, ctx)
    except Exception as exc:
        say(f"[{spec.key}] failed to start: {exc}")
        out.update(status="failed", note=f"did not start: {str(exc)[:600]}")
        return out
    try:
        out.update(
            status="ok",
            startup_s=run.startup_s,
            auth=run.auth,
            notes=run.notes,
            version=run.version,
            rss_idle_mb=rss_mb(run.pid),
        )
        say(f"[{spec.key}] up in {run.startup_s or 0:.2f} s, RSS {out['rss_idle_mb']:.0f} MB; warming up")
        points = [p for p in points if p.route in spec.routes]
        if args.warmup > 0:
            warm_up(run, args.warmup, [r for r in spec.routes if any(p.route == r for p in points)])
        body_file = ctx.work / f"{spec.key}-body.json"
        for point in points:
            runs = []
            for i in range(args.runs):
                between_runs(run)
                wait_for_quiet(args.quiet_below, args.quiet_wait, say)
                r = measure_point(run, ctx, point, args.duration, wrk, body_file)
                runs.append(r.to_json())
                extra = f", TTFB p50 {r.ttfb_p50_ms:.2f} ms" if r.ttfb_p50_ms is not None else ""
                say(
                    f"[{spec.key}] {point.key} run {i + 1}: {r.rps:,.0f}/s, p50 {r.p50_ms:.2f} ms, "
                    f"p99 {r.p99_ms:.2f} ms{extra}, errors {r.errors}, proxy CPU {r.cpu.get('proxy', 0):.0f} %, "
                    f"others {r.cpu.get('others', 0):.0f} %"
                )
            out["points"][point.key] = {"point": asdict(point), "runs": runs}
        time.sleep(0.5)
        out["rss_after_mb"] = rss_mb(run.pid)
        if spec.memory_test and args.slow_streams > 0:
            n = args.slow_streams
            chunk_ms = max(1, int(args.slow_stream_seconds * 1000 / (len(fake_upstream.EVENTS[True]) - 1)))
            say(
                f"[{spec.key}] {n} concurrent slow streams ({chunk_ms} ms between events, ~{args.slow_stream_seconds:g} s each)"
            )
            slow = load.run_slow_streams(
                run.url(),
                chat_body(spec.model, True, chunk_ms=chunk_ms),
                run.headers(),
                n,
                lambda: rss_mb(run.pid),
            )
            out["slow_streams"] = slow.to_json()
            say(
                f"[{spec.key}] slow streams: {slow.ok}/{n} complete, {slow.errors} errors, RSS "
                f"{slow.rss_before_mb:.1f} → peak {slow.rss_peak_mb:.1f} → {slow.rss_after_mb:.1f} MB "
                f"({slow.growth_per_stream_kb:.1f} KB/stream)"
            )
    except Exception as exc:
        say(f"[{spec.key}] failed: {exc}")
        out.update(
            status="failed",
            note=f"failed during the run: {str(exc)[:600]}\n{run.proc.tail(10) if run.proc else ''}",
        )
    finally:
        run.stop()
    return out


# ---- the run ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description="Gatewayz overhead benchmark (issue 5).")
    p.add_argument(
        "--targets", help=f"comma-separated, from: {', '.join(TARGETS)} (default: the default ones)"
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds per point and run (default 10)")
    p.add_argument("--runs", type=int, help="runs per point (default 2; 1 with --quick)")
    p.add_argument("--concurrency", help="comma-separated concurrency levels (default 1,10,50)")
    p.add_argument(
        "--routes",
        help=f"comma-separated, from: {', '.join(ROUTES)} (default: all; chat, and the references and "
        "floors of those named, are always added)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a fast smoke: 1 run, c=1,10, targets direct+gatewayz, 100 slow streams",
    )
    p.add_argument(
        "--loadgen", choices=["auto", "wrk", "python"], default="auto", help="auto: wrk when it is there"
    )
    p.add_argument(
        "--slow-streams", type=int, help="concurrent slow streams for the memory test (default 1000; 0 skips)"
    )
    p.add_argument(
        "--slow-stream-seconds", type=float, default=5.0, help="length of each slow stream (default 5)"
    )
    p.add_argument(
        "--warmup", type=float, help="seconds of unrecorded load per target first (default 2; 1 quick)"
    )
    p.add_argument(
        "--quiet-below",
        type=float,
        default=25.0,
        help="before each run, wait until other work on the machine uses less than this %% of a core",
    )
    p.add_argument(
        "--quiet-wait", type=float, help="longest wait for that, in seconds (default 30; 0 with --quick)"
    )
    p.add_argument(
        "--label", help="the report's name: bench/results/<UTC date>-<label>.md (default full/quick)"
    )
    p.add_argument(
        "--out-dir", type=Path, default=RESULTS, help="where the report goes (default bench/results)"
    )
    p.add_argument(
        "--no-install", action="store_true", help="never apt-get/pip install (wrk, LiteLLM, granian)"
    )
    p.add_argument("--no-readme", action="store_true", help="do not refresh the summary in bench/README.md")
    p.add_argument("--render", type=Path, help="only re-render the markdown of a results JSON")
    args = p.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(1.0 if args.quick else 2.0, args.duration)
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if args.quick else 30.0
    if args.runs is None:
        args.runs = 1 if args.quick else 2
    if args.concurrency:
        args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    else:
        args.concurrency = [1, 10] if args.quick else [1, 10, 50]
    keys = [k.strip() for k in (args.routes or ",".join(ROUTES)).split(",") if k.strip()]
    unknown = [k for k in keys if k not in ROUTES]
    if unknown:
        p.error(f"unknown route(s) {', '.join(unknown)}; known: {', '.join(ROUTES)}")
    args.routes = with_dependencies(keys)
    if args.slow_streams is None:
        args.slow_streams = 100 if args.quick else 1000
    if args.targets:
        keys = [k.strip() for k in args.targets.split(",") if k.strip()]
        unknown = [k for k in keys if k not in TARGETS]
        if unknown:
            p.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
        if "direct" not in keys:
            keys.insert(0, "direct")  # every added figure is measured against it
        args.targets = keys
    else:
        args.targets = ["direct", "gatewayz"] if args.quick else [k for k, t in TARGETS.items() if t.default]
    args.label = args.label or ("quick" if args.quick else "full")
    return args


def write_outputs(results: dict[str, Any], out_dir: Path, label: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    date = results["meta"]["started_utc"][:10]
    md = out_dir / f"{date}-{label}.md"
    md.write_text(report.render(results))
    md.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    return md


def update_readme(results: dict[str, Any], md: Path) -> bool:
    if not README.exists():
        return False
    text = README.read_text()
    if README_START not in text or README_END not in text:
        return False
    rel = md.relative_to(ROOT) if md.is_relative_to(ROOT) else md
    block = report.summary_block(results, str(rel))
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    README.write_text(f"{head}{README_START}\n{block}\n{README_END}{tail}")
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def say(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)

    if args.render:
        results = json.loads(args.render.read_text())
        md = write_outputs(results, args.out_dir, results["meta"]["label"])
        say(f"wrote {md}")
        return 0

    policy = asyncio.get_event_loop_policy()
    load.install_uvloop()
    # SIGTERM (and SIGINT, which a background shell ignores) unwind through the `finally`
    # blocks, so every process the bench started is stopped.
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(args, argv, say)
    finally:
        signal.signal(signal.SIGTERM, previous)
        asyncio.set_event_loop_policy(policy)  # leave a caller (a test) as it was


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _run(args: argparse.Namespace, argv: list[str] | None, say: Callable[[str], None]) -> int:
    started = dt.datetime.now(dt.UTC)
    nofile = raise_nofile(max(4096, 4 * args.slow_streams + 1024))
    wrk = None
    if args.loadgen in ("auto", "wrk"):
        wrk = load.ensure_wrk(not args.no_install, say)
        if wrk is None and args.loadgen == "wrk":
            say("wrk is required (--loadgen wrk) but missing")
            return 2
    loadgen = "wrk" if wrk else "python"
    points = plan_points(args.concurrency, wrk is not None, args.quick, args.routes)
    est = sum(
        len([p for p in points if p.route in TARGETS[k].routes]) * args.runs * args.duration
        for k in args.targets
    )
    say(
        f"targets {', '.join(args.targets)}; up to {len(points)} points each (those of the routes it serves) × {args.runs} runs × {args.duration:g} s; ~{est / 60:.1f} min of load"
    )

    work = WORK / f"run-{started:%Y%m%dT%H%M%SZ}"
    work.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "started_utc": started.strftime("%Y-%m-%d %H:%M:%SZ"),
        "label": args.label,
        "command": " ".join(
            ["python -m bench", shlex.join(argv if argv is not None else sys.argv[1:])]
        ).strip(),
        "machine": machine(),
        "versions": versions(wrk),
        "duration": args.duration,
        "runs": args.runs,
        "concurrency": args.concurrency,
        "routes": {key: ROUTES[key].title for key in args.routes},
        "loadgen": loadgen,
        "slow_stream_s": args.slow_stream_seconds,
        "notes": [],
    }
    meta["machine"]["nofile"] = nofile
    features = detect_features()
    meta["gatewayz_features"] = sorted(features)
    steal = StealMeter()
    steal.start()

    upstream_port = free_port()
    upstream: Proc = spawn(
        "upstream",
        [sys.executable, "-m", "bench.fake_upstream", "--port", str(upstream_port)],
        {**os.environ, "PYTHONPATH": str(ROOT)},
        work / "upstream.log",
        cwd=ROOT,
    )
    targets_out: list[dict[str, Any]] = []
    try:
        wait_for_line(upstream, "READY", 15)
        ctx = Ctx(work, upstream_port, upstream.pid, not args.no_install, say, features)
        for key in args.targets:
            spec = TARGETS[key]
            res = bench_target(spec, ctx, points, args, wrk, say)
            if key == "litellm" and res.get("status") == "ok":
                meta["versions"]["litellm"] = LITELLM_VERSION
            targets_out.append(res)
    finally:
        upstream.stop()
    meta["machine"]["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["machine"]["steal_pct"] = steal.stop()
    meta["finished_utc"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    results = {"meta": meta, "targets": targets_out}
    md = write_outputs(results, args.out_dir, args.label)
    if args.quick and all(t.get("status") in ("ok", "skipped") for t in targets_out):
        shutil.rmtree(work, ignore_errors=True)  # a passing smoke leaves no scratch behind
    say(f"wrote {md} and {md.with_suffix('.json').name}")
    if (
        not args.quick
        and not args.no_readme
        and args.out_dir.resolve() == RESULTS.resolve()
        and update_readme(results, md)
    ):
        say(f"refreshed the summary in {README.relative_to(ROOT)}")
    print(report.render(results))
    return 0
