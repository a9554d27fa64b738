"""The stage DAG of a root task as Mermaid, Graphviz dot, or a PNG drawn with matplotlib."""
from __future__ import annotations

from .lineage import StageStatus

COLORS = {"fresh": "#b7e1b0", "stale": "#f6d58e", "missing": "#e0e0e0", "cutoff?": "#cfe2f3"}


def css_class(state: str) -> str:
    return state.rstrip("?")


def edges(statuses: list[StageStatus]) -> list[tuple[str, str]]:
    return [(u, s.stage) for s in statuses for u in s.upstream]


def to_mermaid(statuses: list[StageStatus]) -> str:
    lines = ["graph LR"]
    for s in statuses:
        lines.append(f'  {s.stage}["{s.stage}<br/>{s.version} · {s.state}"]:::{css_class(s.state)}')
    for a, b in edges(statuses):
        lines.append(f"  {a} --> {b}")
    for state, color in COLORS.items():
        lines.append(f"  classDef {css_class(state)} fill:{color}")
    return "\n".join(lines)


def to_dot(statuses: list[StageStatus]) -> str:
    lines = ["digraph deeprecipe {", "  rankdir=LR;", "  node [shape=box, style=filled];"]
    for s in statuses:
        lines.append(f'  {s.stage} [label="{s.stage}\\n{s.version}\\n{s.state}", '
                     f'fillcolor="{COLORS[s.state]}"];')
    for a, b in edges(statuses):
        lines.append(f"  {a} -> {b};")
    lines.append("}")
    return "\n".join(lines)


def layers(statuses: list[StageStatus]) -> dict[str, int]:
    """Longest-path depth of each stage (statuses come upstream first)."""
    depth: dict[str, int] = {}
    for s in statuses:
        depth[s.stage] = 1 + max((depth[u] for u in s.upstream), default=-1)
    return depth


BOX_W, BOX_H = 0.86, 0.5
"""A node's box in the PNG, in layout units (one unit per stage in a layer, one per layer)."""
LANE_W = 0.3
"""Width of the lane a long edge takes in each layer it crosses."""


def png_layout(statuses: list[StageStatus]) -> tuple[dict[str, tuple[float, float]],
                                                     dict[tuple[str, str], list[tuple[float, float]]]]:
    """Top-down layout: ({stage: centre (x, y) of its box}, {(upstream, stage): the edge's
    points}). Layer d (longest path from a source) sits at y = -d. An edge across several
    layers gets a lane of its own in each layer between (a point at y = -d), so it passes
    between boxes instead of through them (as Sugiyama layouts and Graphviz do). In each layer
    stages and lanes are ordered by the mean x of what feeds them (fewer crossings) and the
    layer is centred. An edge leaves the bottom of its upstream's box and ends on the top of its
    stage's box, edges sharing a side spread along it."""
    depth = layers(statuses)
    by_layer: dict[int, list] = {}
    feeds: dict = {}
    chains: dict[tuple[str, str], list] = {}
    for s in statuses:
        by_layer.setdefault(depth[s.stage], []).append(s.stage)
        feeds.setdefault(s.stage, [])
    for a, b in edges(statuses):
        prev, chain = a, []
        for d in range(depth[a] + 1, depth[b]):
            lane = ("lane", a, b, d)
            by_layer[d].append(lane)
            feeds[lane] = [prev]
            chain.append(lane)
            prev = lane
        feeds[b].append(prev)
        chains[(a, b)] = chain
    size = lambda n: LANE_W if isinstance(n, tuple) else 1.0  # noqa: E731
    widest = max((sum(map(size, v)) for v in by_layer.values()), default=1.0)
    at: dict = {}
    for d in sorted(by_layer):
        items = by_layer[d]
        first = {n: i for i, n in enumerate(items)}
        items = sorted(items, key=lambda n: (sum(at[f][0] for f in feeds[n]) / len(feeds[n])
                                             if feeds[n] else 0.0, first[n]))
        x = (widest - sum(map(size, items))) / 2
        for n in items:
            at[n] = (x + size(n) / 2, -float(d))
            x += size(n)
    pos = {n: p for n, p in at.items() if not isinstance(n, tuple)}
    outs: dict[str, list] = {n: [] for n in pos}
    ins: dict[str, list] = {n: [] for n in pos}
    for (a, b), chain in chains.items():
        outs[a].append(((chain or [b])[0], b))
        ins[b].append(((chain or [a])[-1], a))

    def port(slots: list, key, x: float) -> float:
        slots = sorted(slots, key=lambda s: at[s[0]][0])
        k = len(slots)
        i = [s for s in slots].index(key)
        return x + (i + 0.5 - k / 2) * min(0.12, 0.8 * BOX_W / k)

    routes = {}
    for (a, b), chain in chains.items():
        (x0, y0), (x1, y1) = pos[a], pos[b]
        start = (port(outs[a], ((chain or [b])[0], b), x0), y0 - BOX_H / 2)
        end = (port(ins[b], ((chain or [a])[-1], a), x1), y1 + BOX_H / 2)
        mid = [pt for lane in chain for pt in ((at[lane][0], at[lane][1] + BOX_H / 2),
                                                (at[lane][0], at[lane][1] - BOX_H / 2))]
        routes[(a, b)] = [start, *mid, end]
    return pos, routes


def to_png(statuses: list[StageStatus], path: str) -> dict[str, tuple[float, float]]:
    """The DAG drawn top-down (`png_layout`), a box per stage coloured by its state, each edge
    from the bottom of its upstream's box to the top of its stage's box. Returns the boxes'
    centres."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    pos, routes = png_layout(statuses)
    pts = [p for r in routes.values() for p in r] + list(pos.values()) or [(0.0, 0.0)]
    x_lo, x_hi = min(x for x, _ in pts) - 0.5, max(x for x, _ in pts) + 0.5
    y_lo, y_hi = min(y for _, y in pts) - 0.4, max(y for _, y in pts) + 0.4
    fig = Figure(figsize=(1.9 * (x_hi - x_lo), 1.0 * (y_hi - y_lo)))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.axis("off")
    for route in routes.values():
        if len(route) > 2:
            ax.plot([x for x, _ in route[:-1]], [y for _, y in route[:-1]], color="#555", lw=0.9,
                    zorder=1, solid_joinstyle="round")
        ax.add_patch(FancyArrowPatch(route[-2], route[-1], arrowstyle="-|>", mutation_scale=10,
                                     color="#555", lw=0.9, shrinkA=0, shrinkB=0, zorder=1))
    for s in statuses:
        x, y = pos[s.stage]
        ax.add_patch(FancyBboxPatch((x - BOX_W / 2, y - BOX_H / 2), BOX_W, BOX_H,
                                    boxstyle="round,pad=0,rounding_size=0.06",
                                    fc=COLORS.get(s.state, "#ffffff"), ec="#333", zorder=2))
        ax.text(x, y, f"{s.stage}\n{s.version}\n{s.state}", ha="center", va="center",
                fontsize=7.5, zorder=3)
    fig.savefig(path, dpi=100)
    return pos
