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
                               "fim_rate": 0.1, "source_column": "domain", "seed": 0}},
    "small": {"tokenizer_train": {"vocab_size": 32768, "min_frequency": 2, "max_docs": 500000},
              "tokenize_pack": {"seq_len": 2048, "val_fraction": 0.01, "temperature": 2.0,
                                "fim_rate": 0.1, "source_column": "domain", "seed": 0}},
    "cluster": {"tokenizer_train": {"vocab_size": 129280, "min_frequency": 2, "max_docs": 5000000},
                "tokenize_pack": {"seq_len": 4096, "val_fraction": 0.001, "temperature": 2.0,
                                  "fim_rate": 0.1, "source_column": "domain", "seed": 0}},
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
# longest R1-Zero prompt, ~300 tokens, plus 64 new ones). small: one GPU, full CoT.
for _name, _p in {
    "tiny": {"n": 40, "levels": [1], "ctx": 384, "new": 64, "threads": 1, "device": "cpu",
             "think_lines": 1, "sft_epochs": 5, "final_sft_epochs": 8, "rl_steps": 12,
             "prompts": 4, "G": 4, "lr_rl": 1e-4,
             "k": 4, "eval_n": 16, "rs_n": 4, "student": {"d_model": 96, "n_layers": 2,
                                                           "n_heads": 4, "head_dim": 24,
                                                           "d_ff_dense": 384}},
    "small": {"n": 2000, "levels": [1, 2, 3], "ctx": 2048, "new": 1024, "threads": 8,
              "think_lines": 0, "final_sft_epochs": 2,
              "device": "cuda", "sft_epochs": 2, "rl_steps": 400, "prompts": 32, "G": 16,
              "lr_rl": 3e-6, "k": 16, "eval_n": 500, "rs_n": 16,
              "student": {"d_model": 512, "n_layers": 8, "n_heads": 8, "head_dim": 64,
                          "d_ff_dense": 1408, "attention": "mha"}},
}.items():
    _run = {"threads": _p["threads"], "device": _p["device"]}
    _sft = {"epochs": _p["sft_epochs"], "batch_rows": 8, "lr": 3e-3 if _name == "tiny" else 5e-5,
            "min_lr": 3e-4 if _name == "tiny" else 5e-6, "seed": 0}
    _grpo = {"steps": _p["rl_steps"], "prompts_per_step": _p["prompts"], "group_size": _p["G"],
             "max_new_tokens": _p["new"], "temperature": 1.0, "lr": _p["lr_rl"],
             "beta": 0.04, "clip_eps": 0.2, "updates_per_batch": 2,
             "ref_reset_every": max(2, _p["rl_steps"] // 2), "seed": 0}
    PROFILES[_name].update({
        "reasoning_data": {"seed": 0, "n_per_task_level": _p["n"],
                           "tasks": ["arithmetic", "word_problem", "counting"],
                           "levels": _p["levels"], "held_out_frac": 0.2, "n_factual_qa": 40,
                           "max_sentence_words": 16, "problem_files": [], "sft_files": []},
        "cold_start_sft": {"sft": _sft, "max_response_tokens": _p["new"],
                           "max_think_lines": _p["think_lines"],
                           "max_seq_len": _p["ctx"], **_run},
        "grpo": {"grpo": {**_grpo, "prompt_style": "chat"},
                 "weights": {"accuracy": 1.0, "format": 1.0, "language": 1.0},
                 "max_seq_len": _p["ctx"], **_run},
        "grpo_zero": {"grpo": {**_grpo, "prompt_style": "r1_zero"},
                      "weights": {"accuracy": 1.0, "format": 1.0, "language": 0.0},
                      "max_seq_len": _p["ctx"], **_run},
        "rejection_sample": {"n_samples": _p["rs_n"], "max_new_tokens": _p["new"],
                             "temperature": 1.0, "max_paragraph_chars": 2000,
                             "max_seq_len": _p["ctx"], "seed": 0, **_run},
        "reward_model": {"rm": {"epochs": 3, "batch_pairs": 8,
                                "lr": 1e-3 if _name == "tiny" else 1e-5, "seed": 0}, **_run},
        "final_sft": {"sft": {**_sft, "epochs": _p["final_sft_epochs"],
                              "batch_rows": 4 if _name == "tiny" else 8},
                      "max_response_tokens": _p["new"],
                      "max_seq_len": _p["ctx"], **_run},
        "final_rl": {"grpo": {**_grpo, "prompt_style": "chat"},
                     "weights": {"accuracy": 1.0, "format": 1.0, "language": 1.0},
                     "preference_from": 0.75, "max_seq_len": _p["ctx"], **_run},
        "distill": {"sft": {**_sft, "epochs": _p["final_sft_epochs"] if _name == "tiny"
                            else _p["sft_epochs"],
                            "batch_rows": 4 if _name == "tiny" else 8},
                    "max_response_tokens": _p["new"], "max_seq_len": _p["ctx"],
                    "student_model": _p["student"], **_run},
        "evaluate": {"k": _p["k"], "temperature": 0.6, "top_p": 0.95, "max_new_tokens": _p["new"],
                     "max_problems": _p["eval_n"], "max_seq_len": _p["ctx"], "seed": 0, **_run},
    })
