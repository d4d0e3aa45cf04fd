"""The report's figures from a run's raw data (`results` JSON): a point's runs, their mean and
noise, added latency against the floor, CPU per answer, and the markdown number and table formats
(bench/report.py, bench/report_routes.py)."""

from __future__ import annotations

import statistics
from typing import Any

# ---- aggregation ---------------------------------------------------------------------------


def runs_of(target: dict[str, Any], point: str) -> list[dict[str, Any]]:
    entry = (target.get("points") or {}).get(point)
    return list(entry["runs"]) if entry else []


def values(runs: list[dict[str, Any]], name: str) -> list[float]:
    out = []
    for r in runs:
        v = r.get(name)
        if v is None and name in (r.get("cpu") or {}):
            v = r["cpu"][name]
        if v is not None:
            out.append(float(v))
    return out


def mean(runs: list[dict[str, Any]], name: str) -> float | None:
    vs = values(runs, name)
    return statistics.fmean(vs) if vs else None


def noise(runs: list[dict[str, Any]], name: str) -> float | None:
    """Spread between the runs of one point, in % of their mean: (max - min) / mean."""
    vs = values(runs, name)
    if len(vs) < 2 or not statistics.fmean(vs):
        return None
    return 100.0 * (max(vs) - min(vs)) / statistics.fmean(vs)


def cpu_ms_per_req(runs: list[dict[str, Any]]) -> float | None:
    """The target's CPU time per answer (ms): robust to a busy machine, unlike requests/s."""
    vals = [
        (r.get("cpu") or {}).get("proxy", 0.0) / 100.0 / r["rps"] * 1000.0
        for r in runs
        if r.get("rps") and (r.get("cpu") or {}).get("proxy")
    ]
    return statistics.fmean(vals) if vals else None


def others_load(results: dict[str, Any]) -> tuple[float, float] | None:
    """Mean and max CPU (% of one core) that the rest of the machine used during the runs."""
    vals = [
        float(r["cpu"]["others"])
        for t in results["targets"]
        for p in (t.get("points") or {}).values()
        for r in p["runs"]
        if "others" in (r.get("cpu") or {})
    ]
    return (statistics.fmean(vals), max(vals)) if vals else None


def noise_sentence(results: dict[str, Any]) -> str:
    load = others_load(results)
    if load is None:
        return ""
    cores = results["meta"]["machine"]["nproc"] or 1
    text = (
        f"Other work on the machine during the runs: {load[0]:.0f} % of a core on average "
        f"(at most {load[1]:.0f} %, out of {100 * cores} %)."
    )
    if load[0] > 50:
        text += (
            " **The machine was busy with other work: throughput and latency are depressed for every "
            "target; compare ratios and CPU ms/answer, not absolute rates.**"
        )
    return text


def total_errors(runs: list[dict[str, Any]]) -> int:
    return int(sum(r.get("errors", 0) for r in runs))


def by_key(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["key"]: t for t in results["targets"]}


def point_info(target: dict[str, Any], point: str) -> dict[str, Any]:
    entry = (target.get("points") or {}).get(point)
    return dict(entry["point"]) if entry else {}


def added(results: dict[str, Any], target: dict[str, Any], point: str, name: str) -> float | None:
    """The target's figure minus the direct call's at the point's floor (the same upstream API
    called directly, at the same kind and concurrency), means over the runs."""
    direct = by_key(results).get("direct")
    if direct is None or direct.get("status") != "ok":
        return None
    floor_key = point_info(target, point).get("floor") or point
    mine, floor = mean(runs_of(target, point), name), mean(runs_of(direct, floor_key), name)
    if mine is None or floor is None:
        return None
    return mine - floor


# ---- formatting ------------------------------------------------------------------------------


def f_num(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def f_ms(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:+.2f}" if abs(v) < 10 else f"{v:+.1f}"


def f_abs_ms(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def f_runs(runs: list[dict[str, Any]], name: str, digits: int = 0) -> str:
    """`mean (a / b, ±n %)`: the runs' mean, each run's value and the spread between them."""
    vs = values(runs, name)
    if not vs:
        return "–"
    m = statistics.fmean(vs)
    if len(vs) == 1:
        return f_num(m, digits)
    spread = noise(runs, name)
    each = " / ".join(f_num(v, digits) for v in vs)
    return f"{f_num(m, digits)} ({each}; ±{spread / 2:.0f} %)" if spread is not None else f_num(m, digits)


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)
