"""Post-training stages of DeepSeek-R1 (thin Luigi tasks over the `stages.r1` package; reports,
plots and metric summaries in `stages.report`):

    reasoning_data ─► cold_start_sft ─► grpo ─► rejection_sample ─► final_sft ─► final_rl
                      (pretrain_moe)                              ╰► distill ─► student_grpo
    grpo_zero (R1-Zero, from pretrain_moe)    reward_model (BT pairs on pretrain_moe) ─► final_rl
    pretrain_student (dense, same token shards) ─► distill (SFT on the rejection samples)
                                                ╰► student_grpo (RL alone, as many steps)
    evaluate: pass@1 of base, cold_start, grpo, grpo_zero, final (final_rl), student (distill)
              and student_rl (student_grpo)

Model artifacts are HF-style folders: config.json, model.safetensors, tokenizer.json, plus
metrics.jsonl and metrics.png, and hf/: the model as a transformers checkpoint
(`train.put_hf_export`). Training runs in the Luigi worker process on torch with
`threads` CPU threads (or one GPU with device='cuda'; precision: stages.r1.model_io's docstring)."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import ClassVar

import luigi
import pyarrow as pa

from deeprecipe.pipeline.lazy import lazy_module
from deeprecipe.stages.generators import reasoning_data as rd
from deeprecipe.stages import report
from deeprecipe.stages.r1 import config as r1_config

from .base import LOCAL_CACHE, StageTask, local_copy, local_dir
from .reasoning import ReasoningData
from .train import PretrainMoe, base_stage, put_hf_export

# imported on first use, so that reading the DAG (deeprecipe status) does not import torch
hf_export = lazy_module("deeprecipe.stages.hf_export")
moe_model = lazy_module("deeprecipe.stages.moe_model")
training_io = lazy_module("deeprecipe.stages.training_io")
chat = lazy_module("deeprecipe.stages.r1.chat")
evaluation = lazy_module("deeprecipe.stages.r1.evaluate")
grpo_loss = lazy_module("deeprecipe.stages.r1.grpo_loss")
model_io = lazy_module("deeprecipe.stages.r1.model_io")
r1_grpo = lazy_module("deeprecipe.stages.r1.grpo")
r1_sft = lazy_module("deeprecipe.stages.r1.sft")
rejection = lazy_module("deeprecipe.stages.r1.rejection")
reward_model = lazy_module("deeprecipe.stages.r1.reward_model")
rewards = lazy_module("deeprecipe.stages.r1.rewards")
rl_state = lazy_module("deeprecipe.stages.r1.rl_state")
rollout = lazy_module("deeprecipe.stages.r1.rollout")
sampler = lazy_module("deeprecipe.stages.r1.sampler")

MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")


# ----------------------------------------------------------------------------- helpers


def setup_torch(config):
    """`model_io.setup_torch` with a stage config's threads, seed (if it has one) and device."""
    return model_io.setup_torch(config.threads, getattr(config, "seed", None), config.device)


def model_folder(ctx, name: str, extra: tuple[str, ...] = ()) -> Path:
    """A local folder holding upstream model artifact `name` (its own folder on a local store)."""
    art = ctx.input(name)
    folder = local_dir(ctx, "inputs", name)
    paths = [local_copy(ctx, art, f, folder) for f in (*MODEL_FILES, *extra)]
    return paths[0].parent


def load_chat_model(ctx, name: str, max_seq_len: int, device):
    """``(folder, tokenizer, model on device)`` of upstream model artifact ``name``."""
    folder = model_folder(ctx, name)
    return (folder, *model_io.load_chat_model(folder, max_seq_len, device))


def read_rows(ctx, name: str, file: str) -> list[dict]:
    return ctx.input(name).read_table(file).to_pylist()


def put_model(ctx, model, tok_json: Path, rows: list[dict], plot_keys: tuple[str, ...],
              extra: tuple[str, ...] = ()) -> None:
    """Export the model as an HF-style folder plus metrics.jsonl and metrics.png into the
    artifact, and as a transformers checkpoint into its hf/."""
    out = local_dir(ctx, "export")
    model_io.save_chat_model(model, tok_json, out, rows, plot_keys, ctx.stage)
    put_hf_export(ctx, model, tok_json, out)
    for name in (*MODEL_FILES, *extra, "metrics.jsonl", "metrics.png"):
        ctx.fs.put_file(str(out / name), ctx.output_path(name))


def finish(ctx) -> None:
    if not ctx.store.is_local:
        shutil.rmtree(LOCAL_CACHE / ctx.stage / ctx.version, ignore_errors=True)


# ----------------------------------------------------------------------------- SFT stages


class ColdStartSft(StageTask):
    """Cold start: SFT of the pretrained MoE on long-CoT responses rendered from the problems'
    solution templates (`<think>steps</think><answer>…</answer>`); `max_think_lines` > 0 keeps
    only the last lines of each reasoning block (tiny models learn the format from short
    renderings)."""
    code_version = "4"  # 4: hf/ (transformers export)
    source_objects = (chat, r1_config, model_io, r1_sft, grpo_loss, training_io, hf_export, report)
    config_cls = r1_config.ColdStartSftConfig

    def upstream(self):
        return {"base": self.clone(base_stage(self)), "data": self.clone(ReasoningData)}

    def build(self, ctx):
        c = self.config
        device = setup_torch(c)
        folder, tok, model = load_chat_model(ctx, "base", c.max_seq_len, device)
        train = read_rows(ctx, "data", "problems-train.parquet")
        held = read_rows(ctx, "data", "problems-held_out.parquet")
        examples = chat.sft_examples(tok, train, "solution", c.max_response_tokens,
                                     c.max_think_lines)
        held_examples = chat.sft_examples(tok, held, "solution", c.max_response_tokens,
                                          c.max_think_lines)
        cfg = dataclasses.replace(self.config.sft, seq_len=self.config.max_seq_len)
        held_before = r1_sft.response_loss(model, held_examples, tok, cfg.seq_len, dtype=cfg.dtype)
        rows = r1_sft.sft(model, examples, tok, cfg, on_step=sft_progress(ctx, cfg, len(examples)))
        held_after = r1_sft.response_loss(model, held_examples, tok, cfg.seq_len, dtype=cfg.dtype)
        put_model(ctx, model, folder / "tokenizer.json", rows, ("loss", "lr"))
        finish(ctx)
        return {**report.loss_summary(rows), "examples": len(examples),
                "held_out_loss_before": held_before, "held_out_loss_after": held_after}


class PretrainStudent(PretrainMoe):
    """The dense student's base: PretrainMoe's training (same token shards, tokenizer and
    trainer) on a dense config, `model` with `model_overrides` and every layer a dense FFN.
    distill and student_grpo both start from it, as R1's distilled and RL-only 32B models both
    start from Qwen-32B-Base."""

    def model_overrides_for(self, ctx) -> dict:
        base = moe_model.MOE_CONFIGS[self.config.model]
        return model_io.dense_overrides(base, **super().model_overrides_for(ctx))


class FinalSft(StageTask):
    """R1's final SFT: rejection-sampled reasoning + non-reasoning rows, on the pretrained BASE."""
    code_version = "3"  # 3: hf/ (transformers export)
    source_objects = (chat, r1_config, model_io, r1_sft, grpo_loss, training_io, hf_export, report)
    config_cls = r1_config.SftStageConfig

    def base_stage(self):
        return base_stage(self)

    def upstream(self):
        return {"base": self.clone(self.base_stage()), "samples": self.clone(RejectionSample)}

    def build(self, ctx):
        c = self.config
        device = setup_torch(c)
        folder, tok, model = load_chat_model(ctx, "base", c.max_seq_len, device)
        reasoning = read_rows(ctx, "samples", "samples.parquet")
        non_reasoning = read_rows(ctx, "samples", "non_reasoning.parquet")
        examples = chat.sft_examples(tok, reasoning + non_reasoning, "response",
                                     c.max_response_tokens)
        cfg = dataclasses.replace(self.config.sft, seq_len=self.config.max_seq_len)
        rows = r1_sft.sft(model, examples, tok, cfg, on_step=sft_progress(ctx, cfg, len(examples)))
        put_model(ctx, model, folder / "tokenizer.json", rows, ("loss", "lr"))
        finish(ctx)
        return {**report.loss_summary(rows), "examples": len(examples),
                "reasoning_examples": len(reasoning), "non_reasoning_examples": len(non_reasoning),
                "params": model.num_params()}


class Distill(FinalSft):
    """Distillation: SFT only (no RL) of the dense student base (pretrain_student, same
    tokenizer) on the rejection-sampled data; its optimiser steps set student_grpo's."""

    def base_stage(self):
        return PretrainStudent


# ----------------------------------------------------------------------------- RL stages


class GrpoBase(StageTask):
    """GRPO from an upstream model artifact `init` on the RL problems (`rl_problems`).

    Every `state_every_s` seconds the run's state goes to the version's work folder
    (`stages.r1.rl_state`: safetensors + JSON); an attempt that finds one there (the previous one
    was killed) continues from it instead of starting over. Not a parameter: how often a run
    saves does not change what it computes."""
    state_every_s: ClassVar[float] = 180.0
    code_version = "9"  # 4: is_weight / is_truncated; 5: grad_norm, update_rows; 6: the rl split;
    # 7: metrics kl_max, skipped; 8: hf/ (transformers export); 9: metrics.png a 3-column grid
    # with grad_norm and informative_groups
    source_objects = (chat, r1_config, model_io, rollout, r1_grpo, grpo_loss, reward_model, rewards,
                      sampler, rl_state, training_io, hf_export, report)
    config_cls = r1_config.GrpoStageConfig

    def init_stage(self):
        raise NotImplementedError

    def upstream(self):
        return {"init": self.clone(self.init_stage()), "data": self.clone(ReasoningData)}

    def reward_fn(self, ctx, cfg, tok):
        return r1_grpo.rule_reward(dataclasses.asdict(self.config.weights))

    def problems(self, ctx) -> list[dict]:
        return rd.rl_problems(ctx.input("data"))

    def grpo_config(self, ctx):
        return self.config.grpo

    def build(self, ctx):
        c = self.config
        device = setup_torch(c)
        folder, tok, policy = load_chat_model(ctx, "init", c.max_seq_len, device)
        cfg = self.grpo_config(ctx)
        bar = ctx.progress(total=cfg.steps, desc=f"{self.stage} steps")
        bar.update_to(0, "sampling the first batch")
        rows = r1_grpo.grpo_train(policy, self.problems(ctx), tok, cfg,
                                  self.reward_fn(ctx, cfg, tok),
                                  on_step=lambda r: bar.update_to(r["step"] + 1,
                                                                  r1_grpo.grpo_step_message(r)),
                                  state_dir=local_dir(ctx, "rl_state"),
                                  save_every_s=self.state_every_s)
        bar.close()
        put_model(ctx, policy, folder / "tokenizer.json", rows,
                  r1_grpo.GRPO_PLOT + ("reward_preference",))
        finish(ctx)
        return report.grpo_summary(rows)


def sft_progress(ctx, cfg, n_examples: int):
    """An on_step for `r1_sft.sft` that moves this stage's progress bar."""
    return r1_sft.sft_progress(ctx.progress(total=r1_sft.sft_steps(cfg, n_examples),
                                            desc=f"{ctx.stage} steps"))


class Grpo(GrpoBase):
    """Reasoning RL after the cold start: accuracy + format + language-consistency rewards."""

    def init_stage(self):
        return ColdStartSft


class GrpoZero(GrpoBase):
    """R1-Zero: GRPO straight from the base with rule rewards only, on the R1-Zero template."""

    def init_stage(self):
        return base_stage(self)


class StudentGrpo(GrpoBase):
    """RL alone on the student (R1's distillation-vs-RL comparison): R1-Zero-style GRPO (rule
    rewards, R1-Zero template) from pretrain_student, the base distill starts from, for exactly
    as many optimiser steps as distill's SFT took. distill is an upstream for that count only;
    its `grpo.steps` stays 0."""

    def init_stage(self):
        return PretrainStudent

    def upstream(self):
        return {**super().upstream(), "distill": self.clone(Distill)}

    def grpo_config(self, ctx):
        if self.config.grpo.steps:
            raise ValueError("student_grpo takes its step count from distill's manifest; "
                             "leave --StudentGrpo-grpo's 'steps' at 0")
        steps = ctx.input("distill").manifest["outputs"]["metrics"]["steps"]
        return dataclasses.replace(self.config.grpo, steps=steps)


class FinalRl(GrpoBase):
    """Final RL from final_sft: rule rewards on reasoning problems; on the preference prompts
    (safety / helpfulness) the reward model's score (sigmoid) joins the format reward, only in
    the last `preference_from` share of the steps. The preference prompts are repeated to make
    up `preference_share` of the prompt pool (a few dozen next to thousands of problems would
    otherwise almost never be drawn)."""
    config_cls = r1_config.FinalRlConfig

    def upstream(self):
        return {**super().upstream(), "reward_model": self.clone(RewardModel)}

    def init_stage(self):
        return FinalSft

    def problems(self, ctx):
        problems = super().problems(ctx)
        prefs = [r for r in read_rows(ctx, "data", "preferences.parquet") if r["split"] == rd.TRAIN]
        return r1_grpo.mix_in(problems, r1_grpo.preference_problems(prefs),
                              self.config.preference_share)

    def reward_fn(self, ctx, cfg, tok):
        rm_folder = model_folder(ctx, "reward_model", ("reward_head.safetensors",))
        rm = reward_model.RewardModel.load(rm_folder).to(self.config.device)
        return r1_grpo.preference_reward(rm, tok, dataclasses.asdict(self.config.weights),
                                         int(cfg.steps * self.config.preference_from))


class RewardModel(StageTask):
    """Pairwise (Bradley-Terry) reward model: a scalar head on the pretrained base, trained on
    the safety / helpfulness preference pairs."""
    code_version = "2"
    source_objects = (chat, r1_config, model_io, reward_model, grpo_loss, training_io, report)
    config_cls = r1_config.RewardModelStageConfig

    def upstream(self):
        return {"base": self.clone(base_stage(self)), "data": self.clone(ReasoningData)}

    def build(self, ctx):
        c = self.config
        device = setup_torch(c)
        folder = model_folder(ctx, "base")
        tok, base = model_io.load_chat_model(folder, None, device)
        rm = reward_model.RewardModel(base).to(device)
        pairs = read_rows(ctx, "data", "preferences.parquet")
        train = [r for r in pairs if r["split"] == rd.TRAIN]
        held = [r for r in pairs if r["split"] == rd.HELD_OUT]
        acc_before = reward_model.preference_accuracy(rm, train, tok)
        rows = reward_model.train_reward_model(rm, train, tok,
                                              self.config.rm)
        out = local_dir(ctx, "export")
        rm.cpu().save(folder / "tokenizer.json", out)
        training_io.write_run_metrics(rows, out, ("loss", "accuracy"), ctx.stage)
        for name in (*MODEL_FILES, "reward_head.safetensors", "metrics.jsonl", "metrics.png"):
            ctx.fs.put_file(str(out / name), ctx.output_path(name))
        finish(ctx)
        return {**report.loss_summary(rows), "pairs": len(train), "train_accuracy_before": acc_before,
                "train_accuracy": reward_model.preference_accuracy(rm, train, tok),
                "held_out_pairs": len(held),
                "held_out_accuracy": (reward_model.preference_accuracy(rm, held, tok)
                                      if held else None)}


# ----------------------------------------------------------------------------- rejection sampling

SAMPLE_SCHEMA = pa.schema([("problem_id", pa.string()), ("task", pa.string()),
                           ("prompt", pa.string()), ("response", pa.string()),
                           ("sample_index", pa.int32()), ("reward", pa.float64()),
                           ("response_tokens", pa.int32()), ("checkpoint_stage", pa.string()),
                           ("checkpoint_version", pa.string())])
NON_REASONING_SCHEMA = pa.schema([("problem_id", pa.string()), ("task", pa.string()),
                                  ("prompt", pa.string()), ("response", pa.string()),
                                  ("source", pa.string())])


class RejectionSample(StageTask):
    """n samples per RL problem (`rl_problems`) from the GRPO checkpoint; keep the correct,
    format-valid, single-language ones without over-long paragraphs, deduplicated
    (samples.parquet); plus the non-reasoning rows with their reference replies
    (non_reasoning.parquet). `max_problems` draws a seeded subset of the problems."""
    code_version = "3"  # 3: rl split
    source_objects = (chat, model_io, rollout, rejection, rewards, sampler)
    config_cls = r1_config.RejectionSampleConfig

    def upstream(self):
        return {"policy": self.clone(Grpo), "data": self.clone(ReasoningData)}

    def build(self, ctx):
        c = self.config
        device = setup_torch(c)
        _, tok, policy = load_chat_model(ctx, "policy", c.max_seq_len, device)
        policy = model_io.inference_model(policy, c.dtype)
        problems = rollout.subset(rd.rl_problems(ctx.input("data")), c.max_problems, c.seed)
        kept, stats = rejection.rejection_sample(
            policy, problems, tok, n=c.n_samples, max_new_tokens=c.max_new_tokens,
            temperature=c.temperature, top_p=1.0, max_paragraph_chars=c.max_paragraph_chars,
            seed=c.seed, batch_rows=c.batch_rows)
        ckpt = ctx.input("policy")
        for row in kept:
            row.update(checkpoint_stage=ckpt.stage, checkpoint_version=ckpt.version)
        ctx.write_table(pa.Table.from_pylist(kept, schema=SAMPLE_SCHEMA), "samples.parquet")
        non_reasoning = [{"problem_id": r["id"], "task": r["task"], "prompt": r["prompt"],
                          "response": r["solution"], "source": "reference"}
                         for r in read_rows(ctx, "data", "non_reasoning.parquet")
                         if r["split"] == rd.TRAIN]
        ctx.write_table(pa.Table.from_pylist(non_reasoning, schema=NON_REASONING_SCHEMA),
                        "non_reasoning.parquet")
        finish(ctx)
        return {"rows": len(kept) + len(non_reasoning), **stats, "problems": len(problems),
                "non_reasoning": len(non_reasoning)}


# ----------------------------------------------------------------------------- evaluation

EVAL_MODELS = {  # report name -> (upstream name, prompt style)
    "base": ("base", "r1_zero"), "cold_start": ("cold_start", "chat"), "grpo": ("grpo", "chat"),
    "grpo_zero": ("grpo_zero", "r1_zero"), "final": ("final", "chat"),
    "student": ("student", "chat"), "student_rl": ("student_rl", "r1_zero")}


class Evaluate(StageTask):
    """pass@1 over k samples (T=0.6, top-p 0.95) on a seeded subset of `max_problems` held-out
    problems (every task and level) for every model, per task and per level; format rate;
    response length; wrong-answer examples; report.md with PNG plots."""
    code_version = "7"  # 3: per-level pass@1, wrong examples; 4: standard errors, paired
                        # diffs; 5: their within_2se flag; 6: pass@k for k = 1, 2, 4, ..., k;
                        # 7: models that did not train named (report, results, metrics), plots
                        # with error bars, labelled axes, rl_curves as small multiples
    source_objects = (chat, model_io, rollout, evaluation, rewards, sampler, report)
    config_cls = r1_config.EvaluateConfig
    models = luigi.ListParameter(default=[], description="models to evaluate, of "
                                 f"{list(EVAL_MODELS)} (default []: all); only their stages run")

    def upstream(self):
        stages = {"base": base_stage(self), "cold_start": ColdStartSft, "grpo": Grpo,
                  "grpo_zero": GrpoZero, "final": FinalRl, "student": Distill,
                  "student_rl": StudentGrpo}
        unknown = set(self.models) - set(stages)
        if unknown:
            raise ValueError(f"evaluate: unknown models {sorted(unknown)}; of {list(stages)}")
        return {**{n: self.clone(c) for n, c in stages.items()
                   if not self.models or n in self.models}, "data": self.clone(ReasoningData)}

    def build(self, ctx):
        c = self.config
        device = setup_torch(c)
        problems = rollout.subset(read_rows(ctx, "data", "problems-held_out.parquet"),
                                  c.max_problems, c.seed)
        results = {}
        models = {n: m for n, m in EVAL_MODELS.items() if m[0] in self.upstream()}
        bar = ctx.progress(total=len(models), desc="evaluate models")
        for name, (upstream, style) in models.items():
            bar.update_to(bar.n, f"{name}: {len(problems)} problems x {c.k} samples")
            _, tok, model = load_chat_model(ctx, upstream, c.max_seq_len, device)
            model = model_io.inference_model(model, c.dtype)
            res = evaluation.evaluate(model, problems, tok, k=c.k, temperature=c.temperature,
                                      top_p=c.top_p, max_new_tokens=c.max_new_tokens,
                                      style=style, seed=c.seed, batch_rows=c.batch_rows)
            bar.update(1, f"{name}: pass@1 {res['pass@1']:.3f} format {res['format_rate']:.2f}")
            art = ctx.input(upstream)
            results[name] = {**res, "stage": art.stage, "version": art.version,
                             "prompt_style": style, "params": model.num_params()}
            if name != "base":  # the pretrained base is the starting point, not a trained model
                results[name]["training"] = report.training_check(art.manifest["outputs"]["metrics"])
            del model
        bar.close()
        curves = {n: self.curve(ctx, n) for n in ("grpo", "grpo_zero", "final", "student_rl")
                  if n in results}
        diffs = report.paired_differences(results, c.k)
        out = local_dir(ctx, "report")
        report.write_report(results, diffs, curves, problems, self.stage_params, out)
        for name in ("report.md", "pass_at_1.png", "response_length.png", "rl_curves.png",
                     "results.json"):
            ctx.fs.put_file(str(out / name), ctx.output_path(name))
        finish(ctx)
        keep = ("pass@1", "pass@1_stderr", "pass@k", "correct_per_problem", "format_rate",
                "mean_response_tokens", "finished_rate", "per_task", "stage", "version",
                "training")
        return {"models": {n: {k: r[k] for k in keep if k in r} for n, r in results.items()},
                "paired_differences": diffs, "did_not_train": report.untrained_models(results),
                "held_out_problems": len(problems), "k": c.k}

    @staticmethod
    def curve(ctx, name: str) -> list[dict]:
        return ctx.input(name).manifest["outputs"]["metrics"].get("per_step", [])
