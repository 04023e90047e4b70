"""The printed report and the Markdown tables: medians, ratios to the floors, targets, growth.

Targets are against the minimal floor (issue 14) where a workload has one; the searches, lookups
and statistics have only the same-schema floor and keep their targets against it. A peer's
ratios use the medians of the call it ran in (its ``paired`` threadstore and minimal floor).
Every table is built from the results rows, so a results file of the earlier format (no
minimal floor, no ``format`` field) still renders, with ratios to the same-schema floor.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from bench.harness import Result, cpu_ratio, ratio

FORMAT = 2  # results file: 2 adds the minimal floor, peers' paired medians, ratios per reference
BACKEND_NAMES = {"postgres": "PostgreSQL", "sqlite": "SQLite (file)"}
SIDE_NAMES = {"minimal": "minimal floor", "floor": "same-schema floor"}
REFERENCES = ("minimal", "floor")
MAIN = ("threadstore", *REFERENCES)
_SIZE = re.compile(r" @([\d,]+)$")

Grouped = dict[str, dict[str, dict[str, Result]]]  # backend -> workload -> side -> result


def target(workload: str) -> tuple[str, float]:
    """("<=" or ">=", bound) for threadstore's ratio to the workload's reference floor."""
    if workload.startswith(("save", "append", "get thread", "get(last", "list 20", "list_threads", "last ")):
        return "<=", 1.3  # issue 28: reads as writes
    if "tasks" in workload:
        return ">=", 0.8
    return "<=", 1.5


def reference(sides: dict[str, Result]) -> str | None:
    """The floor a workload's target is measured against: the minimal one where it ran."""
    return next((r for r in REFERENCES if r in sides), None)


def met(workload: str, value: float) -> bool:
    op, bound = target(workload)
    return value <= bound if op == "<=" else value >= bound


def load(document: dict[str, Any]) -> list[Result]:
    """A results file's rows as Results (extra keys such as ``paired`` kept)."""
    fields = ("workload", "backend", "side", "unit", "median", "p95", "samples")
    return [
        Result(*(row[f] for f in fields), extra={k: v for k, v in row.items() if k not in fields})
        for row in document["results"]
    ]


def group(results: list[Result]) -> Grouped:
    grouped: Grouped = defaultdict(lambda: defaultdict(dict))
    for r in results:
        grouped[r.backend][r.workload][r.side] = r
    return grouped


def peers_of(results: list[Result]) -> list[str]:
    return sorted({r.side for r in results} - set(MAIN))


def peer_ratio(peer: Result, side: str, sides: dict[str, Result]) -> float | None:
    """The peer's median over ``side``'s (threadstore or minimal) in the peer's own call; files of
    the earlier format have no such call: there, over the main call's median of ``side``."""
    paired = peer.extra.get("paired", {})
    if side in paired:
        return float(peer.median / paired[side])
    return ratio(peer, sides[side]) if side in sides else None


def ratios(results: list[Result]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """backend -> workload -> side -> reference -> the side's median over the reference's (for
    the JSON file). threadstore and the minimal floor: over each floor that ran; a peer: over the
    minimal floor and over threadstore of its own call."""
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for backend, rows in group(results).items():
        for workload, sides in rows.items():
            entry: dict[str, dict[str, float]] = {}
            for side, r in sides.items():
                if side in MAIN:
                    against = {
                        ref: round(ratio(r, sides[ref]), 3)
                        for ref in REFERENCES
                        if ref in sides and ref != side
                    }
                else:
                    against = {
                        ref: round(value, 3)
                        for ref in ("minimal", "threadstore")
                        if (value := peer_ratio(r, ref, sides)) is not None
                    }
                if against:
                    entry[side] = against
            if entry:
                out.setdefault(backend, {})[workload] = entry
    return out


def _fmt(r: Result | None) -> str:
    if r is None:
        return "-"
    return f"{r.median:,.0f}/s" if r.unit == "ops/s" else f"{r.median:.3f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def row_cells(workload: str, sides: dict[str, Result], peers: list[str]) -> dict[str, str]:
    """One workload's cells, shared by the printed table and the Markdown one."""
    ts, ref = sides.get("threadstore"), reference(sides)
    op, bound = target(workload)
    cells = {
        "workload": workload,
        "threadstore": _fmt(ts),
        "minimal": _fmt(sides.get("minimal")),
        "floor": _fmt(sides.get("floor")),
        "vs minimal": _x(ratio(ts, sides["minimal"])) if ts and "minimal" in sides else "-",
        "target": "-"
        if ref is None
        else f"{op} {bound:.1f}x" + ("" if ref == "minimal" else " (same-schema)"),
        "met": "-",
        "vs same-schema": _x(ratio(ts, sides["floor"])) if ts and "floor" in sides else "-",
        "cpu ts": f"{ts.extra['cpu_us']:.0f}" if ts and "cpu_us" in ts.extra else "-",
        "cpu vs ref": _x(cpu_ratio(ts, sides[ref])) if ts and ref else "-",
        "p95 ts": f"{ts.p95:.3f}" if ts and ts.unit == "ms" else "-",
        "p95 minimal": f"{sides['minimal'].p95:.3f}"
        if "minimal" in sides and ts and ts.unit == "ms"
        else "-",
    }
    if ts and ref:
        cells["met"] = "yes" if met(workload, ratio(ts, sides[ref])) else "MISSED"
    for peer in peers:
        r = sides.get(peer)
        cells[peer] = _fmt(r)
        cells[f"{peer} vs minimal"] = _x(peer_ratio(r, "minimal", sides)) if r else "-"
        over_ts = peer_ratio(r, "threadstore", sides) if r else None
        cells[f"threadstore vs {peer}"] = _x(1 / over_ts) if over_ts else "-"
    return cells


def header(peers: list[str]) -> list[str]:
    return [
        "workload",
        "threadstore",
        "minimal",
        "floor",
        "vs minimal",
        "target",
        "met",
        "vs same-schema",
        "cpu ts",
        "cpu vs ref",
        "p95 ts",
        "p95 minimal",
        *[c for p in peers for c in (p, f"{p} vs minimal", f"threadstore vs {p}")],
    ]


_TITLES = {
    "minimal": "minimal floor",
    "floor": "same-schema",
    "met": "met?",
    "cpu ts": "cpu us",
    "cpu vs ref": "cpu / ref",
}


def table(results: list[Result], imports: dict[str, Any], facts: dict[str, Any], elapsed: float) -> str:
    lines = [
        f"Machine: {facts['cpu_count']} CPUs ({facts['cpu']}), Python {facts['python']}, "
        f"PostgreSQL {facts['postgresql'] or '-'}, SQLite {facts['sqlite']}; "
        f"load average at the end {facts['load_average'][0]:.1f}; {elapsed:.0f} s",
        f"import threadstore: {imports['median_ms']:.1f} ms median, {imports['min_ms']:.1f} ms fastest "
        f"(target <= 100 ms; import msgspec alone: {imports['msgspec_median_ms']:.1f} ms median); "
        f"drivers imported: {'yes' if imports['drivers_imported'] else 'no'}",
    ]
    peers = peers_of(results)
    for backend, rows in group(results).items():
        present = [p for p in peers if any(p in sides for sides in rows.values())]
        columns = header(present)
        rendered = [
            [
                _TITLES.get(c, c.replace("threadstore vs ", "ts / ").replace(" vs minimal", " / min"))
                for c in columns
            ]
        ]
        rendered += [
            [row_cells(w, sides, present)[c] for c in columns]
            for w, sides in rows.items()
            if "threadstore" in sides
        ]
        widths = [max(len(r[i]) for r in rendered) for i in range(len(columns))]
        lines += [
            "",
            f"{BACKEND_NAMES.get(backend, backend)} — median ms (ops/s); vs = threadstore's "
            "median over the other's (ops/s: over the other's ops/s); targets vs the minimal floor",
        ]
        for r in rendered:
            lines.append(
                "  ".join(
                    cell.ljust(w) if i == 0 else cell.rjust(w)
                    for i, (cell, w) in enumerate(zip(r, widths, strict=True))
                )
            )
        lines += [f"  {line}" for line in append_growth(rows)]
        lines += [
            f"  growth {name}, {low:,} -> {high:,} threads: "
            + ", ".join(f"{SIDE_NAMES.get(s, s)} {v:.2f}x" for s, v in values.items())
            for name, low, high, values in store_growth(rows)
        ]
    return "\n".join(lines)


def append_growth(rows: dict[str, dict[str, Result]]) -> list[str]:
    """An append to 10,000 messages over one to 10 (target <= 1.2x). The two run minutes apart, so
    the minimal floor's own change is shown too; threadstore's over the floor's is what it adds."""
    lines = []
    for how in ("save()", "append()"):
        small = rows.get(f"append 1 msg to 10: {how}", {})
        large = rows.get(f"append 1 msg to 10,000: {how}", {})
        ref = reference(small)
        if "threadstore" in small and "threadstore" in large and ref and ref in large:
            ts = large["threadstore"].median / small["threadstore"].median
            floor = large[ref].median / small[ref].median
            verdict = "met" if ts <= 1.2 else "MISSED"
            lines.append(
                f"append to 10,000 vs to 10 via {how}: threadstore {ts:.2f}x (target <= 1.20x, "
                f"{verdict}); the {SIDE_NAMES[ref]}'s {floor:.2f}x; threadstore's over the "
                f"floor's {ts / floor:.2f}x"
            )
    return lines


def store_growth(rows: dict[str, dict[str, Result]]) -> list[tuple[str, int, int, dict[str, float]]]:
    """(workload, smallest store, largest store, side -> cost at the largest over the smallest)."""
    sized: dict[str, dict[int, dict[str, Result]]] = defaultdict(dict)
    for workload, sides in rows.items():
        match = _SIZE.search(workload)
        if match:
            sized[workload[: match.start()]][int(match.group(1).replace(",", ""))] = sides
    out = []
    for name, by_size in sized.items():
        if len(by_size) < 2:
            continue
        low, high = min(by_size), max(by_size)
        values = {
            side: by_size[high][side].median / by_size[low][side].median
            for side in MAIN
            if side in by_size[low] and side in by_size[high]
        }
        out.append((name, low, high, values))
    return out


# -- Markdown ---------------------------------------------------------------------------------------

_MD_TITLES = {
    "threadstore": "threadstore ms",
    "minimal": "minimal floor ms",
    "floor": "same-schema floor ms",
    "vs minimal": "threadstore / minimal",
    "vs same-schema": "threadstore / same-schema",
    "met": "met?",
    "cpu ts": "threadstore CPU us/op",
    "cpu vs ref": "CPU / reference floor",
    "p95 ts": "p95 threadstore",
    "p95 minimal": "p95 minimal",
}


def _md_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def markdown(document: dict[str, Any]) -> str:
    """The full tables of a results file: one per database, then the growth tables."""
    results = load(document)
    peers = peers_of(results)
    parts = []
    for backend, rows in group(results).items():
        present = [p for p in peers if any(p in sides for sides in rows.values())]
        columns = [c for c in header(present) if not c.startswith("p95")]
        body = [
            [row_cells(w, sides, present)[c] for c in columns]
            for w, sides in rows.items()
            if "threadstore" in sides
        ]
        head = [
            _MD_TITLES.get(c) or (f"{c} ms" if c in present else c.replace(" vs ", " / ")) for c in columns
        ]
        parts.append(f"### {BACKEND_NAMES.get(backend, backend)}\n\n{_md_table(head, body)}")
        growth = append_growth(rows)
        if growth:
            parts.append("\n".join(f"- {line}" for line in growth))
    store = markdown_growth(document)
    if store:
        parts.append(
            "### Store growth\n\nCost on the largest store over the cost on the smallest "
            "(1.00x: flat; target <= 1.5x).\n\n" + store
        )
    return "\n\n".join(parts)


def markdown_growth(document: dict[str, Any]) -> str:
    grouped = group(load(document))
    body, sizes = [], ""
    sides = [(b, s) for b in grouped for s in MAIN]
    used: set[tuple[str, str]] = set()
    table: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    for backend, rows in grouped.items():
        for name, low, high, values in store_growth(rows):
            sizes = f"{low:,} → {high:,} threads"
            for side, value in values.items():
                table[name][(backend, side)] = value
                used.add((backend, side))
    if not table:
        return ""
    sides = [key for key in sides if key in used]
    for name, values in table.items():
        body.append([name, *[_x(values.get(key)) for key in sides]])
    head = [sizes, *[f"{BACKEND_NAMES.get(b, b)} {SIDE_NAMES.get(s, s)}" for b, s in sides]]
    return _md_table(head, body)


HEADLINE = re.compile(r"^(save|append|get thread|list 20|\d+ tasks)")


def markdown_headline(document: dict[str, Any]) -> str:
    """The README's short table: the headline workloads, threadstore against the minimal floor on
    each database (target met or missed) and against langchain-postgres."""
    grouped = group(load(document))
    backends = [b for b in ("postgres", "sqlite") if b in grouped]
    workloads = list(dict.fromkeys(w for b in backends for w in grouped[b] if HEADLINE.match(w)))
    lc = "langchain-pg"
    has_lc = any(lc in sides for b in backends for sides in grouped[b].values())
    head = ["workload", "target", *[f"{BACKEND_NAMES[b]}" for b in backends]]
    if has_lc:
        head.append("threadstore / langchain-postgres")
    body = []
    for workload in workloads:
        op, bound = target(workload)
        cells = [workload, f"{'≤' if op == '<=' else '≥'} {bound}x"]
        for backend in backends:
            sides = grouped[backend].get(workload, {})
            ts, ref = sides.get("threadstore"), reference(sides)
            if ts is None or ref is None:
                cells.append("-")
                continue
            value, cpu = ratio(ts, sides[ref]), cpu_ratio(ts, sides[ref])
            cells.append(
                f"{value:.2f}x"
                + ("" if met(workload, value) else " (missed)")
                + ("" if cpu is None else f", CPU {cpu:.2f}x")
            )
        if has_lc:
            peer = grouped.get("postgres", {}).get(workload, {}).get(lc)
            over = peer_ratio(peer, "threadstore", grouped["postgres"][workload]) if peer else None
            cells.append(_x(1 / over) if over else "-")
        body.append(cells)
    return _md_table(head, body)
