"""Reports and plots of the recipe's stages (no Luigi; workflows call these):

- metric summaries a stage's manifest records: `loss_summary` (SFT, reward model),
  `grpo_summary` (GRPO), `format_onset` (when R1-Zero's format emerged);
- `training_check`: did a training stage update its model at all, and if not, why (all steps
  without an informative group, zero gradient norm, or skipped as gradient spikes);
- per-stage metric plots: `plot_series` (SFT, GRPO, reward model metrics.png: a grid of panels,
  at most 3 a row) and `plot_pretrain_metrics` (pretraining's 2x2 metrics.png);
- the evaluation report: `paired_differences`, `write_report` (report.md, results.json,
  pass_at_1.png, response_length.png, rl_curves.png).

matplotlib is imported inside the plot functions, so importing this module stays cheap (the
workflows import it while reading the DAG)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Sequence

# ----------------------------------------------------------------------------- metric summaries


def loss_summary(rows: list[dict]) -> dict:
    """Steps and the mean loss of the first and last tenth of an SFT / reward-model run."""
    k = max(1, len(rows) // 10)
    return {"steps": len(rows), "loss_first": sum(r["loss"] for r in rows[:k]) / k,
            "loss_last": sum(r["loss"] for r in rows[-k:]) / k}


def grpo_summary(rows: list[dict]) -> dict:
    """First/last-quarter means of the per-step GRPO metrics, plus every step's row."""
    q = max(1, len(rows) // 4)
    keys = [k for k in rows[0] if isinstance(rows[0][k], float)]
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    return {"steps": len(rows), **{f"{k}_first": mean(rows[:q], k) for k in keys},
            **{f"{k}_last": mean(rows[-q:], k) for k in keys},
            "reward_distinct_values": len({round(r["reward"], 6) for r in rows}),
            "ref_resets": sum(bool(r["ref_reset"]) for r in rows), "per_step": rows}


def format_onset(rows: list[dict], level: float = 0.5) -> int | None:
    """The step of the first GRPO step whose format reward reaches `level` (R1-Zero: when the
    format emerged); None if none did."""
    return next((r["step"] for r in rows if r["reward_format"] >= level), None)


def training_check(metrics: Mapping) -> dict | None:
    """Whether a training stage's run updated its model, from its manifest's metrics.

    GRPO (metrics with 'per_step'): a step updates the policy unless it had no informative
    group (every group's rewards equal: zero advantages; 'update_rows' 0 where groups are
    skipped), a zero gradient norm, or its update was skipped as a gradient spike. SFT / reward
    model (metrics with 'steps'): no steps (no example fit the budget) means no update.
    Returns None for metrics of neither kind (e.g. pretraining or data stages: not checked), else
    {'trained': bool, 'steps': N, 'updated_steps': n, 'reason': str} where reason says why
    nothing trained ('' when it did)."""
    rows = metrics.get("per_step")
    if rows is None:
        if "steps" not in metrics or "loss_first" not in metrics:
            return None
        steps = int(metrics["steps"] or 0)
        reason = "" if steps else (f"no optimiser step (examples: {metrics.get('examples', 0)}: "
                                   "none fit the response budget)")
        return {"trained": steps > 0, "steps": steps, "updated_steps": steps, "reason": reason}
    if not rows:
        return {"trained": False, "steps": 0, "updated_steps": 0, "reason": "no GRPO step"}
    uninformative = [r for r in rows if r.get("informative_groups", 1.0) == 0.0
                     or r.get("update_rows", 1) == 0]
    zero_grad = [r for r in rows if r.get("grad_norm", 1.0) == 0.0]
    skipped = [r for r in rows if r.get("skipped", 0)]
    idle = {r["step"] for r in uninformative + zero_grad + skipped}
    updated = len(rows) - len(idle)
    if updated:
        return {"trained": True, "steps": len(rows), "updated_steps": updated, "reason": ""}
    n = len(rows)
    why = []
    rewards = sorted({round(float(r.get("reward", 0.0)), 6) for r in rows})
    if len(rewards) == 1:
        why.append(f"reward {rewards[0]:g} at every step")
    if uninformative:
        why.append(f"no informative group (all of a prompt's samples scored alike, so every "
                   f"advantage is 0) in {len(uninformative)} of {n} steps")
    if zero_grad:
        why.append(f"gradient norm 0 in {len(zero_grad)} of {n} steps")
    if skipped:
        why.append(f"update skipped as a gradient spike in {len(skipped)} of {n} steps")
    return {"trained": False, "steps": n, "updated_steps": 0,
            "reason": f"none of its {n} GRPO steps updated the policy: " + "; ".join(why)}


# ----------------------------------------------------------------------------- metric plots
# Each plot function writes its PNG and returns the matplotlib Figure (tests read its axes).


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), tight_layout=True)
    FigureCanvasAgg(fig)
    return fig


def plot_series(rows: Sequence[Mapping], keys: Sequence[str], png_path: str | Path,
                title: str = "", ncols: int = 3):
    """One panel per key (x = 'step'), at most `ncols` a row; keys missing from the rows are
    skipped. Up to `ncols` keys draw one row, as before the grid (same bytes)."""
    keys = [k for k in keys if rows and k in rows[0]]
    cols = max(1, min(ncols, len(keys)))
    nrows = max(1, -(-len(keys) // cols))
    fig = _figure(4 * cols, 3.2 * nrows)
    axes = fig.subplots(nrows, cols, squeeze=False).flat
    steps = [r.get("step", i) for i, r in enumerate(rows)]
    for i, ax in enumerate(axes):
        if i >= len(keys):
            if keys:  # no keys: one empty panel, as before
                ax.set_axis_off()
            continue
        key = keys[i]
        ax.plot(steps, [r[key] for r in rows])
        ax.set_title(f"{title} {key}".strip())
        ax.set_xlabel("step")
    fig.savefig(str(png_path), dpi=80)
    return fig


def plot_pretrain_metrics(rows: list[dict], png_path: str | Path):
    """2x2 PNG: loss (total, lm), lr, grad norm, expert load max/mean per MoE layer."""
    fig = _figure(11, 7)
    ax = fig.subplots(2, 2)
    steps = [r["step"] for r in rows]
    ax[0, 0].plot(steps, [r["loss"] for r in rows], label="total")
    ax[0, 0].plot(steps, [r["lm"] for r in rows], label="lm", alpha=0.7)
    ax[0, 0].set_title("loss")
    ax[0, 0].legend()
    ax[0, 1].plot(steps, [r["lr"] for r in rows])
    ax[0, 1].set_title("learning rate")
    ax[1, 0].plot(steps, [r["grad_norm"] for r in rows])
    ax[1, 0].set_title("grad norm (pre-clip)")
    layers = [d["layer"] for d in rows[0]["expert_load"]] if rows else []
    for i, name in enumerate(layers):
        ax[1, 1].plot(steps, [r["expert_load"][i]["max_over_mean"] for r in rows], label=name)
    ax[1, 1].set_title("expert load max / mean")
    if layers:
        ax[1, 1].legend(fontsize=7)
    for a in ax.flat:
        a.set_xlabel("step")
    fig.savefig(str(png_path), dpi=90)
    return fig


# ----------------------------------------------------------------------------- evaluation report

COMPARISONS = (("grpo", "cold_start"), ("final", "cold_start"), ("grpo_zero", "base"),
               ("student", "student_rl"), ("student", "grpo"))
"""(a, b) pairs of evaluated models whose pass@1 difference the report gives with its error."""

RL_CURVE_KEYS = ("reward", "kl", "response_len", "grad_norm")
"""The GRPO metrics rl_curves.png draws: one column each, one row per RL model."""


def paired_differences(results: dict, k: int) -> dict:
    """{'a - b': {'difference', 'stderr', 'within_2se'}} for the COMPARISONS present in
    results: paired over the same held-out problems (`stages.r1.evaluate.paired_pass_difference`);
    within_2se: |difference| <= 2 stderr, indistinguishable from no difference."""
    from deeprecipe.stages.r1.evaluate import paired_pass_difference
    out = {}
    for a, b in COMPARISONS:
        if a in results and b in results:
            d, se = paired_pass_difference(results[a]["correct_per_problem"],
                                           results[b]["correct_per_problem"], k)
            out[f"{a} - {b}"] = {"difference": d, "stderr": se, "within_2se": abs(d) <= 2 * se}
    return out


def untrained_models(results: Mapping) -> dict[str, str]:
    """{model: reason} of the evaluated models whose `training_check` (results[m]['training'])
    says their stage never updated them."""
    return {n: r["training"]["reason"] for n, r in results.items()
            if r.get("training") and not r["training"]["trained"]}


def write_report(results: dict, diffs: dict, curves: dict, problems: list, p: dict,
                 out: Path) -> None:
    """report.md + pass_at_1.png + response_length.png + rl_curves.png + results.json;
    diffs: `paired_differences` of results; a model's results[m]['training'] (if set) is its
    stage's `training_check`: the report names the models that did not train and why."""
    names = list(results)
    untrained = untrained_models(results)
    lines = ["# R1 pipeline evaluation", "",
             f"{len(problems)} held-out problems, k = {p['k']} samples each at temperature "
             f"{p['temperature']}, top-p {p['top_p']}, at most {p['max_new_tokens']} new tokens. "
             "pass@1 = mean over problems of (correct samples / k); s.e. = its standard error "
             "over problems (sampling of problems and samples, not of training runs).", ""]
    if untrained:
        lines += ["## Models that did not train", "",
                  "Their training stage ran but never updated the model, so they are their "
                  "starting model under another name: read their rows as that model's, not as "
                  "the effect of their training.", ""]
        lines += [f"- **{n}** ({results[n]['stage']} {results[n]['version']}): {why}"
                  for n, why in untrained.items()]
        lines.append("")
    lines += ["| model | stage | version | prompt | params | pass@1 | s.e. | format rate | "
              "mean response tokens | finished | trained |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        r = results[n]
        tr = r.get("training")
        trained = "-" if not tr else ("yes" if tr["trained"] else "**no** (see above)")
        lines.append(f"| {n} | {r['stage']} | {r['version']} | {r['prompt_style']} | "
                     f"{r['params']:,} | {r['pass@1']:.3f} | {r['pass@1_stderr']:.3f} | "
                     f"{r['format_rate']:.3f} | {r['mean_response_tokens']:.1f} | "
                     f"{r['finished_rate']:.3f} | {trained} |")
    if diffs:
        lines += ["", "## Differences, paired over the same problems", "",
                  "| comparison | pass@1 difference (points) | s.e. | within 2 s.e. of 0 | note |",
                  "|---|---:|---:|---|---|"]
        for name, d in diffs.items():
            idle = [m for m in name.split(" - ") if m in untrained]
            note = f"{', '.join(idle)} did not train" if idle else ""
            lines.append(f"| {name} | {100 * d['difference']:+.1f} | {100 * d['stderr']:.1f} | "
                         f"{'yes' if d['within_2se'] else 'no'} | {note} |")
    ks = list(results[names[0]]["pass@k"]) if names else []
    lines += ["", "## pass@k (unbiased, from the k samples)", "",
              "pass@k: the chance that at least one of k samples is right. A model's pass@k at "
              "the largest k is about as far as RL can sharpen its pass@1 without teaching it "
              "something new.", "",
              "| model | " + " | ".join(f"pass@{k}" for k in ks) + " |",
              "|---|" + "---:|" * len(ks)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{results[n]['pass@k'][k]:.3f}" for k in ks) + " |")
    tasks = sorted({t for r in results.values() for t in r["per_task"]})
    lines += ["", "## pass@1 per task", "", "| model | " + " | ".join(tasks) + " |",
              "|---|" + "---|" * len(tasks)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{results[n]['per_task'].get(t, float('nan')):.3f}"
                                              for t in tasks) + " |")
    levels = sorted({t for r in results.values() for t in r.get("per_level", {})})
    if levels:
        lines += ["", "## pass@1 per task and level", "",
                  "| model | " + " | ".join(levels) + " |", "|---|" + "---|" * len(levels)]
        for n in names:
            lines.append(f"| {n} | " + " | ".join(
                f"{results[n].get('per_level', {}).get(t, float('nan')):.3f}" for t in levels)
                + " |")
    lines += ["", "## Sample responses", ""]
    for n in names:
        lines.append(f"**{n}**: `{(results[n]['examples'] or [''])[0][:300]!r}`")
        lines.append("")
    lines += ["## Wrong answers (first sample of the first problems it got wrong)", ""]
    for n in names:
        for w in results[n].get("wrong_examples", [])[:2]:
            lines.append(f"**{n}** (answer {w['answer']}): prompt `{w['prompt'][:200]!r}` "
                         f"response `{w['response'][:400]!r}`")
            lines.append("")
    lines += ["![pass@1 and format rate](pass_at_1.png)", "",
              "![response length](response_length.png)", "", "![RL curves](rl_curves.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot_pass_at_1(results, out / "pass_at_1.png")
    plot_response_length(results, out / "response_length.png")
    plot_rl_curves(curves, out / "rl_curves.png", untrained)


def _bars(ax, names, values, untrained, yerr=None):
    """Bars of models; a model that did not train has a hatched grey bar and a red name with
    "(no update)" (its bar may be 0 high)."""
    bars = ax.bar(names, values, yerr=yerr, capsize=4 if yerr else 0, color="#4c78a8",
                  ecolor="#222")
    for b, n in zip(bars, names):
        if n in untrained:
            b.set_facecolor("#d9d9d9")
            b.set_hatch("//")
    ax.set_xlabel("model")
    ax.set_xticks(range(len(names)),
                  [f"{n}\n(no update)" if n in untrained else n for n in names])
    ax.tick_params(axis="x", rotation=30)
    for t, n in zip(ax.get_xticklabels(), names):
        t.set_ha("right")
        if n in untrained:
            t.set_color("#b00")


def plot_pass_at_1(results: Mapping, png_path: str | Path):
    """pass@1 with ±1 standard error bars and format rate, one bar per model; models that did
    not train hatched grey."""
    names = list(results)
    untrained = untrained_models(results)
    fig = _figure(10, 4.2)
    ax = fig.subplots(1, 2)
    _bars(ax[0], names, [results[n]["pass@1"] for n in names], untrained,
          yerr=[results[n].get("pass@1_stderr", 0.0) for n in names])
    ax[0].set_ylabel("pass@1 (error bars: ±1 s.e.)")
    ax[0].set_title("pass@1 on held-out problems")
    _bars(ax[1], names, [results[n]["format_rate"] for n in names], untrained)
    ax[1].set_ylabel("share of samples in the answer format")
    ax[1].set_title("format rate")
    for a in ax:  # headroom above 1 for the legend
        a.set_ylim(0, 1.25)
        a.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    if untrained:
        from matplotlib.patches import Patch
        ax[1].legend(handles=[Patch(fc="#d9d9d9", hatch="//", label="did not train (no update)")],
                     loc="upper left", fontsize=8, frameon=False)
    fig.savefig(str(png_path), dpi=80)
    return fig


def plot_response_length(results: Mapping, png_path: str | Path):
    """Mean response tokens per model."""
    names = list(results)
    fig = _figure(6, 4.2)
    ax = fig.subplots()
    _bars(ax, names, [results[n]["mean_response_tokens"] for n in names],
          untrained_models(results))
    ax.set_ylabel("mean response length (tokens)")
    ax.set_title("response length")
    fig.savefig(str(png_path), dpi=80)
    return fig


def plot_rl_curves(curves: Mapping[str, list], png_path: str | Path,
                   untrained: Mapping[str, str] = {}, keys: Sequence[str] = RL_CURVE_KEYS):
    """Small multiples: one row per RL model, one column per metric (each panel its own y
    scale: one run's spike does not flatten another's curve), so no model's line hides
    another's; a model that did not train says so in its row's titles."""
    models = [n for n, rows in curves.items() if rows]
    keys = [k for k in keys if any(k in rows[0] for rows in curves.values() if rows)] or list(keys)
    nrows, ncols = max(1, len(models)), len(keys)
    fig = _figure(3.6 * ncols, 2.4 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex="row")
    if not models:
        for a in axes.flat:
            a.set_axis_off()
        axes[0, 0].text(0.5, 0.5, "no RL model evaluated", ha="center", transform=axes[0, 0].transAxes)
    for i, n in enumerate(models):
        rows = curves[n]
        for j, key in enumerate(keys):
            a = axes[i, j]
            a.plot([r["step"] for r in rows], [r.get(key, math.nan) for r in rows],
                   color=f"C{i}", marker="." if len(rows) <= 60 else None)
            a.set_title(f"{n}: {key}" + (" (did not train)" if n in untrained else ""),
                        fontsize=9, color="#b00" if n in untrained else "black")
            if i == nrows - 1:
                a.set_xlabel("GRPO step")
            if j == 0:
                a.set_ylabel(n)
    fig.savefig(str(png_path), dpi=80)
    return fig
