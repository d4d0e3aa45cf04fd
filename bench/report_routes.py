"""Routes next to their reference (issue 12): every route within 10 % of the chat route it is
compared with, in added latency and CPU per answer (bench/report.py renders them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.report_figures import added, cpu_ms_per_req, runs_of, total_errors

# ---- routes next to their reference (issue 12) -------------------------------------------------

WITHIN = 0.10  # a route's added latency p50 and CPU per answer may exceed its reference's by this much
PCT = f"{100 * WITHIN:.0f} %"
# The latency a comparison reads, by kind of point: (p50 field, p99 field, what it times).
LATENCY = {
    "chat": ("p50_ms", "p99_ms", "answer"),
    "stream": ("p50_ms", "p99_ms", "whole stream"),
    "probe": ("ttfb_p50_ms", "ttfb_p99_ms", "TTFB"),
}


@dataclass
class RouteRow:
    target: str
    point: str
    route: str
    reference: str
    measures: str  # what the latency times
    p50: tuple[float | None, float | None]  # added latency p50 (ms): this point, its reference
    p99: tuple[float | None, float | None]
    cpu: tuple[float | None, float | None]  # CPU ms per answer
    errors: int
    met: bool | None  # None: a figure is missing

    @property
    def verdict(self) -> str:
        return {True: "**met**", False: "**missed**", None: "not measured"}[self.met]


def within(mine: float | None, ref: float | None) -> bool | None:
    if mine is None or ref is None:
        return None
    return mine <= ref + WITHIN * abs(ref)


def route_rows(results: dict[str, Any]) -> list[RouteRow]:
    out = []
    for t in results["targets"]:
        if t.get("status") != "ok":
            continue
        for key, entry in (t.get("points") or {}).items():
            info = entry["point"]
            ref = info.get("reference")
            if not ref or not runs_of(t, ref) or info["kind"] not in LATENCY:
                continue
            p50, p99, measures = LATENCY[info["kind"]]
            runs = entry["runs"]
            row = RouteRow(
                t["key"],
                key,
                info.get("route", "chat"),
                ref,
                measures,
                (added(results, t, key, p50), added(results, t, ref, p50)),
                (added(results, t, key, p99), added(results, t, ref, p99)),
                (cpu_ms_per_req(runs), cpu_ms_per_req(runs_of(t, ref))),
                total_errors(runs),
                None,
            )
            verdicts = [within(*row.p50), within(*row.cpu)]
            row.met = None if None in verdicts else (row.errors == 0 and all(verdicts))
            out.append(row)
    return out


def f_pair(pair: tuple[float | None, float | None], fmt: Any) -> str:
    """`this / reference (±n %)`."""
    mine, ref = pair
    text = f"{fmt(mine)} / {fmt(ref)}"
    if mine is not None and ref:
        text += f" ({100.0 * (mine - ref) / abs(ref):+.0f} %)"
    return text


def route_verdict_line(rows: list[RouteRow]) -> str:
    met = [r for r in rows if r.met]
    missed = [r for r in rows if r.met is False]
    line = f"Routes within {PCT} of their reference (issue 12): {len(met)} met, {len(missed)} missed."
    if missed:
        line += " Missed: " + "; ".join(f"{r.target} {r.point} vs {r.reference}" for r in missed) + "."
    return line
