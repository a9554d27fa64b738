"""Post-training stages of DeepSeek-R1 (thin Luigi tasks over `stages.post_train`; reports,
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
`threads` CPU threads (or one GPU with device='cuda'; precision: stages.post_train's docstring)."""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import ClassVar

import luigi
import pyarrow as pa

from deeprecipe.pipeline.lazy import lazy_module
from deeprecipe.stages.generators import reasoning_data as rd
from deeprecipe.stages import report
from deeprecipe.stages import rewards

from .base import LOCAL_CACHE, StageTask, local_copy, local_dir
from .reasoning import ReasoningData
from .train import PretrainMoe, base_stage, put_hf_export

# imported on first use, so that reading the DAG (deeprecipe status) does not import torch
torch = lazy_module("torch")
grpo_losses = lazy_module("deeprecipe.stages.grpo")
hf_export = lazy_module("deeprecipe.stages.hf_export")
pt = lazy_module("deeprecipe.stages.post_train")
rl_state = lazy_module("deeprecipe.stages.rl_state")
sampler = lazy_module("deeprecipe.stages.sampler")
moe_model = lazy_module("deeprecipe.stages.moe_model")

MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")


# ----------------------------------------------------------------------------- helpers


def setup_torch(p: dict) -> torch.device:
    """Thread count and device of a post-training stage's parameters."""
    torch.set_num_threads(int(p.get("threads") or 1))
    torch.manual_seed(int(p.get("seed") or 0))
    device = p.get("device") or "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but torch sees no GPU; use --<Stage>-device cpu")
    if device == "cuda":  # fp32 matmuls outside autocast (reward model, samplers' fp32 ops)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return torch.device(device)


def model_folder(ctx, name: str, extra: tuple[str, ...] = ()) -> Path:
    """A local folder holding upstream model artifact `name` (its own folder on a local store)."""
    art = ctx.input(name)
    folder = local_dir(ctx, "inputs", name)
    paths = [local_copy(ctx, art, f, folder) for f in (*MODEL_FILES, *extra)]
    return paths[0].parent


def load_chat_model(ctx, name: str, max_seq_len: int, device: torch.device):
    """``(folder, tokenizer, model on device)`` of upstream model artifact ``name``."""
    folder = model_folder(ctx, name)
    tok = pt.ChatTokenizer.from_file(folder / "tokenizer.json")
    return folder, tok, pt.load_policy(folder, max_seq_len).to(device)


def read_rows(ctx, name: str, file: str) -> list[dict]:
    return ctx.input(name).read_table(file).to_pylist()


def put_model(ctx, model, tok_json: Path, rows: list[dict], plot_keys: tuple[str, ...],
              extra: tuple[str, ...] = ()) -> None:
    """Export the model as an HF-style folder plus metrics.jsonl and metrics.png into the
    artifact, and as a transformers checkpoint into its hf/."""
    out = local_dir(ctx, "export")
    pt.save_policy(model.cpu(), tok_json, out)
    put_hf_export(ctx, model, tok_json, out)
    pt.write_metrics(rows, out / "metrics.jsonl")
    report.plot_series(rows, plot_keys, out / "metrics.png", ctx.stage)
    for name in (*MODEL_FILES, *extra, "metrics.jsonl", "metrics.png"):
        ctx.fs.put_file(str(out / name), ctx.output_path(name))


def finish(ctx) -> None:
    if not ctx.store.is_local:
        shutil.rmtree(LOCAL_CACHE / ctx.stage / ctx.version, ignore_errors=True)


def sft_examples(tok: pt.ChatTokenizer, rows: list[dict], response_key: str,
                 max_response_tokens: int,
                 max_think_lines: int | None = None) -> list[tuple[list[int], list[int]]]:
    """Chat-format (prompt ids, response ids + EOS) of rows whose response fits the budget;
    max_think_lines (if set) keeps only the last lines of each `<think>` block."""
    pairs = [pt.sft_pair(tok, r["prompt"], pt.shorten_solution(r[response_key], max_think_lines))
             for r in rows]
    return [p for p in pairs if len(p[1]) <= max_response_tokens]


GRPO_PLOT = ("reward", "reward_accuracy", "reward_format", "kl", "clip_fraction", "response_len",
             "sampler_abs_gap", "grad_norm", "informative_groups")


# ----------------------------------------------------------------------------- data


# ----------------------------------------------------------------------------- SFT stages


class ColdStartSft(StageTask):
    """Cold start: SFT of the pretrained MoE on long-CoT responses rendered from the problems'
    solution templates (`<think>steps</think><answer>…</answer>`); `max_think_lines` > 0 keeps
    only the last lines of each reasoning block (tiny models learn the format from short
    renderings)."""
    code_version = "4"  # 4: hf/ (transformers export)
    source_objects = (pt, grpo_losses, hf_export, report)
    sft = luigi.OptionalDictParameter(default=None, description="stages.post_train.SFTConfig fields")
    max_response_tokens = luigi.OptionalIntParameter(default=None, description="SFT examples "
                                                     "whose response is longer (tokens) are left "
                                                     "out")
    max_think_lines = luigi.OptionalIntParameter(default=None,
                                                 description="0 = whole reasoning; N = last N lines")
    max_seq_len = luigi.OptionalIntParameter(default=None, description="context of post-training")
    threads = luigi.OptionalIntParameter(default=None, description="CPU threads for torch (CPU "
                                         "runs)")
    device = luigi.OptionalParameter(default=None, description="'cpu' or 'cuda'")

    def upstream(self):
        return {"base": self.clone(base_stage(self)), "data": self.clone(ReasoningData)}

    def build(self, ctx):
        p = self.stage_params
        device = setup_torch(p)
        folder, tok, model = load_chat_model(ctx, "base", p["max_seq_len"], device)
        train = read_rows(ctx, "data", "problems-train.parquet")
        held = read_rows(ctx, "data", "problems-held_out.parquet")
        examples = sft_examples(tok, train, "solution", p["max_response_tokens"],
                                p["max_think_lines"])
        held_examples = sft_examples(tok, held, "solution", p["max_response_tokens"],
                                     p["max_think_lines"])
        cfg = pt.SFTConfig(**{"seq_len": p["max_seq_len"], **dict(p["sft"])})
        held_before = pt.response_loss(model, held_examples, tok, cfg.seq_len, dtype=cfg.dtype)
        rows = pt.sft(model, examples, tok, cfg, on_step=sft_progress(ctx, cfg, len(examples)))
        held_after = pt.response_loss(model, held_examples, tok, cfg.seq_len, dtype=cfg.dtype)
        put_model(ctx, model, folder / "tokenizer.json", rows, ("loss", "lr"))
        finish(ctx)
        return {**report.loss_summary(rows), "examples": len(examples),
                "held_out_loss_before": held_before, "held_out_loss_after": held_after}


def non_reasoning_sft_rows(rows: list[dict]) -> list[dict]:
    return [{"prompt": r["prompt"], "response": r["solution"]} for r in rows]


class PretrainStudent(PretrainMoe):
    """The dense student's base: PretrainMoe's training (same token shards, tokenizer and
    trainer) on a dense config, `model` with `model_overrides` and every layer a dense FFN.
    distill and student_grpo both start from it, as R1's distilled and RL-only 32B models both
    start from Qwen-32B-Base."""

    def model_overrides_for(self, ctx) -> dict:
        base = moe_model.MOE_CONFIGS[self.stage_params["model"]]
        return pt.dense_overrides(base, **super().model_overrides_for(ctx))


class FinalSft(StageTask):
    """R1's final SFT: rejection-sampled reasoning + non-reasoning rows, on the pretrained BASE."""
    code_version = "3"  # 3: hf/ (transformers export)
    source_objects = (pt, grpo_losses, hf_export, report)
    sft = luigi.OptionalDictParameter(default=None, description="stages.post_train.SFTConfig "
                                      "fields")
    max_response_tokens = luigi.OptionalIntParameter(default=None, description="SFT examples "
                                                     "whose response is longer (tokens) are left "
                                                     "out")
    max_seq_len = luigi.OptionalIntParameter(default=None, description="context of post-training")
    threads = luigi.OptionalIntParameter(default=None, description="CPU threads for torch (CPU "
                                         "runs)")
    device = luigi.OptionalParameter(default=None, description="'cpu' or 'cuda'")

    def base_stage(self):
        return base_stage(self)

    def upstream(self):
        return {"base": self.clone(self.base_stage()), "samples": self.clone(RejectionSample)}

    def build(self, ctx):
        p = self.stage_params
        device = setup_torch(p)
        folder, tok, model = load_chat_model(ctx, "base", p["max_seq_len"], device)
        reasoning = read_rows(ctx, "samples", "samples.parquet")
        non_reasoning = read_rows(ctx, "samples", "non_reasoning.parquet")
        examples = sft_examples(tok, reasoning + non_reasoning, "response",
                                p["max_response_tokens"])
        cfg = pt.SFTConfig(**{"seq_len": p["max_seq_len"], **dict(p["sft"])})
        rows = pt.sft(model, examples, tok, cfg, on_step=sft_progress(ctx, cfg, len(examples)))
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
    (`stages.rl_state`: safetensors + JSON); an attempt that finds one there (the previous one
    was killed) continues from it instead of starting over. Not a parameter: how often a run
    saves does not change what it computes."""
    state_every_s: ClassVar[float] = 180.0
    code_version = "9"  # 4: is_weight / is_truncated; 5: grad_norm, update_rows; 6: the rl split;
    # 7: metrics kl_max, skipped; 8: hf/ (transformers export); 9: metrics.png a 3-column grid
    # with grad_norm and informative_groups
    source_objects = (pt, grpo_losses, rewards, sampler, rl_state, hf_export, report)
    grpo = luigi.OptionalDictParameter(default=None, description="stages.post_train.GRPOConfig fields")
    weights = luigi.OptionalDictParameter(default=None, description="rule reward weights")
    max_seq_len = luigi.OptionalIntParameter(default=None, description="context of post-training")
    threads = luigi.OptionalIntParameter(default=None, description="CPU threads for torch (CPU "
                                         "runs)")
    device = luigi.OptionalParameter(default=None, description="'cpu' or 'cuda'")

    def init_stage(self):
        raise NotImplementedError

    def upstream(self):
        return {"init": self.clone(self.init_stage()), "data": self.clone(ReasoningData)}

    def reward_fn(self, ctx, cfg: pt.GRPOConfig, tok) -> pt.RewardFn:
        return pt.rule_reward(dict(self.stage_params["weights"]))

    def problems(self, ctx) -> list[dict]:
        return rd.rl_problems(ctx.input("data"))

    def grpo_config(self, ctx) -> pt.GRPOConfig:
        return pt.GRPOConfig(**dict(self.stage_params["grpo"]))

    def build(self, ctx):
        p = self.stage_params
        device = setup_torch(p)
        folder, tok, policy = load_chat_model(ctx, "init", p["max_seq_len"], device)
        cfg = self.grpo_config(ctx)
        bar = ctx.progress(total=cfg.steps, desc=f"{self.stage} steps")
        bar.update_to(0, "sampling the first batch")
        rows = pt.grpo_train(policy, self.problems(ctx), tok, cfg, self.reward_fn(ctx, cfg, tok),
                             on_step=lambda r: bar.update_to(r["step"] + 1, grpo_step_message(r)),
                             state_dir=local_dir(ctx, "rl_state"),
                             save_every_s=self.state_every_s)
        bar.close()
        put_model(ctx, policy, folder / "tokenizer.json", rows, GRPO_PLOT + ("reward_preference",))
        finish(ctx)
        return report.grpo_summary(rows)


def sft_progress(ctx, cfg, n_examples: int):
    """An on_step for pt.sft: steps (epochs x batches of one example per row), loss, tokens."""
    bar = ctx.progress(total=cfg.epochs * -(-n_examples // cfg.batch_rows), desc=f"{ctx.stage} steps")
    t0 = [time.time()]

    def on_step(r: dict) -> None:
        now = time.time()
        tps = r["tokens"] / max(now - t0[0], 1e-9)
        t0[0] = now
        bar.update_to(r["step"] + 1, f"epoch {r['epoch']} loss {r['loss']:.4f} lr {r['lr']:.3g} "
                                     f"{tps:.0f} tok/s")
    return on_step


def grpo_step_message(r: dict) -> str:
    """One GRPO step for the progress line: reward, accuracy, KL, gradient norm, length, time."""
    secs = r.get("sample_s", 0.0) + r.get("update_s", 0.0)
    return (f"reward {r['reward']:.3f} acc {r.get('accuracy', 0.0):.2f} kl {r.get('kl', 0.0):.3g} "
            f"gnorm {r.get('grad_norm', 0.0):.3g} len {r.get('response_len', 0.0):.0f} "
            f"informative {r.get('informative_groups', 0.0):.2f} {secs:.1f}s/step")


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
    the profile's `grpo` dict must not set `steps`."""

    def init_stage(self):
        return PretrainStudent

    def upstream(self):
        return {**super().upstream(), "distill": self.clone(Distill)}

    def grpo_config(self, ctx) -> pt.GRPOConfig:
        fields = dict(self.stage_params["grpo"])
        if "steps" in fields:
            raise ValueError("student_grpo takes its step count from distill's manifest; "
                             "drop 'steps' from --StudentGrpo-grpo")
        steps = ctx.input("distill").manifest["outputs"]["metrics"]["steps"]
        return pt.GRPOConfig(**fields, steps=steps)


class FinalRl(GrpoBase):
    """Final RL from final_sft: rule rewards on reasoning problems; on the preference prompts
    (safety / helpfulness) the reward model's score (sigmoid) joins the format reward, only in
    the last `preference_from` share of the steps. The preference prompts are repeated to make
    up `preference_share` of the prompt pool (a few dozen next to thousands of problems would
    otherwise almost never be drawn)."""
    preference_from = luigi.OptionalFloatParameter(default=None,
                                                   description="share of steps before the RM reward")
    preference_share = luigi.OptionalFloatParameter(
        default=None, description="share of the prompt pool the preference prompts make up")

    def upstream(self):
        return {**super().upstream(), "reward_model": self.clone(RewardModel)}

    def init_stage(self):
        return FinalSft

    def problems(self, ctx):
        problems = super().problems(ctx)
        prefs = [r for r in read_rows(ctx, "data", "preferences.parquet") if r["split"] == rd.TRAIN]
        return pt.mix_in(problems, [{"id": r["id"], "task": r["task"], "prompt": r["prompt"],
                                  "answer": "", "meta": "{}"} for r in prefs],
                      self.stage_params["preference_share"])

    def reward_fn(self, ctx, cfg, tok):
        rm_folder = model_folder(ctx, "reward_model", ("reward_head.safetensors",))
        rm = pt.RewardModel.load(rm_folder).to(self.stage_params["device"] or "cpu")
        return pt.preference_reward(rm, tok, dict(self.stage_params["weights"]),
                                 int(cfg.steps * self.stage_params["preference_from"]))


class RewardModel(StageTask):
    """Pairwise (Bradley-Terry) reward model: a scalar head on the pretrained base, trained on
    the safety / helpfulness preference pairs."""
    code_version = "2"
    source_objects = (pt, grpo_losses, report)
    rm = luigi.OptionalDictParameter(default=None, description="stages.r1.config.RewardModelConfig fields")
    threads = luigi.OptionalIntParameter(default=None, description="CPU threads for torch (CPU "
                                         "runs)")
    device = luigi.OptionalParameter(default=None, description="'cpu' or 'cuda'")

    def upstream(self):
        return {"base": self.clone(base_stage(self)), "data": self.clone(ReasoningData)}

    def build(self, ctx):
        p = self.stage_params
        device = setup_torch(p)
        folder = model_folder(ctx, "base")
        tok = pt.ChatTokenizer.from_file(folder / "tokenizer.json")
        rm = pt.RewardModel(pt.load_policy(folder)).to(device)
        pairs = read_rows(ctx, "data", "preferences.parquet")
        train = [r for r in pairs if r["split"] == rd.TRAIN]
        held = [r for r in pairs if r["split"] == rd.HELD_OUT]
        acc_before = pt.preference_accuracy(rm, train, tok)
        rows = pt.train_reward_model(rm, train, tok, pt.RewardModelConfig(**dict(p["rm"])))
        out = local_dir(ctx, "export")
        rm.cpu().save(folder / "tokenizer.json", out)
        pt.write_metrics(rows, out / "metrics.jsonl")
        report.plot_series(rows, ("loss", "accuracy"), out / "metrics.png", ctx.stage)
        for name in (*MODEL_FILES, "reward_head.safetensors", "metrics.jsonl", "metrics.png"):
            ctx.fs.put_file(str(out / name), ctx.output_path(name))
        finish(ctx)
        return {**report.loss_summary(rows), "pairs": len(train), "train_accuracy_before": acc_before,
                "train_accuracy": pt.preference_accuracy(rm, train, tok),
                "held_out_pairs": len(held),
                "held_out_accuracy": pt.preference_accuracy(rm, held, tok) if held else None}


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
    source_objects = (pt, rewards, sampler)
    max_problems = luigi.OptionalIntParameter(default=None, description="RL problems to sample "
                                              "(seeded subset; 0 = all)")
    batch_rows = luigi.OptionalIntParameter(default=None, description="rows per generate call")
    dtype = luigi.OptionalParameter(default=None, description="'bf16': sample in bf16 on CUDA")
    n_samples = luigi.OptionalIntParameter(default=None, description="samples per prompt")
    max_new_tokens = luigi.OptionalIntParameter(default=None, description="longest sampled "
                                                "response (tokens)")
    temperature = luigi.OptionalFloatParameter(default=None, description="sampling temperature")
    max_paragraph_chars = luigi.OptionalIntParameter(default=None, description="samples with a "
                                                     "longer reasoning paragraph are rejected "
                                                     "(readability)")
    max_seq_len = luigi.OptionalIntParameter(default=None, description="context of post-training")
    seed = luigi.OptionalIntParameter(default=None, description="sampling seed")
    threads = luigi.OptionalIntParameter(default=None, description="CPU threads for torch (CPU "
                                         "runs)")
    device = luigi.OptionalParameter(default=None, description="'cpu' or 'cuda'")

    def upstream(self):
        return {"policy": self.clone(Grpo), "data": self.clone(ReasoningData)}

    def build(self, ctx):
        p = self.stage_params
        device = setup_torch(p)
        _, tok, policy = load_chat_model(ctx, "policy", p["max_seq_len"], device)
        policy = pt.inference_model(policy, p["dtype"])
        problems = pt.subset(rd.rl_problems(ctx.input("data")), p["max_problems"], p["seed"])
        kept, stats = pt.rejection_sample(policy, problems, tok, p["n_samples"], p["max_new_tokens"],
                                          p["temperature"], 1.0, p["max_paragraph_chars"], p["seed"],
                                          p["batch_rows"])
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
    source_objects = (pt, rewards, sampler, report)
    batch_rows = luigi.OptionalIntParameter(default=None, description="rows per generate call")
    dtype = luigi.OptionalParameter(default=None, description="'bf16': sample in bf16 on CUDA")
    k = luigi.OptionalIntParameter(default=None, description="samples per problem (pass@1 is "
                                   "averaged over them)")
    temperature = luigi.OptionalFloatParameter(default=None, description="sampling temperature "
                                               "(R1: 0.6)")
    top_p = luigi.OptionalFloatParameter(default=None, description="nucleus sampling threshold "
                                         "(R1: 0.95)")
    max_new_tokens = luigi.OptionalIntParameter(default=None, description="longest sampled "
                                                "response (tokens)")
    max_problems = luigi.OptionalIntParameter(default=None, description="held-out problems "
                                              "evaluated (a seeded sample)")
    max_seq_len = luigi.OptionalIntParameter(default=None, description="context of post-training")
    seed = luigi.OptionalIntParameter(default=None, description="sampling seed")
    threads = luigi.OptionalIntParameter(default=None, description="CPU threads for torch (CPU "
                                         "runs)")
    device = luigi.OptionalParameter(default=None, description="'cpu' or 'cuda'")
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
        p = self.stage_params
        device = setup_torch(p)
        problems = pt.subset(read_rows(ctx, "data", "problems-held_out.parquet"),
                             p["max_problems"], p["seed"])
        results = {}
        models = {n: m for n, m in EVAL_MODELS.items() if m[0] in self.upstream()}
        bar = ctx.progress(total=len(models), desc="evaluate models")
        for name, (upstream, style) in models.items():
            bar.update_to(bar.n, f"{name}: {len(problems)} problems x {p['k']} samples")
            _, tok, model = load_chat_model(ctx, upstream, p["max_seq_len"], device)
            model = pt.inference_model(model, p["dtype"])
            res = pt.evaluate(model, problems, tok, p["k"], p["temperature"], p["top_p"],
                              p["max_new_tokens"], style, p["seed"], p["batch_rows"])
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
        diffs = report.paired_differences(results, p["k"])
        out = local_dir(ctx, "report")
        report.write_report(results, diffs, curves, problems, p, out)
        for name in ("report.md", "pass_at_1.png", "response_length.png", "rl_curves.png",
                     "results.json"):
            ctx.fs.put_file(str(out / name), ctx.output_path(name))
        finish(ctx)
        keep = ("pass@1", "pass@1_stderr", "pass@k", "correct_per_problem", "format_rate",
                "mean_response_tokens", "finished_rate", "per_task", "stage", "version",
                "training")
        return {"models": {n: {k: r[k] for k in keep if k in r} for n, r in results.items()},
                "paired_differences": diffs, "did_not_train": report.untrained_models(results),
                "held_out_problems": len(problems), "k": p["k"]}

    @staticmethod
    def curve(ctx, name: str) -> list[dict]:
        return ctx.input(name).manifest["outputs"]["metrics"].get("per_step", [])
