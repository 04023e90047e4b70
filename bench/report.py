"""The printed report: medians, ratios to the floor against the issue's targets, growth."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from bench.harness import Result, ratio

BACKEND_NAMES = {"postgres": "PostgreSQL", "sqlite": "SQLite (file)"}
_SIZE = re.compile(r" @([\d,]+)$")


def target(workload: str) -> tuple[str, float]:
    """("<=" or ">=", bound) for a workload's ratio to the floor."""
    if workload.startswith(("save", "append")):
        return "<=", 1.3
    if "tasks" in workload:
        return ">=", 0.8
    return "<=", 1.5


def _by_backend(results: list[Result]) -> dict[str, dict[str, dict[str, Result]]]:
    grouped: dict[str, dict[str, dict[str, Result]]] = defaultdict(lambda: defaultdict(dict))
    for r in results:
        grouped[r.backend][r.workload][r.side] = r
    return grouped


def ratios(results: list[Result]) -> dict[str, dict[str, dict[str, float]]]:
    """backend -> workload -> side -> ratio to the floor (for the JSON file)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for backend, rows in _by_backend(results).items():
        for workload, sides in rows.items():
            floor = sides.get("floor")
            if floor is None:
                continue
            out.setdefault(backend, {})[workload] = {
                side: round(ratio(r, floor), 3) for side, r in sides.items() if side != "floor"}
    return out


def _fmt(r: Result | None) -> str:
    if r is None:
        return "-"
    return f"{r.median:,.0f}/s" if r.unit == "ops/s" else f"{r.median:.3f}"


def _peer(result: Result | None, floor: Result | None) -> str:
    if result is None or floor is None:
        return _fmt(result)
    return f"{_fmt(result)} {ratio(result, floor):.1f}x"


def table(results: list[Result], imports: dict[str, Any], facts: dict[str, Any], elapsed: float) -> str:
    lines = [
        f"Machine: {facts['cpu_count']} CPUs ({facts['cpu']}), Python {facts['python']}, "
        f"PostgreSQL {facts['postgresql'] or '-'}, SQLite {facts['sqlite']}; "
        f"load average at the end {facts['load_average'][0]:.1f}; {elapsed:.0f} s",
        f"import threadstore: {imports['median_ms']:.1f} ms median, {imports['min_ms']:.1f} ms fastest "
        f"(target <= 100 ms; import msgspec alone: {imports['msgspec_median_ms']:.1f} ms median); "
        f"drivers imported: {'yes' if imports['drivers_imported'] else 'no'}",
    ]
    peers = sorted({r.side for r in results} - {"floor", "threadstore"})
    for backend, rows in _by_backend(results).items():
        title = BACKEND_NAMES.get(backend, backend)
        lines += ["", f"{title} — median ms (ops/s); ratio = threadstore / floor",
                  f"{'workload':40} {'floor':>10} {'threadstore':>12} {'ratio':>7} {'target':>8}  "
                  f"{'p95 floor':>10} {'p95 ts':>8}" + "".join(f" {p:>16}" for p in peers)]
        for workload, sides in rows.items():
            floor, ts = sides.get("floor"), sides.get("threadstore")
            if ts is None:
                continue
            op, bound = target(workload)
            if floor is None:
                shown, verdict = "-", ""
            else:
                value = ratio(ts, floor)
                ok = value <= bound if op == "<=" else value >= bound
                shown, verdict = f"{value:.2f}x", "" if ok else " MISS"
            p95s = (f"{floor.p95:>10.3f} {ts.p95:>8.3f}" if floor and ts.unit == "ms"
                    else f"{'':>10} {'':>8}")
            extra = "".join(f" {_peer(sides.get(p), floor):>16}" for p in peers)
            lines.append(f"{workload:40} {_fmt(floor):>10} {_fmt(ts):>12} {shown:>7} "
                         f"{op}{bound:.2f}x{verdict:5} {p95s}{extra}")
        lines += _append_growth(rows) + _store_growth(rows)
    return "\n".join(lines)


def _append_growth(rows: dict[str, dict[str, Result]]) -> list[str]:
    """An append to 10,000 messages over one to 10; the two run minutes apart, so the floor's own
    change is shown too, and the ratio of the two is what threadstore adds."""
    lines = []
    for how in ("save()", "append()"):
        small = rows.get(f"append 1 msg to 10: {how}", {})
        large = rows.get(f"append 1 msg to 10,000: {how}", {})
        if "threadstore" in small and "threadstore" in large and "floor" in small and "floor" in large:
            ts = large["threadstore"].median / small["threadstore"].median
            floor = large["floor"].median / small["floor"].median
            lines.append(f"  append to 10,000 vs to 10 via {how}: {ts:.2f}x (the floor's: {floor:.2f}x; "
                         f"threadstore's over the floor's: {ts / floor:.2f}x; target <= 1.20x)")
    return lines


def _store_growth(rows: dict[str, dict[str, Result]]) -> list[str]:
    """Cost at the largest store size over the cost at the smallest, per store-wide workload."""
    sized: dict[str, dict[int, dict[str, Result]]] = defaultdict(dict)
    for workload, sides in rows.items():
        match = _SIZE.search(workload)
        if match:
            sized[workload[: match.start()]][int(match.group(1).replace(",", ""))] = sides
    lines = []
    for name, by_size in sized.items():
        if len(by_size) < 2:
            continue
        low, high = min(by_size), max(by_size)
        parts = []
        for side in ("floor", "threadstore"):
            a, b = by_size[low].get(side), by_size[high].get(side)
            if a and b:
                parts.append(f"{side} {b.median / a.median:.2f}x")
        lines.append(f"  growth {name}, {low:,} -> {high:,} threads: {', '.join(parts)} "
                     "(target <= 1.50x)")
    return lines


def markdown(document: dict[str, Any]) -> str:
    """The README's table from a results file: ratios to the floor, both databases side by side."""
    rows: dict[str, dict[str, dict[str, float]]] = document["ratios"]
    backends = [b for b in ("postgres", "sqlite") if b in rows]
    workloads = list(dict.fromkeys(w for b in backends for w in rows[b]))
    peers = sorted({s for b in backends for w in rows[b].values() for s in w} - {"threadstore"})
    head = "| workload | target | " + " | ".join(BACKEND_NAMES[b] for b in backends)
    head += "".join(f" | {p} ({BACKEND_NAMES[b]})" for p in peers for b in backends
                    if any(p in rows[b][w] for w in rows[b])) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for workload in workloads:
        op, bound = target(workload)
        cells = [f"{rows[b][workload]['threadstore']:.2f}x" if workload in rows[b] else "-"
                 for b in backends]
        cells += [f"{rows[b][workload][p]:.2f}x" if p in rows[b].get(workload, {}) else "-"
                  for p in peers for b in backends if any(p in rows[b][w] for w in rows[b])]
        lines.append(f"| {workload} | {'≤' if op == '<=' else '≥'} {bound}x | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_growth(document: dict[str, Any]) -> str:
    """Cost at the largest store over cost at the smallest, per store-wide workload and side."""
    medians: dict[tuple[str, str, str], float] = {
        (r["backend"], r["workload"], r["side"]): r["median"] for r in document["results"]}
    sizes = sorted({int(m.group(1).replace(",", "")) for _, w, _ in medians if (m := _SIZE.search(w))})
    if len(sizes) < 2:
        return ""
    low, high = f"{sizes[0]:,}", f"{sizes[-1]:,}"
    names = list(dict.fromkeys(_SIZE.sub("", w) for _, w, _ in medians if _SIZE.search(w)))
    backends = [b for b in ("postgres", "sqlite") if any(k[0] == b for k in medians)]
    lines = [f"| {low} → {high} threads | " + " | ".join(
                 f"{BACKEND_NAMES[b]} threadstore | {BACKEND_NAMES[b]} floor" for b in backends) + " |",
             "|---|" + "---|" * (2 * len(backends))]
    for name in names:
        cells = []
        for backend in backends:
            for side in ("threadstore", "floor"):
                a = medians.get((backend, f"{name} @{low}", side))
                b = medians.get((backend, f"{name} @{high}", side))
                cells.append(f"{b / a:.2f}x" if a and b else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
