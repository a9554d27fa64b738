"""Post-training of DeepSeek-R1 (``deeprecipe.stages.r1``), one idea a module:

- ``config``: the SFT, GRPO and reward-model configs (frozen dataclasses, no torch);
- ``chat``: the chat format and its tokenizer; ``model_io``: chat models on disk and on device;
- ``sft``: supervised fine-tuning; ``rollout``: sampling responses (``sampler``: KV-cache
  ``generate``);
- ``grpo``: the GRPO loop and its rewards (``grpo_loss``: the losses; ``rewards``: rule rewards;
  ``rl_state``: resumable run state);
- ``reward_model``: the Bradley-Terry reward model; ``rejection``: rejection sampling;
  ``evaluate``: pass@1 / pass@k.

Model folders, checkpoints and metrics files are ``stages.training_io``, the learning-rate
schedule ``stages.train_config.warmup_cosine``: both shared with pretraining."""
