"""stages.report (evaluation report, training checks, plots), the DAG PNG's layout and
`deeprecipe compare`, on small synthetic inputs (no training)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deeprecipe.pipeline import graph
from deeprecipe.pipeline.lineage import StageStatus
from deeprecipe.stages import report

ROOT = Path(__file__).resolve().parents[1]
RUN8 = ROOT / "tests" / "data" / "r1_small_run8"
P = {"k": 4, "temperature": 0.6, "top_p": 0.95, "max_new_tokens": 32}


def grpo_rows(n: int, idle: bool) -> list[dict]:
    """GRPO per-step rows: idle = every step without an informative group and gradient 0
    (tiny's grpo_zero / student_grpo)."""
    return [{"step": i, "reward": 0.0 if idle else 0.1 * i, "kl": 0.0 if idle else 0.01 * i,
             "response_len": 20.0 + i, "grad_norm": 0.0 if idle else 0.5,
             "informative_groups": 0.0 if idle else 0.5, "update_rows": 0 if idle else 8,
             "skipped": 0, "reward_format": 0.0, "ref_reset": False} for i in range(n)]


def model_result(p1: float, stage: str, training: dict | None = None) -> dict:
    r = {"pass@1": p1, "pass@1_stderr": 0.05, "pass@k": {"1": p1, "4": min(1.0, 2 * p1)},
         "correct_per_problem": [round(4 * p1)] * 4, "format_rate": p1, "mean_response_tokens": 20.0,
         "finished_rate": 1.0, "per_task": {"arithmetic": p1}, "per_level": {},
         "stage": stage, "version": f"{stage[:4]}0123456789ab", "prompt_style": "chat",
         "params": 1234, "examples": ["<think>1</think><answer>2</answer>"], "wrong_examples": []}
    if training is not None:
        r["training"] = training
    return r


def evaluated(curves: dict) -> dict:
    return {"base": model_result(0.1, "pretrain_moe"),
            "cold_start": model_result(0.5, "cold_start_sft",
                                       report.training_check({"steps": 10, "loss_first": 2.0,
                                                              "loss_last": 1.0})),
            "grpo": model_result(0.6, "grpo", report.training_check({"per_step": curves["grpo"]})),
            "grpo_zero": model_result(0.1, "grpo_zero",
                                      report.training_check({"per_step": curves["grpo_zero"]}))}


def test_training_check_tells_a_run_that_never_updated_from_one_that_did():
    idle = report.training_check({"per_step": grpo_rows(5, idle=True)})
    assert idle["trained"] is False and idle["updated_steps"] == 0 and idle["steps"] == 5
    assert "reward 0 at every step" in idle["reason"]
    assert "no informative group" in idle["reason"] and "in 5 of 5 steps" in idle["reason"]
    assert "gradient norm 0" in idle["reason"]
    busy = report.training_check({"per_step": grpo_rows(5, idle=False)})
    assert busy == {"trained": True, "steps": 5, "updated_steps": 5, "reason": ""}
    # one step updated: it trained (a little)
    mixed = grpo_rows(5, idle=True)
    mixed[3].update(grad_norm=0.2, informative_groups=0.25, update_rows=4)
    assert report.training_check({"per_step": mixed})["updated_steps"] == 1
    # every update skipped as a gradient spike
    spiky = [{**r, "skipped": 1} for r in grpo_rows(4, idle=False)]
    check = report.training_check({"per_step": spiky})
    assert not check["trained"] and "gradient spike in 4 of 4" in check["reason"]
    # SFT with no example in the budget; pretraining / data metrics are not checked
    sft = report.training_check({"steps": 0, "loss_first": 0.0, "loss_last": 0.0, "examples": 0})
    assert not sft["trained"] and "no optimiser step" in sft["reason"]
    assert report.training_check({"tokens": 10, "val_loss": 3.0}) is None


def test_report_names_the_rl_runs_that_did_not_train(tmp_path):
    curves = {"grpo": grpo_rows(6, idle=False), "grpo_zero": grpo_rows(6, idle=True)}
    results = evaluated(curves)
    diffs = {"grpo - cold_start": {"difference": 0.1, "stderr": 0.05, "within_2se": True},
             "grpo_zero - base": {"difference": 0.0, "stderr": 0.0, "within_2se": True}}
    report.write_report(results, diffs, curves, [{}] * 4, P, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "## Models that did not train" in md
    section = md.split("## Models that did not train")[1].split("| model |")[0]
    assert "**grpo_zero**" in section and "no informative group" in section
    assert "**grpo**" not in section and "cold_start" not in section
    grpo_zero_row = next(line for line in md.splitlines() if line.startswith("| grpo_zero |"))
    assert grpo_zero_row.rstrip().endswith("**no** (see above) |")
    assert next(line for line in md.splitlines() if line.startswith("| grpo |")).endswith("| yes |")
    assert "| grpo_zero - base |" in md and "grpo_zero did not train" in md
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["grpo_zero"]["training"]["trained"] is False
    assert saved["grpo"]["training"]["trained"] is True
    assert report.untrained_models(saved) == {"grpo_zero": saved["grpo_zero"]["training"]["reason"]}
    for png in ("pass_at_1.png", "response_length.png", "rl_curves.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_without_untrained_models_has_no_such_section(tmp_path):
    curves = {"grpo": grpo_rows(3, idle=False)}
    results = {k: v for k, v in evaluated({**curves, "grpo_zero": grpo_rows(3, False)}).items()}
    report.write_report(results, {}, curves, [{}] * 4, P, tmp_path)
    assert "did not train" not in (tmp_path / "report.md").read_text()


def png_size(path: Path) -> tuple[int, int]:
    from PIL import Image
    with Image.open(path) as im:
        return im.size


def test_pass_at_1_plot_has_error_bars_and_labelled_axes(tmp_path):
    curves = {"grpo": grpo_rows(3, idle=False), "grpo_zero": grpo_rows(3, idle=True)}
    results = evaluated(curves)
    fig = report.plot_pass_at_1(results, tmp_path / "p.png")
    ax = fig.axes[0]
    assert ax.get_ylabel() and ax.get_xlabel() and "s.e." in ax.get_ylabel()
    from matplotlib.container import BarContainer, ErrorbarContainer
    bars = next(c for c in ax.containers if isinstance(c, BarContainer))
    errors = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert errors  # the standard errors as error bars
    segments = errors[0].lines[2][0].get_segments()
    assert [round(s[1][1] - s[0][1], 6) for s in segments] == [0.1] * len(results)  # ±1 s.e.
    grey = [b.get_hatch() for b in bars]
    assert grey[list(results).index("grpo_zero")] == "//" and grey[0] is None
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[list(results).index("grpo_zero")] == "grpo_zero\n(no update)"
    assert labels[list(results).index("grpo")] == "grpo"
    w, h = png_size(tmp_path / "p.png")
    assert 1.0 <= w / h <= 3.0


def test_rl_curves_are_small_multiples_one_line_per_panel(tmp_path):
    curves = {n: grpo_rows(8, idle=(n == "grpo_zero")) for n in ("grpo", "grpo_zero", "final")}
    fig = report.plot_rl_curves(curves, tmp_path / "rl.png", {"grpo_zero": "idle"})
    assert len(fig.axes) == 3 * len(report.RL_CURVE_KEYS)
    assert all(len(a.get_lines()) == 1 for a in fig.axes)  # no line under another
    assert all(a.get_xlabel() == "GRPO step" for a in fig.axes[-len(report.RL_CURVE_KEYS):])
    assert any("did not train" in a.get_title() for a in fig.axes)
    w, h = png_size(tmp_path / "rl.png")
    assert 0.5 <= w / h <= 3.0


def test_grpo_metrics_png_is_a_grid_not_a_strip(tmp_path):
    rows = [{**r, "a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0} for r in grpo_rows(5, idle=False)]
    keys = ("reward", "kl", "response_len", "grad_norm", "informative_groups", "a", "b", "c", "d")
    fig = report.plot_series(rows, keys, tmp_path / "m.png", "grpo")
    visible = [a for a in fig.axes if a.axison]
    assert len(visible) == 9
    columns = {round(a.get_position().x0, 3) for a in visible}
    assert len(columns) == 3
    w, h = png_size(tmp_path / "m.png")
    assert 0.8 <= w / h <= 2.0  # the old strip was 7:1 or wider


def test_plot_series_with_few_keys_is_one_row(tmp_path):
    rows = [{"step": i, "loss": 1.0 / (i + 1), "lr": 0.1} for i in range(4)]
    report.plot_series(rows, ("loss", "lr"), tmp_path / "s.png", "sft")
    assert png_size(tmp_path / "s.png") == (640, 256)  # as before the grid: SFT/RM bytes unchanged


def dag() -> list[StageStatus]:
    s = lambda name, *ups: StageStatus(name, "v", "fresh", [], list(ups))  # noqa: E731
    return [s("a"), s("b", "a"), s("c", "a"), s("d", "b"), s("e", "d", "c", "a"), s("f", "e", "b")]


def test_dag_png_is_top_down_and_edges_meet_their_boxes(tmp_path):
    statuses = dag()
    pos, routes = graph.png_layout(statuses)
    for (a, b), route in routes.items():
        (xa, ya), (xb, yb) = pos[a], pos[b]
        assert ya > yb  # upstream above
        (x0, y0), (x1, y1) = route[0], route[-1]
        assert y0 == pytest.approx(ya - graph.BOX_H / 2) and abs(x0 - xa) < graph.BOX_W / 2
        assert y1 == pytest.approx(yb + graph.BOX_H / 2) and abs(x1 - xb) < graph.BOX_W / 2
        # the edge crosses no other stage's box
        for (p, q) in zip(route, route[1:]):
            for t in (i / 20 for i in range(1, 20)):
                x, y = p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])
                for n, (xn, yn) in pos.items():
                    if n not in (a, b):
                        assert not (abs(x - xn) < graph.BOX_W / 2 and abs(y - yn) < graph.BOX_H / 2), (a, b, n)
    out = tmp_path / "dag.png"
    graph.to_png(statuses, str(out))
    w, h = png_size(out)
    assert 0.2 <= w / h <= 5
    chain = [StageStatus(f"s{i}", "v", "missing", [], [f"s{i - 1}"] if i else []) for i in range(6)]
    graph.to_png(chain, str(out))
    w, h = png_size(out)
    assert h > 2 * w  # a chain runs down the page (the old PNG ran it across)


def copy_run8(tmp_path) -> Path:
    store = tmp_path / "store"
    shutil.copytree(RUN8, store)
    return store


def test_compare_prints_both_evaluations_side_by_side(tmp_path, capsys):
    from deeprecipe.pipeline.cli import main
    store = copy_run8(tmp_path)
    v1 = next((store / "evaluate").iterdir()).name
    man = json.loads((store / "evaluate" / v1 / "_MANIFEST.json").read_text())
    man["version"] = v2 = "00000000feedbeef"
    m = man["outputs"]["metrics"]["models"]
    m["grpo_zero"].update({"pass@1": 0.0, "pass@1_stderr": 0.0,
                           "training": {"trained": False, "steps": 3, "updated_steps": 0,
                                        "reason": "idle"}})
    (store / "evaluate" / v2).mkdir()
    (store / "evaluate" / v2 / "_MANIFEST.json").write_text(json.dumps(man))
    assert main(["compare", f"evaluate/{v1}", f"evaluate/{v2}", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert f"A = evaluate/{v1}" in out and f"B = evaluate/{v2}" in out
    row = next(line for line in out.splitlines() if line.startswith("grpo_zero "))
    assert "0.112 ± 0.019" in row and "0.000 ± 0.000" in row and "-0.112" in row
    assert row.split()[-1] == "NO"
    cold = next(line for line in out.splitlines() if line.startswith("cold_start "))
    assert cold.count("0.818 ± 0.022") == 2 and "+0.000" in cold
    assert any(line.startswith("held_out_problems") and "256" in line for line in out.splitlines())


def test_compare_other_stages_lists_their_scalar_metrics(tmp_path, capsys):
    from deeprecipe.pipeline.cli import main
    store = copy_run8(tmp_path)
    assert main(["--store", str(store), "compare", "grpo", "grpo_zero"]) == 0
    out = capsys.readouterr().out.splitlines()
    acc = next(line for line in out if line.startswith("accuracy_first "))
    assert acc.split()[1:] == ["0.781", "0.09431", "-0.6867"]
    assert not any(line.startswith("per_step") for line in out)  # lists are not scalars


def test_workflows_draw_no_plots():
    """issue 20: reports and plots live in stages/; workflow tasks only wire."""
    for path in (ROOT / "workflows").glob("*.py"):
        assert "matplotlib" not in path.read_text(), path
    for path in (ROOT / "bench").glob("*.py"):
        assert "workflows.post_train import" not in path.read_text(), path
