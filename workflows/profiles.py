"""Profiles: each stage's parameter values at one scale. A command-line value
(``--UrlDedup-num-buckets 8``) overrides the profile's; the resolved values form the key."""
from __future__ import annotations

PROFILES: dict[str, dict[str, dict]] = {
    "tiny": {  # 2-core CPU, minutes: README default and CI
        "synthetic_crawl": {"seed": 0, "num_files": 4, "pages_per_file": 400},
        "crawl_ingest": {"files_per_shard": 1, "max_chars": 1_000_000, "extractor": "hybrid"},
        "url_dedup": {"num_buckets": 4},
    },
    "small": {  # one H100/H200 host
        "synthetic_crawl": {"seed": 0, "num_files": 32, "pages_per_file": 4000},
        "crawl_ingest": {"files_per_shard": 1, "max_chars": 1_000_000, "extractor": "hybrid"},
        "url_dedup": {"num_buckets": 32},
    },
    "cluster": {  # many hosts sharing luigid; give --source s3://... and --store s3://...
        "synthetic_crawl": {"seed": 0, "num_files": 256, "pages_per_file": 4000},
        "crawl_ingest": {"files_per_shard": 1, "max_chars": 1_000_000, "extractor": "hybrid"},
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
# small: one H200, full CoT, sized so that bench/r1_small.py runs the whole RunR1Pipeline on one
# machine within its 30 minutes, in four commands of <= 9.5 min (data, base, rl, post).
# Measured on one H200 (2026-11, eighth and ninth sessions, runs 6-8; BENCHMARKS.md):
#   data (--crawl-files 16, 16 cores) 177-241 s
#   base: pretrain_moe 800 steps 322-354 s (val 0.543), pretrain_student 800 steps 78-87 s,
#     cold_start_sft 256 steps 76-95 s, reward_model 17-25 s                  -> 515-580 s
#   rl: grpo 8-9 s a step (512 rollouts: ~4.7 s sampling + 3-4 s update; 30 steps 276-280 s
#     with load and save), rejection_sample of all 6,708 rl problems x 2 (13,416 rows) 47-53 s
#                                                                            -> ~330-345 s
#   post: grpo_zero 30 steps 131-149 s, final_sft 6.4k samples x 2 / 32 = 406 steps 59-70 s,
#     distill 22-29 s, final_rl 4 steps 52-61 s, student_grpo ~1.2 s a step (as many steps as
#     distill: 104 -> 119-127 s), evaluate 7 models 55-61 s                  -> ~440-500 s
# The machines differ by up to 15 % in speed, so grpo runs 30 steps: 40 left no margin.
# Problems: n per (task, level), cut by id hash into held-out 20 %, rl (rl_frac) and train (the
# rest: cold-start SFT and the pretraining corpus). The RL stages and rejection sampling draw
# only rl problems, which no earlier stage showed solved, as R1's RL prompts are not its cold
# start's few thousand examples. small: 1500 x 9 -> ~2700 held-out, ~6750 rl, ~4050 SFT.
# Until the seventh session RL drew the cold start's own problems (seen twice in SFT and in
# pretraining): its accuracy reward measured recall as much as reasoning.
# GRPO from the cold start (grpo, final_rl): R1's settings, 32 prompts x G 16 = 512 rollouts a
# step at lr 3e-6, 30 steps over 960 distinct problems. Measured (BENCHMARKS.md, sixth session):
# the held-out loss GRPO showed at higher lr is the update's noise, not a bad reward signal -- 15
# steps at 3e-5 with each group's rewards shuffled (no signal, same advantage sizes) cost 34
# points, the real rewards 22, the same at 64 prompts a step 10; 20 steps at 3e-6 lose nothing
# (0.800 -> 0.811). Truncated IS weights at cap 2 (the measured bf16-sampler mismatch is ~1e-5
# nats a token: they almost never bind), one update per batch of rollouts
# (DeepSeekMath's mu = 1). 512 new tokens fit the longest level-3 CoT (a 4 x 3-digit long
# multiplication, ~600 tokens with a 2k vocabulary, fewer with 32k); the R1-Zero runs
# (grpo_zero, student_grpo) get 256: enough to learn the tags, at half the sampling cost.
# grpo_zero keeps the MoE routers frozen (R1-Zero from a base that almost never answers in
# format): run 4 (frozen) format -> 0.98, held-out 0.556; runs 5 and 6 (routers training)
# 0.312 and 0.140, run 6's format stuck at ~0.3 after one step blew up (grad norm 3.0, KL 0.24
# at step 3); run 7 (frozen) format 0.000 -> 0.937. Rejection sampling covers every rl problem
# (run 7: 6,429 kept of 13,416, final 0.777 vs 0.697 from 2,054 kept in run 6). distill takes
# 128 rows a step (run 8: 104 steps, student 0.728, 0.89 of its teacher; run 7 at 256 rows:
# 52 steps, 0.483; run 6 at 64 rows: 66 steps on a third of the samples, 0.560);
# student_grpo gets as many steps of 256 rollouts each. grpo_zero's format emergence is not
# seed-proof: the same version reached 0.98 on one machine and collapsed after one update
# spike on another (run 8). Tenth session, 9 runs from one base (bench/grpo_ablation.py --start
# base): format reached >= 0.95 in the last quarter in 7; the two failures were a late onset
# (seed 3: no formatted group until step 16, then a gradient spike, 3.2 at step 21: 0.79) and
# kl_clamp 10 (format never appeared). The onset step (format >= 0.5) ranged 5 to 20 and is the
# main risk: the base formats ~1 in 256 samples at step 0. small sets skip_grad_spike 4 (skip an
# update above 4x the median of the last 8 norms, never below grad_clip): it fired in none of
# its 4 runs (no harm) and, replayed, would skip the spike of both failing unguarded runs.
_R1_SIZES = {
    "tiny": {"n": 60, "rl_frac": 0.3, "levels": [1], "ctx": 384, "new": 64, "new_zero": 64,
             "threads": 1,
             "device": "cpu", "dtype": "fp32", "think_lines": 1,
             "sft_epochs": 5, "sft_batch": 8, "sft_lr": (3e-3, 3e-4),
             "final_sft_epochs": 8, "final_sft_batch": 4,
             "distill_epochs": 4, "distill_batch": 16, "distill_lr": (3e-3, 3e-4),
             "distill_micro_rows": 0,
             "rl_steps": 12, "zero_steps": 12, "final_rl_steps": 12, "prompts": 4, "G": 4,
             "prompts_rl": 4,
             "lr_rl": 1e-4, "lr_zero": 1e-4, "zero_skip_spike": 0.0, "mu": 2, "micro_rows": 64,
             "sample_rows": 64, "student_micro_rows": 64,
             "k": 4, "eval_n": 16, "eval_rows": 64, "rs_problems": 0, "rs_n": 4, "rm_lr": 1e-3,
             "student": {"d_model": 96, "n_layers": 2, "n_heads": 4, "head_dim": 24,
                         "d_ff_dense": 384},
             "student_train": {"steps": 40, "warmup_steps": 5, "checkpoint_every_steps": 40}},
    "small": {"n": 1500, "rl_frac": 0.5, "levels": [1, 2, 3], "ctx": 1024, "new": 512,
              "new_zero": 256,
              "threads": 8, "device": "cuda", "dtype": "bf16", "think_lines": 0,
              "sft_epochs": 2, "sft_batch": 32, "sft_lr": (1e-4, 1e-5),
              "final_sft_epochs": 2, "final_sft_batch": 32,
              "distill_epochs": 2, "distill_batch": 128, "distill_lr": (6e-4, 6e-5),
              "distill_micro_rows": 64,
              "rl_steps": 30, "zero_steps": 30, "final_rl_steps": 4, "prompts": 16, "G": 16,
              "prompts_rl": 32, "lr_rl": 3e-6, "lr_zero": 2e-5, "zero_skip_spike": 4.0, "mu": 1,
              "micro_rows": 32, "sample_rows": 256, "student_micro_rows": 128,
              "k": 4, "eval_n": 256, "eval_rows": 1024, "rs_problems": 0, "rs_n": 2, "rm_lr": 1e-5,
              "student": {"d_model": 512, "n_layers": 8, "n_heads": 8, "head_dim": 64,
                          "d_ff_dense": 1408, "attention": "mha", "mtp_depth": 0},
              "student_train": {"lr": 6e-4, "min_lr": 6e-5}},
}
# cluster: post-training runs on one GPU of the host (the stages are single-device) with
# small's model and settings, at R1's RL lengths (reference reset every ~half run; R1: 400
# steps) on its ten times larger problem set, and a 4x larger held-out sample.
_R1_SIZES["cluster"] = {**_R1_SIZES["small"], "n": 15000, "threads": 16,
                        "rl_steps": 800, "zero_steps": 400, "final_rl_steps": 200,
                        "eval_n": 1024}
for _name, _p in _R1_SIZES.items():
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
    _sampling = {"batch_rows": _p["eval_rows"], "dtype": _p["dtype"]}
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
                                       "r1_zero", _p["prompts"]), "freeze_router": True,
                               "skip_grad_spike": _p["zero_skip_spike"]},
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
        "student_grpo": {"grpo": {**_grpo(None, _p["new_zero"], _p["lr_zero"], "r1_zero",
                                          _p["prompts"]),
                                  "micro_batch_rows": _p["student_micro_rows"]},
                         "weights": {"accuracy": 1.0, "format": 1.0, "language": 0.0},
                         "max_seq_len": _p["ctx"], **_run},
        "evaluate": {"k": _p["k"], "temperature": 0.6, "top_p": 0.95, "max_new_tokens": _p["new"],
                     "max_problems": _p["eval_n"], "max_seq_len": _p["ctx"], "seed": 0,
                     **_sampling, **_run},
    })
