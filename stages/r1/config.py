"""Typed configs of the post-training stages (SFT, GRPO, reward model); no torch, so reading
the DAG (``deeprecipe status``) can build them without importing the science."""
from __future__ import annotations

from dataclasses import dataclass

from deeprecipe.pipeline.config import option


@dataclass(frozen=True)
class SFTConfig:
    """Supervised fine-tuning (`sft`): AdamW, warmup + cosine lr over all steps."""
    epochs: int = 2
    batch_rows: int = 8          # packed rows per optimiser step
    seq_len: int = 256           # longest example (prompt + response) T
    lr: float = 1e-3
    min_lr: float = 1e-4         # cosine lr -> min_lr at the last step (R1: 5e-5 -> 5e-6)
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    dtype: str = "bf16"          # 'bf16': autocast on CUDA (module docstring); CPU runs fp32
    micro_batch_rows: int = 0    # rows per forward/backward, gradients accumulated over a batch
                                 # (0: the whole batch at once); the step is the same either way
    seed: int = 0


SAMPLERS = ("copy", "policy")          # GRPOConfig.sampler
LOSS_NORMS = ("sequence", "constant")  # GRPOConfig.loss_norm


@dataclass(frozen=True)
class GRPOConfig:
    """One GRPO run (`grpo_train`): rollouts, losses, optimiser and sampler."""
    steps: int = 20
    prompts_per_step: int = 4
    group_size: int = 4            # G
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    lr: float = 1e-4
    beta: float = 0.04             # KL weight (R1: 0.001)
    clip_eps: float = 0.2          # epsilon of the clipped ratio (R1: 10)
    updates_per_batch: int = 2     # mu: policy updates on one batch of rollouts (DeepSeekMath: 1)
    ref_reset_every: int = 0       # reset the reference to the policy every N steps (R1: 400)
    grad_clip: float = 1.0
    prompt_style: str = "chat"
    micro_batch_rows: int = 64     # rollout rows per forward/backward (gradients accumulate)
    sample_batch_rows: int = 256   # rows per `generate` call
    dtype: str = "bf16"            # 'bf16': autocast + a bf16 sampling copy on CUDA; CPU: fp32
    sampler: str = "copy"          # 'copy': a bf16 copy samples (CUDA bf16); 'policy': the
                                   # policy itself under the training autocast (no copy)
    sampler_is_cap: float = 0.0    # > 0: truncated importance weights min(pi_old/pi_sampler, cap)
                                   # on the policy term (`grpo_loss.truncated_is_weights`); 0: off
    freeze_router: bool = False    # MoE: keep the routers' weights fixed during RL
    freeze_routed_experts: bool = False  # MoE: keep the routed experts' weights fixed during RL
    loss_norm: str = "sequence"    # 'sequence': 1/|o_i| per response (GRPO); 'constant':
                                   # 1/max_new_tokens for all (Dr. GRPO, `grpo_loss.grpo_loss`)
    scale_advantages: bool = True  # divide by the group's reward std (False: Dr. GRPO)
    skip_equal_groups: bool = False  # leave groups whose G rewards are all equal out of the
                                     # update (advantage 0: only their KL term would act);
                                     # DAPO's dynamic-sampling filter, without re-sampling
    kl_clamp: float = 0.0          # > 0: cap each token's k3 KL in the loss (`grpo_loss`;
                                   # verl's low_var_kl: 10); 0: off
    skip_grad_spike: float = 0.0   # > 0: skip an update whose gradient norm (before clipping)
                                   # exceeds this many times the median of the last
                                   # SPIKE_HISTORY updates' and grad_clip (from the 4th update
                                   # on; `grad_spike_threshold`); 0: off
    seed: int = 0

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"GRPOConfig.sampler={self.sampler!r}: use one of {SAMPLERS}")
        if self.loss_norm not in LOSS_NORMS:
            raise ValueError(f"GRPOConfig.loss_norm={self.loss_norm!r}: use one of {LOSS_NORMS}")
        if self.sampler_is_cap < 0:
            raise ValueError(f"GRPOConfig.sampler_is_cap={self.sampler_is_cap}: must be >= 0")
        if self.kl_clamp < 0 or self.skip_grad_spike < 0:
            raise ValueError(f"GRPOConfig: kl_clamp={self.kl_clamp}, skip_grad_spike="
                             f"{self.skip_grad_spike}: must be >= 0 (0: off)")


SPIKE_HISTORY = 8
"""Updates whose gradient norms set GRPOConfig.skip_grad_spike's median."""


@dataclass(frozen=True)
class RewardModelConfig:
    """Bradley-Terry training of the reward model (`train_reward_model`)."""
    epochs: int = 3
    batch_pairs: int = 8
    lr: float = 1e-4
    seed: int = 0


# ----------------------------------------------------------------------------- stage configs


@dataclass(frozen=True)
class TorchRunConfig:
    """Where a torch stage runs."""
    threads: int = option("CPU threads for torch (CPU runs)")
    device: str = option("'cpu' or 'cuda'")


@dataclass(frozen=True)
class PostTrainRunConfig(TorchRunConfig):
    max_seq_len: int = option("context of post-training (prompt + response tokens)")


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the rule rewards (`rule_reward`)."""
    accuracy: float = 1.0
    format: float = 1.0
    language: float = 1.0


@dataclass(frozen=True)
class SftStageConfig(PostTrainRunConfig):
    """final_sft and distill."""
    sft: SFTConfig = option("SFTConfig fields (seq_len: max_seq_len)")
    max_response_tokens: int = option("SFT examples whose response is longer (tokens) are left "
                                      "out")


@dataclass(frozen=True)
class ColdStartSftConfig(SftStageConfig):
    max_think_lines: int = option("0 = whole reasoning; N = last N lines")


@dataclass(frozen=True)
class GrpoStageConfig(PostTrainRunConfig):
    """grpo, grpo_zero and student_grpo (whose `grpo.steps` is 0: distill's step count)."""
    grpo: GRPOConfig = option("GRPOConfig fields")
    weights: RewardWeights = option("rule reward weights (accuracy, format, language)")


@dataclass(frozen=True)
class FinalRlConfig(GrpoStageConfig):
    preference_from: float = option("share of steps before the RM reward")
    preference_share: float = option("share of the prompt pool the preference prompts make up")


@dataclass(frozen=True)
class RewardModelStageConfig(TorchRunConfig):
    rm: RewardModelConfig = option("RewardModelConfig fields")


@dataclass(frozen=True)
class SamplingConfig(PostTrainRunConfig):
    """What rejection sampling and evaluation share: batched sampling of one model."""
    batch_rows: int = option("rows per generate call")
    dtype: str = option("'bf16': sample in bf16 on CUDA")
    max_new_tokens: int = option("longest sampled response (tokens)")
    temperature: float = option("sampling temperature")
    seed: int = option("sampling seed")


@dataclass(frozen=True)
class RejectionSampleConfig(SamplingConfig):
    n_samples: int = option("samples per prompt")
    max_problems: int = option("RL problems to sample (seeded subset; 0 = all)",
                               display_empty="all")
    max_paragraph_chars: int = option("samples with a longer reasoning paragraph are rejected "
                                      "(readability)")


@dataclass(frozen=True)
class EvaluateConfig(SamplingConfig):
    k: int = option("samples per problem (pass@1 is averaged over them)")
    top_p: float = option("nucleus sampling threshold (R1: 0.95)")
    max_problems: int = option("held-out problems evaluated (a seeded sample)")

