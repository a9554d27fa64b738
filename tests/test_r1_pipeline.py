"""RunR1Pipeline on tiny, once: every stage commits, the post-training loops really run (SFT loss
falls, GRPO rewards vary and are logged per step, the cold-start model writes the format more
often than the base), rejection samples are all correct and format-valid, the distilled and the
RL-only student start from the same pretrained dense base and take the same number of
optimiser steps, the evaluation report names every model with its pass@1, and lineage reaches
back to crawl_ingest.

Tiny models do not learn arithmetic: nothing here demands accuracy gains."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from deeprecipe.pipeline.store import ArtifactStore
from deeprecipe.stages.r1 import rewards
from tests.conftest import deeprecipe, luigi_cmd, run

POST_STAGES = ["reasoning_data", "cold_start_sft", "grpo", "grpo_zero", "rejection_sample",
               "reward_model", "final_sft", "final_rl", "pretrain_student", "distill",
               "student_grpo", "evaluate"]
EARLIER_STAGES = ["synthetic_crawl", "crawl_ingest", "url_dedup", "minhash_dedup",
                  "simhash_dedup", "quality_filter", "pii_redact", "decontaminate",
                  "tokenizer_train", "tokenize_pack", "pretrain_moe"]
MODELS = ["base", "cold_start", "grpo", "grpo_zero", "final", "student", "student_rl"]
MODEL_STAGES = ["cold_start_sft", "grpo", "grpo_zero", "final_sft", "final_rl", "distill",
                "student_grpo"]


@pytest.fixture(scope="module")
def r1_store(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("r1") / "store")
    t0 = time.time()
    r = run(luigi_cmd("--module", "workflows", "RunR1Pipeline", "--store", store, "--workers", "2"),
            timeout=2400)
    print(f"RunR1Pipeline tiny: {time.time() - t0:.0f} s")
    s = ArtifactStore(store)
    s.run_log = r.stderr  # what the user's terminal showed (not a TTY here: progress log lines)
    return s


def metrics(s: ArtifactStore, stage: str) -> dict:
    return s.newest(stage)["outputs"]["metrics"]


def test_every_stage_committed(r1_store):
    for stage in EARLIER_STAGES + POST_STAGES:
        assert r1_store.newest(stage) is not None, stage
    for stage in MODEL_STAGES:
        names = {f["name"] for f in r1_store.newest(stage)["outputs"]["files"]}
        assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.jsonl",
                "metrics.png"} <= names, (stage, names)
        assert not any(n.endswith((".pt", ".bin", ".pkl")) for n in names)


def test_sft_loss_falls(r1_store):
    cold = metrics(r1_store, "cold_start_sft")
    assert cold["loss_last"] < 0.7 * cold["loss_first"], cold
    assert cold["held_out_loss_after"] < cold["held_out_loss_before"], cold
    for stage in ("final_sft", "distill"):
        m = metrics(r1_store, stage)
        assert m["loss_last"] < m["loss_first"], (stage, m)


def test_grpo_logs_reward_parts_kl_and_clipping(r1_store):
    for stage in ("grpo", "grpo_zero", "final_rl", "student_grpo"):
        man = r1_store.newest(stage)
        rows = man["outputs"]["metrics"]["per_step"]
        # student_grpo's steps is 0 in its config: distill's step count
        assert len(rows) == (man["params"]["grpo"]["steps"] or metrics(r1_store, "distill")["steps"])
        for r in rows:
            assert {"reward", "reward_accuracy", "reward_format", "reward_language", "kl",
                    "clip_fraction", "response_len", "accuracy"} <= set(r), (stage, r)
            assert 0.0 <= r["clip_fraction"] <= 1.0 and r["kl"] >= 0.0
    grpo = metrics(r1_store, "grpo")["per_step"]
    assert any(r["reward_std"] > 0 for r in grpo), "GRPO rewards were constant: no signal"
    assert all(0.0 <= r["informative_groups"] <= 1.0 for r in grpo)
    assert any(r["informative_groups"] > 0 for r in grpo), "no group had unequal rewards"
    assert any(r["kl"] > 0 for r in grpo[1:]) and any(r["clip_fraction"] > 0 for r in grpo)
    assert metrics(r1_store, "grpo")["ref_resets"] >= 1
    final = r1_store.newest("final_rl")
    start = int(final["params"]["grpo"]["steps"] * final["params"]["preference_from"])
    steps = final["outputs"]["metrics"]["per_step"]
    assert all(r["reward_preference"] == 0.0 for r in steps[:start])
    assert any(r["reward_preference"] > 0.0 for r in steps[start:])


def test_rejection_samples_are_correct_and_format_valid(r1_store):
    man = r1_store.newest("rejection_sample")
    folder = Path(r1_store.path("rejection_sample", man["version"]))
    samples = pq.read_table(folder / "samples.parquet").to_pylist()
    data = r1_store.newest("reasoning_data")
    problems = {r["id"]: r for r in pq.read_table(
        Path(r1_store.path("reasoning_data", data["version"])) / "problems-rl.parquet").to_pylist()}
    assert problems, "tiny's rl split is empty"
    grpo_version = r1_store.newest("grpo")["version"]
    for s in samples:
        assert rewards.format_reward(s["response"]) == 1.0, s
        assert rewards.accuracy_reward(s["response"], problems[s["problem_id"]]) == 1.0, s
        assert s["checkpoint_version"] == grpo_version and s["sample_index"] >= 0
    assert len({(s["problem_id"], s["response"]) for s in samples}) == len(samples)
    m = man["outputs"]["metrics"]
    assert m["sampled"] == m["problems"] * man["params"]["n_samples"]
    assert m["kept"] == len(samples) and m["non_reasoning"] > 0
    assert len(samples) > 0, ("rejection sampling kept nothing", m)


def test_students_share_a_pretrained_dense_base_and_step_count(r1_store):
    """distill (SFT) and student_grpo (RL alone) start from the same pretrain_student version,
    a dense model (no router parameter), and take the same number of optimiser steps."""
    base = r1_store.newest("pretrain_student")
    for stage in ("distill", "student_grpo"):
        up = r1_store.newest(stage)["upstream"]
        key = "base" if stage == "distill" else "init"
        assert up[key]["stage"] == "pretrain_student" and up[key]["version"] == base["version"]
    assert r1_store.newest("student_grpo")["upstream"]["distill"]["version"] == \
        r1_store.newest("distill")["version"]
    m = base["outputs"]["metrics"]
    assert m["params"] == m["active_params"] and m["loss_last"] < m["loss_first"], m
    assert m["expert_load_max_over_mean"] is None
    assert m["params"] < metrics(r1_store, "pretrain_moe")["active_params"]
    assert metrics(r1_store, "student_grpo")["steps"] == metrics(r1_store, "distill")["steps"] > 0


def test_reward_model_learns_preferences(r1_store):
    m = metrics(r1_store, "reward_model")
    assert m["train_accuracy"] > m["train_accuracy_before"], m
    assert m["loss_last"] < m["loss_first"], m


def test_evaluation_report_names_every_model(r1_store):
    man = r1_store.newest("evaluate")
    folder = Path(r1_store.path("evaluate", man["version"]))
    names = {f["name"] for f in man["outputs"]["files"]}
    assert {"report.md", "pass_at_1.png", "response_length.png", "rl_curves.png"} <= names
    report = (folder / "report.md").read_text()
    models = man["outputs"]["metrics"]["models"]
    assert set(models) == set(MODELS)
    for name in MODELS:
        line = re.search(rf"^\| {name} \|.*$", report, re.M)
        assert line, f"report.md has no row for {name}"
        assert f"| {models[name]['pass@1']:.3f} | {models[name]['pass@1_stderr']:.3f} |" \
            in line.group(0)
        assert 0.0 <= models[name]["pass@1"] <= 1.0
        assert len(models[name]["correct_per_problem"]) == man["outputs"]["metrics"][
            "held_out_problems"]
    diffs = man["outputs"]["metrics"]["paired_differences"]
    d = diffs["grpo - cold_start"]
    gain = models["grpo"]["pass@1"] - models["cold_start"]["pass@1"]
    assert d["difference"] == pytest.approx(gain)
    assert "## Differences, paired over the same problems" in report
    assert models["cold_start"]["format_rate"] > models["base"]["format_rate"], models
    assert models["student"]["version"] == r1_store.newest("distill")["version"]
    assert models["student_rl"]["version"] == r1_store.newest("student_grpo")["version"]
    assert models["student_rl"]["stage"] == "student_grpo"
    k = man["outputs"]["metrics"]["k"]
    for name in MODELS:  # pass@k ladder: pass@1 first, rising with k, at most pass@k of all k
        ladder = models[name]["pass@k"]
        assert ladder["1"] == pytest.approx(models[name]["pass@1"])
        assert list(ladder.values()) == sorted(ladder.values())
        solved = sum(c > 0 for c in models[name]["correct_per_problem"])
        assert ladder[str(k)] == pytest.approx(solved / len(models[name]["correct_per_problem"]))
    assert "## pass@k (unbiased, from the k samples)" in report
    # every trained model's stage checked for updates; those that made none named, with why
    idle = man["outputs"]["metrics"]["did_not_train"]
    for name in MODELS:
        training = models[name].get("training")
        assert (training is None) == (name == "base"), (name, training)
        if training and not training["trained"]:
            assert idle[name] == training["reason"] and f"- **{name}** (" in report
    assert set(idle) <= set(MODELS) and ("## Models that did not train" in report) == bool(idle)


def test_grpo_ablation_runs_r1_zero_and_grpo_variants_on_the_store(r1_store, tmp_path):
    """bench/grpo_ablation.py on the tiny store: R1-Zero from the base (--start base) and GRPO
    from the cold start, a control and a trained variant each, one JSON row per variant."""
    from bench import grpo_ablation
    for start, variants in (("base", "start,start_answer_stop,kl_clamp10"),
                            ("cold_start", "cold_start,skip_spike4")):
        out = tmp_path / start
        assert grpo_ablation.main(["--store", r1_store.url, "--profile", "tiny", "--start", start,
                                   "--steps", "2", "--variants", variants, "--eval-k", "6",
                                   "--out", str(out), "--state-root", str(tmp_path / "state"),
                                   "--save-every-s", "1e-9"]) == 0
        rows = [json.loads(line) for line in (out / "ablation.jsonl").read_text().splitlines()]
        assert [r["variant"] for r in rows] == variants.split(",")
        control, trained = rows[0], rows[-1]
        assert all(r["steps"] == 0 for r in rows[:-1]) and trained["steps"] == 2
        assert 0.0 <= trained["pass@1"] <= 1.0 and len(trained["per_step_reward_format"]) == 2
        assert trained["fmt_step0"] == trained["per_step_reward_format"][0]
        assert list(control["pass@k"]) == ["1", "2", "4", "6"]  # --eval-k 6 samples a problem
        assert control["pass_at_max_k"] == control["pass@k"]["6"] >= control["pass@1"]
    assert trained["overrides"] == {"skip_grad_spike": 4.0}
    assert grpo_ablation.PROMPT_STOPS["r1_zero"] == ()  # restored after its variant
    assert "fmt_onset" in trained and trained["grad_norm_max_step"] in (0.0, 1.0)
    # each variant saved its GRPO state after step 1 and removed it when it finished
    assert (tmp_path / "state").is_dir() and not list((tmp_path / "state").iterdir())


def test_lineage_reaches_crawl_ingest(r1_store):
    out = deeprecipe("--store", r1_store.url, "lineage", "evaluate").stdout
    for stage in ("evaluate", "final_rl", "final_sft", "rejection_sample", "grpo",
                  "cold_start_sft", "pretrain_moe", "student_grpo", "distill",
                  "pretrain_student", "tokenize_pack", "crawl_ingest"):
        assert stage in out, (stage, out)
    # one block per stage version (a DAG, not a tree repeating shared upstreams): this store
    # holds one version of each stage, and evaluate depends on every one of them
    heads = [tuple(line.split()[:2]) for line in out.splitlines() if not line.startswith(" ")]
    assert heads[0][0] == "evaluate" and len(heads) == len(set(heads))
    assert {h[0] for h in heads} == set(r1_store.stages())
    assert len(out.splitlines()) < 8 * len(heads)
    down = deeprecipe("--store", r1_store.url, "lineage", "crawl_ingest", "--downstream").stdout
    heads = [tuple(line.split()[:2]) for line in down.splitlines() if not line.startswith(" ")]
    assert heads[0][0] == "crawl_ingest" and heads[-1][0] == "evaluate"
    assert len(heads) == len(set(heads))


def test_long_stages_report_progress(r1_store):
    """pretraining (from before its first step), GRPO (R1-Zero included) and the evaluation
    report progress: log lines here (no terminal), tqdm on a terminal, luigid's percentage
    and status message from the same calls."""
    log = r1_store.run_log
    for stage in ("pretrain_moe", "pretrain_student"):
        assert f"{stage} steps 0/" in log and "starting the training process" in log
        assert re.search(rf"{stage} steps (\d+)/\1 \(100%", log), stage
    assert "engine ready in" in log and "building the model and the DeepSpeed engine" in log
    for stage in ("grpo", "grpo_zero", "final_rl", "student_grpo"):
        steps = metrics(r1_store, stage)["steps"]
        assert f"{stage} steps 0/{steps} (0%" in log and "sampling the first batch" in log, stage
        line = next(x for x in log.splitlines() if f"{stage} steps {steps}/{steps} (100%" in x)
        assert " reward " in line and " kl " in line and "s/step" in line
    for stage in ("cold_start_sft", "final_sft", "distill"):
        assert f"{stage} steps 1/" in log and re.search(rf"{stage} steps \d+/\d+ .*: epoch 0 loss ", log), stage
    assert f"evaluate models {len(MODELS)}/{len(MODELS)} (100%" in log
    assert "student_rl: pass@1 " in log
