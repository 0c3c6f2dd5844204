"""Charts and the dependency graph as SVG text, drawn here (no library, nothing fetched).

Every text that comes from a project (node names, cyctimes) is escaped; colours are classes
(``state-failed``), styled by ``static/app.css``, so the page's Content-Security-Policy needs no
inline style.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

__all__ = ["Bar", "bar_chart", "dependency_graph", "nice_max"]


@dataclass(frozen=True)
class Bar:
    label: str  # shown under the first and last bar, and in the tooltip
    value: float
    state: str  # its colour: the instance's state
    href: str | None = None


def nice_max(v: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above ``v`` (an axis top)."""
    if v <= 0:
        return 1.0
    p = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * p:
            return m * p
    return 10 * p


def _num(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:,.1f}".rstrip("0").rstrip(".")
    return f"{v:,.2f}".rstrip("0").rstrip(".") or "0"


def bar_chart(
    title: str, unit: str, bars: list[Bar], *, width: int = 720, height: int = 200
) -> str:
    """One bar per instance, oldest left; the y axis from 0 to a round number."""
    left, right, top, bottom = 64, 12, 24, 36
    pw, ph = width - left - right, height - top - bottom
    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text class="chart-title" x="{left}" y="16">{escape(title)}</text>',
    ]
    if not bars:
        out.append(
            f'<text class="chart-empty" x="{left + pw / 2}" y="{top + ph / 2}" '
            'text-anchor="middle">no finished runs yet</text></svg>'
        )
        return "".join(out)
    top_v = nice_max(max(b.value for b in bars))
    for frac in (0, 0.5, 1):
        y = top + ph - frac * ph
        out.append(
            f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(_num(top_v * frac))}</text>"
        )
    out.append(
        f'<text class="axis" x="14" y="{top + ph / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + ph / 2:.1f})">{escape(unit)}</text>'
    )
    step = pw / len(bars)
    gap = min(2.0, step * 0.2)
    for i, b in enumerate(bars):
        h = max(0.0, b.value) / top_v * ph
        x = left + i * step + gap / 2
        rect = (
            f'<rect class="bar state-{escape(b.state)}" x="{x:.2f}" y="{top + ph - h:.2f}" '
            f'width="{max(step - gap, 0.5):.2f}" height="{max(h, 0.5):.2f}">'
            f"<title>{escape(b.label)}: {escape(_num(b.value))} {escape(unit)} "
            f"({escape(b.state)})</title></rect>"
        )
        out.append(f'<a href="{escape(b.href)}">{rect}</a>' if b.href else rect)
    out.append(
        f'<text class="axis" x="{left}" y="{height - 12}">{escape(bars[0].label)}</text>'
        f'<text class="axis" x="{left + pw}" y="{height - 12}" text-anchor="end">'
        f"{escape(bars[-1].label)}</text></svg>"
    )
    return "".join(out)


def _layers(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Each node's column: the length of the longest upstream chain before it."""
    ups: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        if a in ups and b in ups:
            ups[b].append(a)
    depth: dict[str, int] = {}

    def visit(n: str, seen: frozenset[str]) -> int:
        if n in depth:
            return depth[n]
        if n in seen:  # a cycle (the project refuses them): stop here
            return 0
        d = 1 + max((visit(u, seen | {n}) for u in ups[n]), default=-1)
        depth[n] = d
        return d

    for n in nodes:
        visit(n, frozenset())
    return depth


def dependency_graph(
    nodes: list[tuple[str, str, bool]], edges: list[tuple[str, str]], href: str = "/nodes/"
) -> str:
    """Nodes (name, last state, paused) in columns by depth, upstream left; an arrow per edge."""
    if not nodes:
        return '<p class="muted">no nodes</p>'
    names = [n for n, _, _ in nodes]
    depth = _layers(names, edges)
    cols: dict[int, list[str]] = {}
    for n in names:
        cols.setdefault(depth[n], []).append(n)
    bw, bh, gx, gy, pad = 168, 30, 64, 14, 8
    pos: dict[str, tuple[float, float]] = {}
    for c, members in cols.items():
        for r, n in enumerate(members):
            pos[n] = (pad + c * (bw + gx), pad + r * (bh + gy))
    width = pad * 2 + (max(cols) + 1) * (bw + gx) - gx
    height = pad * 2 + max(len(m) for m in cols.values()) * (bh + gy) - gy
    out = [
        f'<svg class="graph" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" aria-label="Dependency graph of the nodes" xmlns="http://www.w3.org/2000/svg">',
        "<title>Dependency graph of the nodes</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'class="arrow"/></marker></defs>',
    ]
    for a, b in edges:
        if a not in pos or b not in pos:
            continue
        (x1, y1), (x2, y2) = pos[a], pos[b]
        sx, sy, ex, ey = x1 + bw, y1 + bh / 2, x2, y2 + bh / 2
        mid = (sx + ex) / 2
        out.append(
            f'<path class="edge" d="M {sx:.1f} {sy:.1f} C {mid:.1f} {sy:.1f}, {mid:.1f} '
            f'{ey:.1f}, {ex:.1f} {ey:.1f}" marker-end="url(#arrow)"/>'
        )
    for name, state, paused in nodes:
        x, y = pos[name]
        label = name if len(name) <= 22 else name[:21] + "…"
        out.append(
            f'<a href="{escape(href + name)}"><g class="gnode state-{escape(state or "none")}'
            f'{" paused" if paused else ""}"><title>{escape(name)}: {escape(state or "no runs")}'
            f"{', paused' if paused else ''}</title>"
            f'<rect x="{x}" y="{y}" width="{bw}" height="{bh}" rx="5"/>'
            f'<text x="{x + 10}" y="{y + bh / 2 + 4}">{escape(label)}'
            f"{' ⏸' if paused else ''}</text></g></a>"
        )
    out.append("</svg>")
    return "".join(out)
