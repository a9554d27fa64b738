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


def to_png(statuses: list[StageStatus], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    depth = layers(statuses)
    rows: dict[int, int] = {}
    pos = {}
    for s in statuses:
        d = depth[s.stage]
        pos[s.stage] = (d, -rows.get(d, 0))
        rows[d] = rows.get(d, 0) + 1
    width = max(depth.values(), default=0) + 1
    fig, ax = plt.subplots(figsize=(2.6 * width + 1, 1.4 * max(rows.values(), default=1) + 1))
    for a, b in edges(statuses):
        (x0, y0), (x1, y1) = pos[a], pos[b]
        ax.annotate("", xy=(x1 - 0.38, y1), xytext=(x0 + 0.38, y0),
                    arrowprops=dict(arrowstyle="->", color="#555"))
    for s in statuses:
        x, y = pos[s.stage]
        ax.text(x, y, f"{s.stage}\n{s.version}\n{s.state}", ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round", fc=COLORS[s.state], ec="#333"))
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(-max(rows.values(), default=1) + 0.4, 0.6)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
