"""From the run's raw data (`results` JSON) to the markdown report: the issue-5 checks and the
rendering. The figures it reads are in bench/report_figures.py, the route comparisons (issue 12:
every route within 10 % of the chat route it is compared with) in bench/report_routes.py.

A point's JSON names its route, its floor (the direct target's point it is measured against) and
its reference (the same target's point it is compared with); results written before routes
existed have none of these and read as the chat route, measured against the same point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.report_figures import (
    added,
    by_key,
    cpu_ms_per_req,
    f_abs_ms,
    f_ms,
    f_num,
    f_runs,
    mean,
    noise_sentence,
    runs_of,
    table,
    total_errors,
)
from bench.report_routes import PCT, f_pair, route_rows, route_verdict_line

# ---- issue-5 checks ----------------------------------------------------------------------------


@dataclass
class Check:
    target: str
    what: str
    goal: str
    measured: str
    met: bool | None  # None: not measured

    @property
    def verdict(self) -> str:
        return {True: "**met**", False: "**missed**", None: "not measured"}[self.met]


def _ge(v: float | None, goal: float) -> bool | None:
    return None if v is None else v >= goal


def _le(v: float | None, goal: float) -> bool | None:
    return None if v is None else v <= goal


def checks(results: dict[str, Any]) -> list[Check]:
    out: list[Check] = []
    targets = by_key(results)
    lite = targets.get("litellm")
    lite_ok = lite is not None and lite.get("status") == "ok"
    for t in results["targets"]:
        if not t.get("issue_targets"):
            continue
        name = t["key"]
        if t.get("status") != "ok":
            out.append(Check(name, "all targets", "–", t.get("status", "?") + ": " + t.get("note", ""), None))
            continue
        x = float(t.get("min_x_litellm") or 0)
        conc = [c for c in (10, 50) if runs_of(t, f"chat-c{c}")]
        for c in conc:
            rps = mean(runs_of(t, f"chat-c{c}"), "rps")
            if name == "gatewayz":
                out.append(Check(name, f"req/s at c={c}", "≥ 800", f_num(rps), _ge(rps, 800)))
            if lite_ok and x:
                lrps = mean(runs_of(lite, f"chat-c{c}"), "rps")
                ratio = rps / lrps if rps and lrps else None
                out.append(
                    Check(
                        name, f"req/s at c={c} vs LiteLLM", f"≥ {x:g}×", f"{f_num(ratio, 1)}×", _ge(ratio, x)
                    )
                )
        for c in (10, 50):
            key = f"stream-c{c}" if runs_of(t, f"stream-c{c}") else f"probe-c{c}"
            if not runs_of(t, key):
                continue
            sps = mean(runs_of(t, key), "rps")
            if name == "gatewayz":
                out.append(Check(name, f"streams/s at c={c}", "≥ 500", f_num(sps), _ge(sps, 500)))
            if lite_ok and x:
                lsps = mean(runs_of(lite, key), "rps")
                ratio = sps / lsps if sps and lsps else None
                out.append(
                    Check(
                        name,
                        f"streams/s at c={c} vs LiteLLM",
                        f"≥ {x:g}×",
                        f"{f_num(ratio, 1)}×",
                        _ge(ratio, x),
                    )
                )
        a50, a99 = added(results, t, "chat-c1", "p50_ms"), added(results, t, "chat-c1", "p99_ms")
        out.append(Check(name, "added p50 at c=1", "≤ 1 ms", f_ms(a50) + " ms", _le(a50, 1.0)))
        out.append(Check(name, "added p99 at c=1", "≤ 3 ms", f_ms(a99) + " ms", _le(a99, 3.0)))
        at = added(results, t, "probe-c1", "ttfb_p50_ms")
        out.append(Check(name, "added TTFB p50 at c=1 (stream)", "≤ 1.5 ms", f_ms(at) + " ms", _le(at, 1.5)))
        st = t.get("startup_s")
        out.append(Check(name, "start-up to first completion", "≤ 1.5 s", f_num(st, 2) + " s", _le(st, 1.5)))
        rss = t.get("rss_after_mb")
        out.append(Check(name, "RSS after load", "≤ 120 MB", f_num(rss, 0) + " MB", _le(rss, 120)))
        for mode, label in (("chat", "req/s"), ("stream", "streams/s")):
            k10 = f"{mode}-c10" if runs_of(t, f"{mode}-c10") else ("probe-c10" if mode == "stream" else "")
            k50 = f"{mode}-c50" if runs_of(t, f"{mode}-c50") else ("probe-c50" if mode == "stream" else "")
            r10, r50 = mean(runs_of(t, k10), "rps"), mean(runs_of(t, k50), "rps")
            if r10 and r50:
                ratio = r50 / r10
                out.append(Check(name, f"{label} at c=50 vs c=10", "≥ 0.85", f"{ratio:.2f}", ratio >= 0.85))
        errs = sum(total_errors(p["runs"]) for p in (t.get("points") or {}).values())
        out.append(Check(name, "errors over every point", "0", str(errs), errs == 0))
        slow = t.get("slow_streams")
        if slow:
            out.append(
                Check(
                    name,
                    f"{slow['streams']:,} concurrent slow streams",
                    "0 errors; report growth",
                    f"{slow['errors']} errors; {slow['growth_per_stream_kb']:.1f} KB/stream",
                    slow["errors"] == 0,
                )
            )
    return out


# ---- the report ----------------------------------------------------------------------------------


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    ok = [t for t in results["targets"] if t.get("status") == "ok"]
    lines: list[str] = []
    lines.append(f"# Gatewayz bench — {meta['started_utc']} — {meta['label']}")
    lines.append("")
    lines.append(f"Command: `{meta['command']}`")
    lines.append("")
    m = meta["machine"]
    v = meta["versions"]
    lines.append(
        f"Machine: {m['nproc']} cores, {m['cpu_model']}, kernel {m['kernel']}, load average "
        f"{m['loadavg_start']} at the start and {m.get('loadavg_end', '?')} at the end; "
        f"CPU steal over the run {f_num(m.get('steal_pct'), 1)} %. {noise_sentence(results)}"
    )
    lines.append(
        f"Versions: Python {v['python']}, Gatewayz {v['gatewayz']}, LiteLLM {v.get('litellm') or 'not run'}, "
        f"wrk {v.get('wrk') or 'not used'}, uvicorn {v.get('uvicorn')}, aiohttp {v.get('aiohttp')}."
    )
    lines.append(
        f"Load: closed loop, {meta['duration']:g} s per point, {meta['runs']} run(s) per point, "
        f"load generator `{meta['loadgen']}` (1 thread, connections = concurrency); streaming probe in "
        "Python (aiohttp). Fake upstream with zero delay unless a row says otherwise; every target is "
        "one worker process. Figures are `mean (run 1 / run 2; ±half the spread)`."
    )
    lines.append("")

    # Headline
    lines.append("## Summary")
    lines.append("")
    conc = meta["concurrency"]
    head = ["target", "start-up s", "RSS idle / after load MB"]
    head += [f"req/s c={c}" for c in conc]
    head += [f"streams/s c={c}" for c in conc if c > 1]
    head += ["added p50 / p99 c=1 ms", "added TTFB p50 c=1 ms", "CPU ms/answer c=10 chat / stream", "errors"]
    rows = []
    for t in results["targets"]:
        if t.get("status") != "ok":
            rows.append([t["title"], f"*{t.get('status')}*: {t.get('note', '')}"] + [""] * (len(head) - 2))
            continue
        row = [
            t["title"],
            f_num(t.get("startup_s"), 2),
            f"{f_num(t.get('rss_idle_mb'))} / {f_num(t.get('rss_after_mb'))}",
        ]
        row += [f_num(mean(runs_of(t, f"chat-c{c}"), "rps")) for c in conc]
        for c in conc:
            if c > 1:
                key = f"stream-c{c}" if runs_of(t, f"stream-c{c}") else f"probe-c{c}"
                row.append(f_num(mean(runs_of(t, key), "rps")))
        if t["key"] == "direct":
            row += ["0 (floor)", "0 (floor)"]
        else:
            row.append(
                f"{f_ms(added(results, t, 'chat-c1', 'p50_ms'))} / {f_ms(added(results, t, 'chat-c1', 'p99_ms'))}"
            )
            row.append(f_ms(added(results, t, "probe-c1", "ttfb_p50_ms")))
        skey = "stream-c10" if runs_of(t, "stream-c10") else "probe-c10"
        row.append(
            f"{f_abs_ms(cpu_ms_per_req(runs_of(t, 'chat-c10')))} / {f_abs_ms(cpu_ms_per_req(runs_of(t, skey)))}"
        )
        row.append(str(sum(total_errors(p["runs"]) for p in (t.get("points") or {}).values())))
        rows.append(row)
    lines.append(table(head, rows))
    lines.append("")

    # Issue-5 targets
    cs = checks(results)
    if cs:
        lines.append("## Issue-5 targets")
        lines.append("")
        lines.append(
            table(
                ["target", "figure", "goal", "measured", "verdict"],
                [[c.target, c.what, c.goal, c.measured, c.verdict] for c in cs],
            )
        )
        lines.append("")

    # Routes next to their reference
    rrows = route_rows(results)
    if rrows:
        lines.append(f"## Routes next to chat (issue 12: within {PCT} of the reference)")
        lines.append("")
        lines.append(
            "Each row is a point of a route and the same target's point it is compared with, measured "
            "one after the other: `msg` (Messages translated to the OpenAI upstream) against `chat` on "
            "that upstream, `msg-native` (Messages passed through to the Anthropic upstream) against "
            "`chat-claude` (chat translated to that same upstream). *Added* is over the direct call to "
            "the same upstream API; the latency is the whole answer, the whole stream (wrk) or the "
            f"TTFB (probe). **Met** when the added p50 and the CPU per answer are at most {PCT} "
            "above the reference's and there are no errors (p99 is shown, not judged: one slow "
            "answer in a thousand moves it by more than that)."
        )
        lines.append("")
        lines.append(
            table(
                [
                    "target",
                    "point",
                    "vs",
                    "latency",
                    "added p50 ms (this / ref)",
                    "added p99 ms (this / ref)",
                    "CPU ms/answer (this / ref)",
                    "errors",
                    "verdict",
                ],
                [
                    [
                        r.target,
                        r.point,
                        r.reference,
                        r.measures,
                        f_pair(r.p50, f_ms),
                        f_pair(r.p99, f_ms),
                        f_pair(r.cpu, f_abs_ms),
                        str(r.errors),
                        r.verdict,
                    ]
                    for r in rrows
                ],
            )
        )
        lines.append("")
        lines.append(route_verdict_line(rrows))
        lines.append("")

    # Details per kind of point
    def detail(kind: str, title: str, cols: list[tuple[str, Any]]) -> None:
        rows = []
        for t in ok:
            for key, entry in (t.get("points") or {}).items():
                p = entry["point"]
                if p["kind"] != kind:
                    continue
                runs = entry["runs"]
                route = p.get("route", "chat")
                rows.append([t["key"], route, str(p["concurrency"]), *(fn(t, key, runs) for _, fn in cols)])
        if rows:
            lines.append(f"## {title}")
            lines.append("")
            lines.append(table(["target", "route", "c", *(name for name, _ in cols)], rows))
            lines.append("")

    def add(name: str) -> Any:
        return lambda t, key, runs: "–" if t["key"] == "direct" else f_ms(added(results, t, key, name))

    cpu_cols: list[tuple[str, Any]] = [
        ("proxy CPU %", lambda t, k, r: f_runs(r, "proxy")),
        ("CPU ms/answer", lambda t, k, r: f_abs_ms(cpu_ms_per_req(r))),
        ("upstream CPU %", lambda t, k, r: f_num(mean(r, "upstream"))),
        ("loadgen CPU %", lambda t, k, r: f_num(mean(r, "loadgen"))),
        ("steal %", lambda t, k, r: f_num(mean(r, "steal"), 1)),
        ("others %", lambda t, k, r: f_num(mean(r, "others"))),
    ]
    detail(
        "chat",
        "Non-streaming (wrk)",
        [
            ("req/s", lambda t, k, r: f_runs(r, "rps")),
            ("p50 ms", lambda t, k, r: f_abs_ms(mean(r, "p50_ms"))),
            ("p99 ms", lambda t, k, r: f_abs_ms(mean(r, "p99_ms"))),
            ("added p50 ms", add("p50_ms")),
            ("added p99 ms", add("p99_ms")),
            ("errors", lambda t, k, r: str(total_errors(r))),
            *cpu_cols,
        ],
    )
    detail(
        "stream",
        "Streaming throughput (wrk; latency = whole stream)",
        [
            ("streams/s", lambda t, k, r: f_runs(r, "rps")),
            ("p50 ms", lambda t, k, r: f_abs_ms(mean(r, "p50_ms"))),
            ("p99 ms", lambda t, k, r: f_abs_ms(mean(r, "p99_ms"))),
            ("added p50 ms", add("p50_ms")),
            ("errors", lambda t, k, r: str(total_errors(r))),
            *cpu_cols,
        ],
    )
    detail(
        "probe",
        "Streaming probe (Python aiohttp client: TTFB = first body bytes)",
        [
            ("streams/s", lambda t, k, r: f_runs(r, "rps")),
            ("TTFB p50 ms", lambda t, k, r: f_abs_ms(mean(r, "ttfb_p50_ms"))),
            ("TTFB p99 ms", lambda t, k, r: f_abs_ms(mean(r, "ttfb_p99_ms"))),
            ("added TTFB p50 ms", add("ttfb_p50_ms")),
            ("added TTFB p99 ms", add("ttfb_p99_ms")),
            ("total p50 ms", lambda t, k, r: f_abs_ms(mean(r, "p50_ms"))),
            ("errors", lambda t, k, r: str(total_errors(r))),
            *cpu_cols,
        ],
    )
    detail(
        "chat-delay",
        "Non-streaming with a 50 ms upstream (wrk)",
        [
            ("req/s", lambda t, k, r: f_runs(r, "rps")),
            ("p50 ms", lambda t, k, r: f_abs_ms(mean(r, "p50_ms"))),
            ("p99 ms", lambda t, k, r: f_abs_ms(mean(r, "p99_ms"))),
            ("added p50 ms", add("p50_ms")),
            ("added p99 ms", add("p99_ms")),
            ("errors", lambda t, k, r: str(total_errors(r))),
            *cpu_cols,
        ],
    )

    slow_rows = []
    for t in ok:
        s = t.get("slow_streams")
        if s:
            slow_rows.append(
                [
                    t["key"],
                    f"{s['streams']:,}",
                    f"{s['ok']:,}",
                    str(s["errors"]),
                    f"{s['seconds']:.1f}",
                    f_num(s["rss_before_mb"], 1),
                    f_num(s["rss_peak_mb"], 1),
                    f_num(s["rss_after_mb"], 1),
                    f"{s['growth_per_stream_kb']:.1f}",
                    f"{s['ttfb_p50_ms']:.1f} / {s['ttfb_p99_ms']:.1f}",
                ]
            )
    if slow_rows:
        lines.append(
            f"## Memory: concurrent slow streams (each stream ~{meta.get('slow_stream_s', 5):g} s long)"
        )
        lines.append("")
        lines.append(
            table(
                [
                    "target",
                    "streams",
                    "complete",
                    "errors",
                    "wall s",
                    "RSS before MB",
                    "RSS peak MB",
                    "RSS after MB",
                    "growth KB/stream",
                    "TTFB p50 / p99 ms",
                ],
                slow_rows,
            )
        )
        lines.append("")
        errs = [e for t in ok for e in ((t.get("slow_streams") or {}).get("error_samples") or [])]
        if errs:
            lines.append("Slow-stream errors seen: " + "; ".join(errs))
            lines.append("")

    lines.append("## Targets and notes")
    lines.append("")
    for t in results["targets"]:
        extra = f" — {t['version']}" if t.get("version") else ""
        auth = f"; auth: {t['auth']}" if t.get("auth") else ""
        lines.append(f"- `{t['key']}`: {t['title']}{extra}; {t.get('status')}{auth}.")
        for note in [t.get("note"), *(t.get("notes") or [])]:
            if note:
                lines.append(f"  - {note}")
    for note in meta.get("notes", []):
        lines.append(f"- {note}")
    if meta.get("routes"):
        lines.append(
            "- Routes (the `route` column): "
            + "; ".join(f"`{key}` {title}" for key, title in meta["routes"].items())
            + ". `direct` calls each upstream API in its own shape: its `chat` points are the floor of "
            "`chat` and `msg`, its `msg-native` points the floor of `msg-native`, `chat-claude` and "
            "`resp-claude`, its `resp` points the floor of `resp`."
        )
    lines.append("")
    lines.append(
        "Figures: *req/s* and *streams/s* count 2xx answers per second of the run; *added* is the "
        "target's figure minus the direct call's at the same point (for a route that ends on another "
        "upstream API, at the direct call of that API: see Routes above); *TTFB* is the time from sending "
        "the request to the first body bytes; *proxy CPU %* is utime+stime of the target's process "
        "tree over the run (100 % = one core), read from /proc/PID/stat; *RSS* is VmRSS from "
        "/proc/PID/status; *steal %* is the hypervisor's steal time over the run and *others %* the CPU "
        "that everything else on the machine used meanwhile (% of one core; the noise gauges); "
        "*CPU ms/answer* is the target's CPU time per 2xx answer (proxy CPU over the rate): unlike "
        "requests/s it barely moves when other work shares the machine, and 1,000 / it is the rate "
        "one fully busy core could sustain; "
        "*errors* are non-2xx answers, answers without their API's mark, streams without their "
        "API's end (`data: [DONE]`, `event: message_stop`) and socket errors/timeouts."
    )
    lines.append("")
    return "\n".join(lines)


def summary_block(results: dict[str, Any], path: str) -> str:
    """The short summary kept in bench/README.md between the results markers."""
    meta = results["meta"]
    lines = [
        f"Latest full run: `{path}` ({meta['started_utc']}, {meta['machine']['nproc']} cores "
        f"{meta['machine']['cpu_model']}, Gatewayz {meta['versions']['gatewayz']}, "
        f"LiteLLM {meta['versions'].get('litellm') or 'not run'}).",
        "",
    ]
    if noise_sentence(results):
        lines += [noise_sentence(results), ""]
    text = render(results)
    start = text.index("## Summary")
    end = text.index("## ", start + 5)
    body = text[start:end].replace("## Summary\n\n", "")
    lines.append(body.strip())
    cs = checks(results)
    if cs:
        met = [c for c in cs if c.met]
        missed = [c for c in cs if c.met is False]
        lines.append("")
        lines.append(f"Issue-5 targets: {len(met)} met, {len(missed)} missed.")
        if missed:
            lines.append(
                "Missed: "
                + "; ".join(f"{c.target} {c.what} ({c.measured}, goal {c.goal})" for c in missed)
                + "."
            )
    rrows = route_rows(results)
    if rrows:
        lines += ["", route_verdict_line(rrows)]
    return "\n".join(lines)
