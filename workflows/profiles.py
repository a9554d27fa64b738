"""Profiles: each stage's parameter values at one scale. A command-line value
(``--UrlDedup-num-buckets 8``) overrides the profile's; the resolved values form the key."""
from __future__ import annotations

PROFILES: dict[str, dict[str, dict]] = {
    "tiny": {  # 2-core CPU, minutes: README default and CI
        "synthetic_crawl": {"seed": 0, "num_files": 4, "pages_per_file": 400},
        "crawl_ingest": {"files_per_shard": 1, "max_chars": 1_000_000},
        "url_dedup": {"num_buckets": 4},
    },
    "small": {  # one H100/H200 host
        "synthetic_crawl": {"seed": 0, "num_files": 32, "pages_per_file": 4000},
        "crawl_ingest": {"files_per_shard": 1, "max_chars": 1_000_000},
        "url_dedup": {"num_buckets": 32},
    },
    "cluster": {  # many hosts sharing luigid; give --source s3://... and --store s3://...
        "synthetic_crawl": {"seed": 0, "num_files": 256, "pages_per_file": 4000},
        "crawl_ingest": {"files_per_shard": 1, "max_chars": 1_000_000},
        "url_dedup": {"num_buckets": 256},
    },
}


class ProfileError(ValueError):
    pass


def profile_params(profile: str, stage: str) -> dict:
    if profile not in PROFILES:
        raise ProfileError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    return dict(PROFILES[profile].get(stage, {}))

for _name, _stages in {
    "tiny": {"tokenizer_train": {"vocab_size": 2048, "min_frequency": 2, "max_docs": 20000},
             "tokenize_pack": {"seq_len": 128, "val_fraction": 0.05, "temperature": 2.0,
                               "fim_rate": 0.1, "source_column": "domain", "seed": 0,
                               "reasoning_share": 0.25},
             "reasoning_corpus": {"seed": 0, "extra_per_task_level": 200, "tagged_frac": 0.05}},
    "small": {"tokenizer_train": {"vocab_size": 32768, "min_frequency": 2, "max_docs": 500000},
              "tokenize_pack": {"seq_len": 2048, "val_fraction": 0.01, "temperature": 2.0,
                                "fim_rate": 0.1, "source_column": "domain", "seed": 0,
                                "reasoning_share": 0.5},
              "reasoning_corpus": {"seed": 0, "extra_per_task_level": 6000, "tagged_frac": 0.1}},
    "cluster": {"tokenizer_train": {"vocab_size": 129280, "min_frequency": 2, "max_docs": 5000000},
                "tokenize_pack": {"seq_len": 4096, "val_fraction": 0.001, "temperature": 2.0,
                                  "fim_rate": 0.1, "source_column": "domain", "seed": 0,
                                  "reasoning_share": 0.2},
                "reasoning_corpus": {"seed": 0, "extra_per_task_level": 50000, "tagged_frac": 0.05}},
}.items():
    PROFILES[_name].update(_stages)

for _name, _scale in {"tiny": 1, "small": 10, "cluster": 100}.items():
    PROFILES[_name].update({
        "minhash_dedup": {"threshold": 0.8, "num_perm": 112, "ngram": 5, "bands": 0, "rows_per_band": 0,
                          "seed": 1, "verify": True, "shingle_hash": "word_combine"},
        "simhash_dedup": {"max_distance": 3, "min_sentence_words": 5, "min_doc_words": 50},
        "reference_lm": {"order": 3, "seed_source": "builtin", "seed_docs": 300 * _scale},
        "quality_classifier": {"seed_source": "builtin", "seed_docs": 300 * _scale, "rounds": 3,
                               "high_score": 0.5, "min_pages": 3, "prefix_hq_frac": 0.1,
                               "max_crawl_docs": 5000 * _scale},
        "quality_filter": {"group_column": "domain", "ppl_drop_percentile": 95.0, "ppl_drop_min_ratio": 2.0,
                           "min_hq_score": 0.0,
                           "langs": [], "heuristics": True,
                           "ignore_rules": ["curly_bracket"]},
        "pii_redact": {"types": []},
        "decontaminate": {"ngram": 13, "eval_sources": ["builtin"]},
    })

# Router-bias speed for runs of thousands (not V3's ~10^6) of steps: gamma decays geometrically
# 0.03 -> 0.001 (V3's value) over the run, 0 in the last 5 %. On `small` for 500 steps it
# balanced better than the alpha = 0.01 aux loss (max/mean 1.85 vs 1.93) at an equal or lower
# validation loss, where constant 0.001 reached 2.20 (BENCHMARKS.md, balancing ablation).
_SHORT_RUN_GAMMA = {"gamma_start": 0.03, "gamma_decay_frac": 1.0}

PROFILES["tiny"]["pretrain_moe"] = {
    "model": "tiny", "model_overrides": {}, "gpus": 0,
    "train": {"steps": 100, "micro_batch": 8, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 10,
              "zero_stage": 0, "dtype": "fp32", "checkpoint_every_steps": 40,
              "checkpoint_every_minutes": 10.0, "log_every": 25, "seed": 0}}
PROFILES["small"]["pretrain_moe"] = {
    "model": "small", "model_overrides": {}, "gpus": 1,
    "train": {"steps": 2000, "micro_batch": 32, "lr": 3e-4, "min_lr": 3e-5, "warmup_steps": 200,
              "zero_stage": 1, "dtype": "bf16", "checkpoint_every_steps": 500,
              "checkpoint_every_minutes": 10.0, "log_every": 10, "seed": 0, "compile": True,
              **_SHORT_RUN_GAMMA}}
PROFILES["cluster"]["pretrain_moe"] = {
    "model": "small", "model_overrides": {}, "gpus": 8,
    "train": {"steps": 20000, "micro_batch": 16, "lr": 3e-4, "min_lr": 3e-5, "warmup_steps": 2000,
              "zero_stage": 2, "dtype": "bf16", "checkpoint_every_steps": 1000,
              "checkpoint_every_minutes": 10.0, "log_every": 10, "seed": 0, "compile": True,
              **_SHORT_RUN_GAMMA}}

# Post-training (R1). tiny: level-1 problems, a few dozen optimiser steps per stage, so that
# RunR1Pipeline finishes on 2 CPU cores in minutes (the loops run; tiny models learn the format,
# not arithmetic). tiny cold start keeps only the last reasoning line (think_lines = 1) and
# 64-token responses: the tiny base was pretrained on 128-token rows (ctx 384 fits the
# longest R1-Zero prompt, ~300 tokens, plus 64 new ones).
#
# small: one H200, full CoT, sized so that bench/r1_small.py runs the whole RunR1Pipeline in
# three commands of <= 9.5 min (data, base, post; about 18 min in all). Rates measured on one
# H200 (2026-11, random-init `small`, worst case: every row runs to max_new_tokens):
#   GRPO step, MoE, 16 prompts x G 16, 512 new tokens: sampling 3.2 s + update 1.6-2.0 s ~ 5 s
#   GRPO step, MoE, R1-Zero prompts, 256 new tokens: ~2.2 s + ~1.6 s ~ 3.8 s (estimated)
#   GRPO step, dense student, R1-Zero, 256 new: 0.7-0.85 s + 0.7-1.0 s ~ 1.7 s
#   SFT step: MoE 32 rows 0.17 s; student 64 rows 0.10 s
#   evaluate, 256 problems x k 4 = 1024 rows in one generate call, 512 new: MoE 8.7 s, student 6.3 s
#   pretraining (BENCHMARKS.md): MoE 227k tokens/s at 32 x 2048 tokens per step, compiled
# Estimated, not measured: ~10 s per MoE stage to load, save and digest a 2.8 GB fp32
# checkpoint; data (--crawl-files 16 in the bench) ~3 min on 16 cores; the dense student's
# pretraining ~0.1 s per step; compile/DeepSpeed start-up ~30-60 s per pretraining run.
# base (measured on the first run, 500 steps each): pretrain_moe 0.31 s/step + ~75 s start-up
#   + ~160 s checkpoint/export/validation (validation now on the GPU); pretrain_student
#   0.06 s/step + ~50 s; cold_start_sft 224 steps 61 s; reward_model 19 s. bench/r1_small.py
#   runs 700 and 1500 steps                                          -> ~9.5 min
# post: grpo 40 x 8.5 s (512 rollouts: 5.0 s sampling + 3.5 s update; run 5 measured 353 s
#   with loads and saves); grpo_zero 30 x 3.8 s = 114 s; rejection_sample 2048 problems x
#   2 = 4096 rows, 4 calls x ~8 s = 32 s; final_sft ~1500 kept samples x 2 / 32 = ~95 steps
#   ~ 16 s; final_rl 4 x 8.5 s = 34 s; distill ~1500 x 2 / 64 = ~47 steps ~ 5 s; student_grpo
#   as many steps x 1.7 s ~ 80 s; evaluate 5 x 8.7 + 2 x 6.3 ~ 56 s; loads/saves ~ 80 s
#                                                                     -> ~12.5 min
# (a post phase cut off by the 9.5-min budget keeps its committed stages: a 4th command
# `--phase post` finishes the rest; run 5: 560 s + 330 s).
# Problems: n per (task, level), cut by id hash into held-out 20 %, rl (rl_frac) and train (the
# rest: cold-start SFT and the pretraining corpus). The RL stages and rejection sampling draw
# only rl problems, which no earlier stage showed solved, as R1's RL prompts are not its cold
# start's few thousand examples. small: 1500 x 9 -> ~2700 held-out, ~6750 rl, ~4050 SFT.
# Until the seventh session RL drew the cold start's own problems (seen twice in SFT and in
# pretraining): its accuracy reward measured recall as much as reasoning.
# GRPO from the cold start (grpo, final_rl): R1's settings, 32 prompts x G 16 = 512 rollouts a
# step at lr 3e-6, 40 steps over 1280 distinct problems. Measured (BENCHMARKS.md, sixth session):
# the held-out loss GRPO showed at higher lr is the update's noise, not a bad reward signal -- 15
# steps at 3e-5 with each group's rewards shuffled (no signal, same advantage sizes) cost 34
# points, the real rewards 22, the same at 64 prompts a step 10; 20 steps at 3e-6 lose nothing
# (0.800 -> 0.811). Truncated IS weights at cap 2 (the measured bf16-sampler mismatch is ~1e-5
# nats a token: they almost never bind), one update per batch of rollouts
# (DeepSeekMath's mu = 1). 512 new tokens fit the longest level-3 CoT (a 4 x 3-digit long
# multiplication, ~600 tokens with a 2k vocabulary, fewer with 32k); the R1-Zero runs
# (grpo_zero, student_grpo) get 256: enough to learn the tags, at half the sampling cost.
for _name, _p in {
    "tiny": {"n": 60, "rl_frac": 0.3, "levels": [1], "ctx": 384, "new": 64, "new_zero": 64,
             "threads": 1,
             "device": "cpu", "dtype": "fp32", "think_lines": 1,
             "sft_epochs": 5, "sft_batch": 8, "sft_lr": (3e-3, 3e-4),
             "final_sft_epochs": 8, "final_sft_batch": 4,
             "distill_epochs": 4, "distill_batch": 16, "distill_lr": (3e-3, 3e-4),
             "distill_micro_rows": 0,
             "rl_steps": 12, "zero_steps": 12, "final_rl_steps": 12, "prompts": 4, "G": 4,
             "prompts_rl": 4,
             "lr_rl": 1e-4, "lr_zero": 1e-4, "mu": 2, "micro_rows": 64, "sample_rows": 64,
             "k": 4, "eval_n": 16, "rs_problems": 0, "rs_n": 4, "rm_lr": 1e-3,
             "student": {"d_model": 96, "n_layers": 2, "n_heads": 4, "head_dim": 24,
                         "d_ff_dense": 384},
             "student_train": {"steps": 40, "warmup_steps": 5, "checkpoint_every_steps": 40}},
    "small": {"n": 1500, "rl_frac": 0.5, "levels": [1, 2, 3], "ctx": 1024, "new": 512,
              "new_zero": 256,
              "threads": 8, "device": "cuda", "dtype": "bf16", "think_lines": 0,
              "sft_epochs": 2, "sft_batch": 32, "sft_lr": (1e-4, 1e-5),
              "final_sft_epochs": 2, "final_sft_batch": 32,
              "distill_epochs": 2, "distill_batch": 256, "distill_lr": (6e-4, 6e-5),
              "distill_micro_rows": 64,
              "rl_steps": 40, "zero_steps": 30, "final_rl_steps": 4, "prompts": 16, "G": 16,
              "prompts_rl": 32, "lr_rl": 3e-6, "lr_zero": 2e-5, "mu": 1, "micro_rows": 32,
              "sample_rows": 256,
              "k": 4, "eval_n": 256, "rs_problems": 0, "rs_n": 2, "rm_lr": 1e-5,
              "student": {"d_model": 512, "n_layers": 8, "n_heads": 8, "head_dim": 64,
                          "d_ff_dense": 1408, "attention": "mha", "mtp_depth": 0},
              "student_train": {"lr": 6e-4, "min_lr": 6e-5}},
}.items():
    _run = {"threads": _p["threads"], "device": _p["device"]}
    _sft = {"epochs": _p["sft_epochs"], "batch_rows": _p["sft_batch"], "lr": _p["sft_lr"][0],
            "min_lr": _p["sft_lr"][1], "dtype": _p["dtype"], "seed": 0}

    def _grpo(steps: int | None, new: int, lr: float, style: str, prompts: int) -> dict:
        """GRPOConfig fields; steps None: the stage decides (student_grpo: distill's count)."""
        out = {"prompts_per_step": prompts, "group_size": _p["G"], "max_new_tokens": new,
               "temperature": 1.0, "lr": lr, "beta": 0.04, "clip_eps": 0.2,
               "updates_per_batch": _p["mu"], "sampler_is_cap": 2.0,
               "ref_reset_every": max(2, (steps or _p["zero_steps"]) // 2),
               "micro_batch_rows": _p["micro_rows"], "sample_batch_rows": _p["sample_rows"],
               "dtype": _p["dtype"], "prompt_style": style, "seed": 0}
        return out if steps is None else {"steps": steps, **out}
    _sampling = {"batch_rows": _p["k"] * _p["eval_n"] if _name == "small" else _p["sample_rows"],
                 "dtype": _p["dtype"]}
    _moe_train = PROFILES[_name]["pretrain_moe"]["train"]
    PROFILES[_name].update({
        "reasoning_data": {"seed": 0, "n_per_task_level": _p["n"],
                           "tasks": ["arithmetic", "word_problem", "counting"],
                           "levels": _p["levels"], "held_out_frac": 0.2,
                           "rl_frac": _p["rl_frac"], "n_factual_qa": 40,
                           "max_sentence_words": 16, "problem_files": [], "sft_files": []},
        "cold_start_sft": {"sft": _sft, "max_response_tokens": _p["new"],
                           "max_think_lines": _p["think_lines"],
                           "max_seq_len": _p["ctx"], **_run},
        "grpo": {"grpo": _grpo(_p["rl_steps"], _p["new"], _p["lr_rl"], "chat", _p["prompts_rl"]),
                 "weights": {"accuracy": 1.0, "format": 1.0, "language": 1.0},
                 "max_seq_len": _p["ctx"], **_run},
        "grpo_zero": {"grpo": {**_grpo(_p["zero_steps"], _p["new_zero"], _p["lr_zero"],
                                       "r1_zero", _p["prompts"]), "freeze_router": True},
                      "weights": {"accuracy": 1.0, "format": 1.0, "language": 0.0},
                      "max_seq_len": _p["ctx"], **_run},
        "rejection_sample": {"n_samples": _p["rs_n"], "max_problems": _p["rs_problems"],
                             "max_new_tokens": _p["new"], "temperature": 1.0,
                             "max_paragraph_chars": 2000, "max_seq_len": _p["ctx"], "seed": 0,
                             **_sampling, **_run},
        "reward_model": {"rm": {"epochs": 3, "batch_pairs": 8, "lr": _p["rm_lr"], "seed": 0},
                         **_run},
        "final_sft": {"sft": {**_sft, "epochs": _p["final_sft_epochs"],
                              "batch_rows": _p["final_sft_batch"]},
                      "max_response_tokens": _p["new"],
                      "max_seq_len": _p["ctx"], **_run},
        "final_rl": {"grpo": _grpo(_p["final_rl_steps"], _p["new"], _p["lr_rl"], "chat",
                                   _p["prompts_rl"]),
                     "weights": {"accuracy": 1.0, "format": 1.0, "language": 1.0},
                     "preference_from": 0.75, "preference_share": 0.25,
                     "max_seq_len": _p["ctx"], **_run},
        # The dense student's base: PretrainMoe's schedule on the same token shards (no router,
        # so no gamma); distill and student_grpo both start from it.
        "pretrain_student": {
            "model": PROFILES[_name]["pretrain_moe"]["model"], "model_overrides": _p["student"],
            "gpus": PROFILES[_name]["pretrain_moe"]["gpus"],
            "train": {**{k: v for k, v in _moe_train.items() if not k.startswith("gamma")},
                      **_p["student_train"]}},
        "distill": {"sft": {**_sft, "epochs": _p["distill_epochs"],
                            "batch_rows": _p["distill_batch"], "lr": _p["distill_lr"][0],
                            "min_lr": _p["distill_lr"][1],
                            "micro_batch_rows": _p["distill_micro_rows"]},
                    "max_response_tokens": _p["new"], "max_seq_len": _p["ctx"], **_run},
        # RL alone on the student base, R1-Zero style, for as many optimiser steps as distill's
        # SFT took (the stage reads the count from distill's manifest).
        "student_grpo": {"grpo": _grpo(None, _p["new_zero"], _p["lr_zero"], "r1_zero",
                                       _p["prompts"]),
                         "weights": {"accuracy": 1.0, "format": 1.0, "language": 0.0},
                         "max_seq_len": _p["ctx"], **_run},
        "evaluate": {"k": _p["k"], "temperature": 0.6, "top_p": 0.95, "max_new_tokens": _p["new"],
                     "max_problems": _p["eval_n"], "max_seq_len": _p["ctx"], "seed": 0,
                     **_sampling, **_run},
    })

# cluster: pretraining needs reasoning_data (its train split is the pretraining corpus's
# reasoning source); small's problems, ten times as many. Post-training has no cluster entries
# yet: RunR1Pipeline --profile cluster stops at the first stage without them, naming its unset
# parameters (`VersionedTask.stage_params`).
PROFILES["cluster"]["reasoning_data"] = {**PROFILES["small"]["reasoning_data"],
                                         "n_per_task_level": 15000}
