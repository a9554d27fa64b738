"""Profiles: every stage's typed config at one scale, as code.

``tiny()`` (2-core CPU, minutes: the README's default and CI) spells out every value;
``small()`` (one H100/H200 host) and ``cluster()`` (many hosts sharing luigid) derive from it
by changing fields (:func:`deeprecipe.pipeline.config.merge`: a misspelled field fails at
import). A command-line value (``--UrlDedup-num-buckets 8``, ``--Grpo-grpo '{"lr": 3e-6}'``)
changes one field of the chosen profile's config; the resolved config forms the stage's key.
Why the values are what they are (the measurements behind them): BENCHMARKS.md, "Profile
choices".
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from deeprecipe.pipeline.config import merge, plain
from deeprecipe.stages.crawl_ingest import CrawlIngestConfig
from deeprecipe.stages.decontaminate import DecontaminateConfig
from deeprecipe.stages.generators.crawl_spec import SyntheticCrawlConfig
from deeprecipe.stages.generators.reasoning_corpus import ReasoningCorpusConfig
from deeprecipe.stages.generators.reasoning_data import ReasoningDataConfig
from deeprecipe.stages.minhash_dedup import MinhashConfig
from deeprecipe.stages.ngram_lm import ReferenceLmConfig
from deeprecipe.stages.pii_redact import PiiRedactConfig
from deeprecipe.stages.quality_classifier import QualityClassifierConfig
from deeprecipe.stages.quality_filter import QualityFilterConfig
from deeprecipe.stages.r1.config import (ColdStartSftConfig, EvaluateConfig, FinalRlConfig,
                                         SftStageConfig, GRPOConfig, GrpoStageConfig,
                                         RejectionSampleConfig, RewardModelConfig,
                                         RewardModelStageConfig, RewardWeights, SFTConfig)
from deeprecipe.stages.simhash_dedup import SimhashConfig
from deeprecipe.stages.tokenize_pack import TokenizePackConfig
from deeprecipe.stages.tokenizer_train import TokenizerTrainConfig
from deeprecipe.stages.train_config import PretrainConfig, TrainConfig
from deeprecipe.stages.url_dedup import UrlDedupConfig


class ProfileError(ValueError):
    pass


@dataclass(frozen=True)
class Profile:
    """One config per stage; the field name is the stage's name."""
    synthetic_crawl: SyntheticCrawlConfig
    crawl_ingest: CrawlIngestConfig
    url_dedup: UrlDedupConfig
    minhash_dedup: MinhashConfig
    simhash_dedup: SimhashConfig
    reference_lm: ReferenceLmConfig
    quality_classifier: QualityClassifierConfig
    quality_filter: QualityFilterConfig
    pii_redact: PiiRedactConfig
    decontaminate: DecontaminateConfig
    tokenizer_train: TokenizerTrainConfig
    reasoning_data: ReasoningDataConfig
    reasoning_corpus: ReasoningCorpusConfig
    tokenize_pack: TokenizePackConfig
    pretrain_moe: PretrainConfig
    pretrain_student: PretrainConfig
    cold_start_sft: ColdStartSftConfig
    reward_model: RewardModelStageConfig
    grpo: GrpoStageConfig
    grpo_zero: GrpoStageConfig
    rejection_sample: RejectionSampleConfig
    final_sft: SftStageConfig
    distill: SftStageConfig
    final_rl: FinalRlConfig
    student_grpo: GrpoStageConfig
    evaluate: EvaluateConfig


# Post-training in `tiny`: level-1 problems and a few dozen optimiser steps per stage, so that
# RunR1Pipeline finishes on 2 CPU cores in minutes (the loops run; tiny models learn the format,
# not arithmetic). The cold start keeps only the last reasoning line and 64-token responses:
# the tiny base was pretrained on 128-token rows (ctx 384 fits the longest R1-Zero prompt,
# ~300 tokens, plus 64 new ones).
_TINY_CTX, _TINY_NEW = 384, 64
_CPU = dict(threads=1, device="cpu", max_seq_len=_TINY_CTX)
_TINY_SFT = SFTConfig(epochs=5, batch_rows=8, lr=3e-3, min_lr=3e-4, dtype="fp32", seed=0)
_TINY_GRPO = GRPOConfig(steps=12, prompts_per_step=4, group_size=4, max_new_tokens=_TINY_NEW,
                        temperature=1.0, lr=1e-4, beta=0.04, clip_eps=0.2, updates_per_batch=2,
                        sampler_is_cap=2.0, ref_reset_every=6, micro_batch_rows=64,
                        sample_batch_rows=64, dtype="fp32", prompt_style="chat", seed=0)
_RULES = RewardWeights(accuracy=1.0, format=1.0, language=1.0)
_R1_ZERO_RULES = RewardWeights(accuracy=1.0, format=1.0, language=0.0)
_TINY_MOE_TRAIN = TrainConfig(steps=100, micro_batch=8, lr=3e-3, min_lr=3e-4, warmup_steps=10,
                              zero_stage=0, dtype="fp32", checkpoint_every_steps=40,
                              checkpoint_every_minutes=10.0, log_every=25, seed=0)


def tiny() -> Profile:
    """2-core CPU, minutes: the README's default and CI."""
    quality_scale = 1  # trusted seed documents and crawl documents scored: x10 small, x100 cluster
    return Profile(
        synthetic_crawl=SyntheticCrawlConfig(seed=0, num_files=4, pages_per_file=400),
        crawl_ingest=CrawlIngestConfig(files_per_shard=1, max_chars=1_000_000,
                                       extractor="hybrid"),
        url_dedup=UrlDedupConfig(num_buckets=4),
        minhash_dedup=MinhashConfig(threshold=0.8, num_perm=112, ngram=5, bands=0,
                                    rows_per_band=0, seed=1, verify=True,
                                    shingle_hash="word_combine"),
        simhash_dedup=SimhashConfig(max_distance=3, min_sentence_words=5, min_doc_words=50),
        # auto: the generated seed for the generated crawl, real text (wordfreq) for --source
        reference_lm=ReferenceLmConfig(order=3, seed_source="auto",
                                       seed_docs=300 * quality_scale, vocab_words=50_000,
                                       langs=[]),
        quality_classifier=QualityClassifierConfig(
            seed_source="auto", min_lang_docs=20, chunk_words=30, seed_docs=300 * quality_scale,
            rounds=3, high_score=0.5, min_pages=3, prefix_hq_frac=0.1,
            max_crawl_docs=5000 * quality_scale),
        quality_filter=QualityFilterConfig(
            group_column="lang", min_group_docs=20, ppl_drop_percentile=95.0,
            ppl_drop_min_ratio=2.0,
            min_hq_score=0.0, langs=[], heuristics=True, ignore_rules=["curly_bracket"]),
        pii_redact=PiiRedactConfig(types=[]),
        decontaminate=DecontaminateConfig(ngram=13, eval_sources=["builtin"]),
        tokenizer_train=TokenizerTrainConfig(vocab_size=2048, min_frequency=2, max_docs=20000),
        reasoning_data=ReasoningDataConfig(
            seed=0, n_per_task_level=60, tasks=["arithmetic", "word_problem", "counting"],
            levels=[1], held_out_frac=0.2, rl_frac=0.3, n_factual_qa=40, max_sentence_words=16,
            problem_files=[], sft_files=[]),
        reasoning_corpus=ReasoningCorpusConfig(seed=0, extra_per_task_level=200, tagged_frac=0.05),
        tokenize_pack=TokenizePackConfig(seq_len=128, val_fraction=0.05, temperature=2.0,
                                         fim_rate=0.1, source_column="domain", seed=0,
                                         reasoning_share=0.25),
        pretrain_moe=PretrainConfig(model="tiny", model_overrides={}, gpus=0,
                                    train=_TINY_MOE_TRAIN),
        # the dense student's base: pretrain_moe's schedule on the same token shards
        pretrain_student=PretrainConfig(
            model="tiny", gpus=0,
            model_overrides={"d_model": 96, "n_layers": 2, "n_heads": 4, "head_dim": 24,
                             "d_ff_dense": 384},
            train=dataclasses.replace(_TINY_MOE_TRAIN, steps=40, warmup_steps=5,
                                      checkpoint_every_steps=40)),
        cold_start_sft=ColdStartSftConfig(sft=_TINY_SFT, max_response_tokens=_TINY_NEW,
                                          max_think_lines=1, **_CPU),
        reward_model=RewardModelStageConfig(
            rm=RewardModelConfig(epochs=3, batch_pairs=8, lr=1e-3, seed=0),
            threads=1, device="cpu"),
        grpo=GrpoStageConfig(grpo=_TINY_GRPO, weights=_RULES, **_CPU),
        # R1-Zero from the base, routers frozen (BENCHMARKS.md: runs 4-7)
        grpo_zero=GrpoStageConfig(
            grpo=dataclasses.replace(_TINY_GRPO, prompt_style="r1_zero", freeze_router=True,
                                     skip_grad_spike=0.0),
            weights=_R1_ZERO_RULES, **_CPU),
        rejection_sample=RejectionSampleConfig(
            n_samples=4, max_problems=0, max_new_tokens=_TINY_NEW, temperature=1.0,
            max_paragraph_chars=2000, seed=0, batch_rows=64, dtype="fp32", **_CPU),
        final_sft=SftStageConfig(sft=dataclasses.replace(_TINY_SFT, epochs=8, batch_rows=4),
                                 max_response_tokens=_TINY_NEW, **_CPU),
        distill=SftStageConfig(sft=dataclasses.replace(_TINY_SFT, epochs=4, batch_rows=16,
                                                       micro_batch_rows=0),
                               max_response_tokens=_TINY_NEW, **_CPU),
        final_rl=FinalRlConfig(grpo=_TINY_GRPO, weights=_RULES, preference_from=0.75,
                               preference_share=0.25, **_CPU),
        # RL alone on the student base for as many optimiser steps as distill (steps 0: the
        # stage reads distill's count)
        student_grpo=GrpoStageConfig(
            grpo=dataclasses.replace(_TINY_GRPO, steps=0, prompt_style="r1_zero"),
            weights=_R1_ZERO_RULES, **_CPU),
        evaluate=EvaluateConfig(k=4, temperature=0.6, top_p=0.95, max_new_tokens=_TINY_NEW,
                                max_problems=16, seed=0, batch_rows=64, dtype="fp32", **_CPU),
    )


def _quality_scale(scale: int) -> dict:
    return {"reference_lm": {"seed_docs": 300 * scale},
            "quality_classifier": {"seed_docs": 300 * scale, "max_crawl_docs": 5000 * scale}}


# small's router-bias speed for runs of thousands (not V3's ~10^6) of steps: gamma decays
# geometrically 0.03 -> 0.001 (V3's value) over the run, 0 in the last 5 %.
_SHORT_RUN_GAMMA = {"gamma_start": 0.03, "gamma_decay_frac": 1.0}


def _small_post_training(rl_steps: int, zero_steps: int, final_rl_steps: int) -> dict:
    """small's post-training overlay (one H200, full CoT; bench/r1_small.py's four commands of
    <= 9.5 min each). GRPO from the cold start at R1's settings: 32 prompts x G 16 = 512
    rollouts a step at lr 3e-6, one update per batch (DeepSeekMath's mu = 1); the reference
    resets every half run."""
    gpu = {"threads": 8, "device": "cuda", "max_seq_len": 1024}
    sft = {"epochs": 2, "batch_rows": 32, "lr": 1e-4, "min_lr": 1e-5, "dtype": "bf16"}
    grpo = {"prompts_per_step": 32, "group_size": 16, "max_new_tokens": 512, "lr": 3e-6,
            "updates_per_batch": 1, "micro_batch_rows": 32, "sample_batch_rows": 256,
            "dtype": "bf16"}
    zero = {**grpo, "prompts_per_step": 16, "max_new_tokens": 256, "lr": 2e-5}
    sampling = {"batch_rows": 1024, "dtype": "bf16", "max_new_tokens": 512, **gpu}
    return {
        "cold_start_sft": {"sft": sft, "max_response_tokens": 512, "max_think_lines": 0, **gpu},
        "reward_model": {"rm": {"lr": 1e-5}, "threads": 8, "device": "cuda"},
        "grpo": {"grpo": {**grpo, "steps": rl_steps, "ref_reset_every": max(2, rl_steps // 2)},
                 **gpu},
        "grpo_zero": {"grpo": {**zero, "steps": zero_steps, "skip_grad_spike": 4.0,
                               "ref_reset_every": max(2, zero_steps // 2)}, **gpu},
        "rejection_sample": {"n_samples": 2, **sampling},
        "final_sft": {"sft": sft, "max_response_tokens": 512, **gpu},
        "distill": {"sft": {**sft, "batch_rows": 128, "lr": 6e-4, "min_lr": 6e-5,
                            "micro_batch_rows": 64}, "max_response_tokens": 512, **gpu},
        "final_rl": {"grpo": {**grpo, "steps": final_rl_steps,
                              "ref_reset_every": max(2, final_rl_steps // 2)}, **gpu},
        "student_grpo": {"grpo": {**zero, "micro_batch_rows": 128,
                                  "ref_reset_every": max(2, zero_steps // 2)}, **gpu},
        "evaluate": {"max_problems": 256, **sampling},
    }


def small() -> Profile:
    """One H100/H200 host."""
    moe_train = {"steps": 2000, "micro_batch": 32, "lr": 3e-4, "min_lr": 3e-5,
                 "warmup_steps": 200, "zero_stage": 1, "dtype": "bf16",
                 "checkpoint_every_steps": 500, "log_every": 10, "compile": True}
    return merge(tiny(), {
        "synthetic_crawl": {"num_files": 32, "pages_per_file": 4000},
        "url_dedup": {"num_buckets": 32},
        **_quality_scale(10),
        "tokenizer_train": {"vocab_size": 32768, "max_docs": 500000},
        "tokenize_pack": {"seq_len": 2048, "val_fraction": 0.01, "reasoning_share": 0.5},
        "reasoning_corpus": {"extra_per_task_level": 6000, "tagged_frac": 0.1},
        "reasoning_data": {"n_per_task_level": 1500, "levels": [1, 2, 3], "rl_frac": 0.5},
        "pretrain_moe": {"model": "small", "gpus": 1,
                         "train": {**moe_train, **_SHORT_RUN_GAMMA}},
        "pretrain_student": {"model": "small", "gpus": 1,
                             "model_overrides": {"d_model": 512, "n_layers": 8, "n_heads": 8,
                                                 "head_dim": 64, "d_ff_dense": 1408,
                                                 "attention": "mha", "mtp_depth": 0},
                             "train": {**moe_train, "lr": 6e-4, "min_lr": 6e-5}},
        **_small_post_training(rl_steps=30, zero_steps=30, final_rl_steps=4),
    }, "small")


def cluster() -> Profile:
    """Many hosts sharing luigid (give --source s3://... and --store s3://...). Post-training
    runs on one GPU of a host (the stages are single-device) with small's model and settings,
    at R1's RL lengths on a ten times larger problem set and a 4x larger held-out sample."""
    moe_train = {"steps": 20000, "micro_batch": 16, "warmup_steps": 2000, "zero_stage": 2,
                 "checkpoint_every_steps": 1000}
    post = _small_post_training(rl_steps=800, zero_steps=400, final_rl_steps=200)
    for stage in post.values():
        stage["threads"] = 16
    post["evaluate"]["max_problems"] = 1024
    return merge(small(), {
        "synthetic_crawl": {"num_files": 256},
        "url_dedup": {"num_buckets": 256},
        **_quality_scale(100),
        "tokenizer_train": {"vocab_size": 129280, "max_docs": 5_000_000},
        "tokenize_pack": {"seq_len": 4096, "val_fraction": 0.001, "reasoning_share": 0.2},
        "reasoning_corpus": {"extra_per_task_level": 50000, "tagged_frac": 0.05},
        "reasoning_data": {"n_per_task_level": 15000},
        "pretrain_moe": {"gpus": 8, "train": moe_train},
        "pretrain_student": {"gpus": 8, "train": moe_train},
        **post,
    }, "cluster")


PROFILES = {"tiny": tiny, "small": small, "cluster": cluster}
"""Profile name -> the function that builds it; register your own with :func:`register`."""


def register(name: str, profile_fn) -> None:
    """Add (or replace) a named profile: ``register("mine", lambda: merge(small(), {...}))``."""
    PROFILES[name] = profile_fn
    profile.cache_clear()


@functools.lru_cache(maxsize=None)
def profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ProfileError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[name]()


def stage_config(name: str, stage: str):
    """The typed config of one stage in profile ``name`` (None: the profile has none)."""
    return getattr(profile(name), stage, None)


def profile_params(name: str, stage: str) -> dict:
    """The profile's values of one stage as plain JSON values ({} if it has none)."""
    config = stage_config(name, stage)
    return {} if config is None else plain(config)
