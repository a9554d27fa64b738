"""Post-training of DeepSeek-R1 (``deeprecipe.stages.r1``): chat format, SFT, GRPO, the reward
model, rejection sampling and evaluation, one module each; ``config`` holds their typed,
torch-free configs."""
