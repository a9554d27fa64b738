"""GRPO variants from one cold start, each evaluated on the held-out problems: the A/B behind
the `grpo` profile's settings (issue #5: GRPO must raise held-out pass@1 over the cold start).

Reads the newest committed `cold_start_sft` and `reasoning_data` artifacts of a store (e.g. the
one `bench/r1_small.py --phase data,teacher` fills), then for each variant: a fresh copy of the
cold start, `stages.r1.grpo.grpo_train` with the profile's `grpo` config plus the variant's
overrides for --steps steps, and `stages.r1.evaluate.evaluate` with the profile's `evaluate`
settings (held-out subset, k samples, T 0.6, top-p 0.95). Variant `cold_start` is the untrained
control. Nothing is written to the store: each variant's result is one JSON line in
--out/ablation.jsonl (appended as it finishes) and a row of the table printed last.

    python3 bench/grpo_ablation.py --store /tmp/r1_small/store --out $OUT \\
        --variants cold_start,lr3e-5,lr3e-5_tis --steps 25

--eval-k 16 samples every held-out problem 16 times (default: the profile's k): each row then
carries pass@k up to 16, e.g. for the `cold_start` control, how far GRPO could sharpen it.
Each row keeps its per-problem correct counts (same held-out subset and order in every run of
one store): `bench/grpo_paired.py` reads the ablation.jsonl files of several commands (or of
processes on several GPUs) and prints each variant's paired gain over the control.

A variant is a name of VARIANTS or NAME=JSON (GRPOConfig overrides, plus the bench's own
"permute_rewards": true: the null control, `permuted_advantages`). A variant is not started
when fewer than --need-s seconds of --budget-s are left.

--start base runs R1-Zero instead: each variant starts from the newest `pretrain_moe` with the
profile's `grpo_zero` config and rewards, and is evaluated on the R1-Zero template (as
`evaluate` does for grpo_zero); `start` is then the untrained base. The question there is
stability: does the format emerge (>= 0.9 in the last quarter) on every seed? E.g. after
`bench/r1_small.py --phase data,moe` (~9 min on one H200):

    python3 bench/grpo_ablation.py --start base --steps 30 --need-s 160 --out $OUT \\
        --variants profile,seed1,seed2,seed3

(~115-140 s a variant on one H200: grpo_zero's 30 steps and one evaluation.) Tenth session
(BENCHMARKS.md): 7 of 9 runs reached the format; the risk is a late onset (the base formats ~1
in 256 samples), which the `small` profile's skip_grad_spike (now in `profile`; `no_skip_spike`
turns it off) cannot help; neither did cutting the rollouts at </answer> (`answer_stop*`,
eleventh session: 4 of 6 runs). Next candidates for the onset: R1's 32 prompts a step (`prompts32`,
`prompts32_seed1`, ... via NAME=JSON), or a base that meets the tags more often
(`r1_small.py --phase data,moe --set reasoning_corpus.tagged_frac=0.3`, then the seeds above).

A GRPO run longer than one command (~9 s a step from the cold start: 60 steps fill a 600-s
command) resumes with --state-root on the machine's disk: the same command run again continues
each unfinished variant from its last saved state (`stages.r1.rl_state`, every --save-every-s),
e.g. `--variants 'long_lr1e-5={"lr": 1e-5}' --steps 120 --state-root /tmp/ablation_state
--need-s 0`, twice or three times (a finished variant's state is removed).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from deeprecipe.pipeline.store import ArtifactStore  # noqa: E402
from deeprecipe.pipeline.task import Artifact  # noqa: E402
from deeprecipe.stages.r1 import grpo as r1_grpo  # noqa: E402
from deeprecipe.stages.r1.chat import PROMPT_STOPS, ChatTokenizer  # noqa: E402
from deeprecipe.stages.r1.config import GRPOConfig  # noqa: E402
from deeprecipe.stages.r1.evaluate import evaluate  # noqa: E402
from deeprecipe.stages.r1.model_io import inference_model  # noqa: E402
from deeprecipe.stages.r1.rollout import subset  # noqa: E402
from deeprecipe.stages.generators.reasoning_data import rl_problems  # noqa: E402
from deeprecipe.stages.report import format_onset, grpo_summary  # noqa: E402
from deeprecipe.stages.training_io import load_model  # noqa: E402
from deeprecipe.profiles import PROFILES, profile_params  # noqa: E402

VARIANTS = {  # name -> GRPOConfig overrides of the profile's grpo config (None: no training)
    "cold_start": None,
    "start": None,  # the untrained starting model (--start cold_start: the same as cold_start)
    "profile": {},
    "lr3e-5": {"lr": 3e-5},
    "lr3e-5_tis": {"lr": 3e-5, "sampler_is_cap": 2.0},
    "lr3e-5_policy": {"lr": 3e-5, "sampler": "policy"},
    "lr3e-5_tis_frozen": {"lr": 3e-5, "sampler_is_cap": 2.0, "freeze_router": True},
    "lr1e-4_tis": {"lr": 1e-4, "sampler_is_cap": 2.0},
    "experts_frozen": {"freeze_routed_experts": True},
    "prompts64": {"prompts_per_step": 64},
    "dr_grpo": {"loss_norm": "constant", "scale_advantages": False},
    "dr_grpo_no_reset": {"loss_norm": "constant", "scale_advantages": False,
                         "ref_reset_every": 0, "beta": 0.1},
    "lr3e-5_permuted": {"lr": 3e-5, "permute_rewards": True},
    "lr3e-5_fp32": {"lr": 3e-5, "dtype": "fp32"},
    "lr3e-5_dr_grpo": {"lr": 3e-5, "loss_norm": "constant", "scale_advantages": False},
    "lr3e-5_prompts64": {"lr": 3e-5, "prompts_per_step": 64},
    "lr3e-6": {"lr": 3e-6},
    "lr1e-5_prompts64": {"lr": 1e-5, "prompts_per_step": 64},
    "lr1e-5_prompts64_skip_equal": {"lr": 1e-5, "prompts_per_step": 64, "skip_equal_groups": True},
    # the training-reward baseline: the same problem sequence sampled from the unchanged cold
    # start (AdamW at lr 0, no weight decay, moves nothing), to read the variants' per-step
    # accuracy against
    "no_update": {"lr": 0.0},
    "lr1e-5_prompts128": {"lr": 1e-5, "prompts_per_step": 128},
    "lr1e-5_experts_frozen": {"lr": 1e-5, "freeze_routed_experts": True},
    # R1-Zero stability (--start base): other seeds (problem order and samples), a cap on each
    # token's k3 KL, skipping updates whose gradient norm spikes, a lower lr
    "seed1": {"seed": 1},
    "seed2": {"seed": 2},
    "kl_clamp10": {"kl_clamp": 10.0},
    "kl_clamp10_seed1": {"kl_clamp": 10.0, "seed": 1},
    "skip_spike4": {"skip_grad_spike": 4.0},
    "skip_spike4_seed1": {"skip_grad_spike": 4.0, "seed": 1},
    "skip_spike4_seed2": {"skip_grad_spike": 4.0, "seed": 2},
    "seed3": {"seed": 3},
    "no_skip_spike": {"skip_grad_spike": 0.0},
    "prompts32": {"prompts_per_step": 32},
    "prompts32_seed1": {"prompts_per_step": 32, "seed": 1},
    "lr1e-5_seed1": {"lr": 1e-5, "seed": 1},
    # R1-Zero rollouts (and their evaluation) cut at </answer> (bench key "answer_stop": true;
    # `stages.r1.chat.PROMPT_STOPS`), the default at c14958b; "train": false evaluates only
    "answer_stop": {"answer_stop": True},
    "answer_stop_seed1": {"answer_stop": True, "seed": 1},
    "answer_stop_seed2": {"answer_stop": True, "seed": 2},
    "answer_stop_seed3": {"answer_stop": True, "seed": 3},
    "answer_stop_seed4": {"answer_stop": True, "seed": 4},
    "seed4": {"seed": 4},
    "start_answer_stop": {"answer_stop": True, "train": False},
}
BENCH_KEYS = ("permute_rewards", "answer_stop", "train")  # variant keys that are not GRPOConfig
STARTS = {  # --start -> (stage of the starting model, profile stage of the RL config, prompt)
    "cold_start": ("cold_start_sft", "grpo", "chat"),
    "base": ("pretrain_moe", "grpo_zero", "r1_zero"),
}


@contextlib.contextmanager
def permuted_advantages(seed: int):
    """While active, GRPO's group advantages are those of each group's rewards shuffled within
    the group: the same advantage values, none tied to the response it is given to. The null
    control: what an update of GRPO's size does to the model with the reward signal removed."""
    gen = torch.Generator().manual_seed(seed)
    group_advantages = r1_grpo.group_advantages

    def shuffled(rewards_BG, **kw):
        perm_BG = torch.argsort(torch.rand(rewards_BG.shape, generator=gen), dim=1)
        return group_advantages(rewards_BG.gather(1, perm_BG), **kw)
    r1_grpo.group_advantages = shuffled
    try:
        yield
    finally:
        r1_grpo.group_advantages = group_advantages


@contextlib.contextmanager
def answer_stop(on: bool):
    """While active with on=True, R1-Zero-template samples (rollouts and evaluation) end at
    </answer> (`stages.r1.chat.PROMPT_STOPS`), as vLLM-based R1-Zero setups cut them."""
    saved = dict(PROMPT_STOPS)
    if on:
        PROMPT_STOPS["r1_zero"] = ("</answer>",)
    try:
        yield
    finally:
        PROMPT_STOPS.update(saved)


def parse_variant(spec: str) -> tuple[str, dict | None]:
    if "=" in spec:
        name, _, text = spec.partition("=")
        return name, json.loads(text)
    if spec not in VARIANTS:
        raise SystemExit(f"unknown variant {spec!r}: {', '.join(VARIANTS)} or NAME=JSON")
    return spec, VARIANTS[spec]


def split_variants(text: str) -> list[str]:
    """'a,b={"x": 1, "y": 2},c' -> ['a', 'b={"x": 1, "y": 2}', 'c']: commas inside braces stay."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "{") - (ch == "}")
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [s for s in (*out, cur) if s]


def curve_summary(rows: list[dict]) -> dict:
    """First/last-quarter training accuracy and KL (the stage's `grpo_summary`), the first step
    with format reward >= 0.5 (None: never), the largest gradient norm and its step, and means
    over all steps of the mismatch and timing columns."""
    quarters = grpo_summary(rows)
    mean = lambda k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
    onset = format_onset(rows)
    top = max(rows, key=lambda r: r["grad_norm"])
    return {"acc_first": quarters["accuracy_first"], "acc_last": quarters["accuracy_last"],
            "kl_last": quarters["kl_last"], "fmt_step0": rows[0]["reward_format"],
            "fmt_last": quarters["reward_format_last"],
            "fmt_onset": None if onset is None else float(onset),
            "grad_norm_max": top["grad_norm"], "grad_norm_max_step": float(top["step"]),
            "skipped": float(sum(r["skipped"] for r in rows)),
            **{k: mean(k) for k in ("grad_norm", "sampler_kl", "sampler_abs_gap", "is_truncated",
                                    "sample_s", "update_s")}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", default="/tmp/r1_small/store")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "bench/out/grpo_ablation"))
    ap.add_argument("--profile", default="small", choices=sorted(PROFILES))
    ap.add_argument("--start", default="cold_start", choices=sorted(STARTS),
                    help="cold_start: GRPO from the cold start; base: R1-Zero from the base")
    ap.add_argument("--variants", default="cold_start,lr3e-5,lr3e-5_tis")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--eval-k", type=int, default=0,
                    help="samples per held-out problem (0: the profile's evaluate k); more "
                         "give pass@k at larger k: how far RL could sharpen the start")
    ap.add_argument("--state-root", default="",
                    help="folder of each variant's GRPO state (saved every --save-every-s; a "
                         "variant killed by the command's time limit resumes from it when the "
                         "same command runs again); '' = none")
    ap.add_argument("--save-every-s", type=float, default=60.0)
    ap.add_argument("--budget-s", type=float, default=570.0)
    ap.add_argument("--need-s", type=float, default=170.0,
                    help="seconds a variant needs; not started with less left")
    args = ap.parse_args(argv)
    t0 = time.time()
    store = ArtifactStore(args.store)
    prof = {stage: profile_params(args.profile, stage) for stage in ("grpo", "grpo_zero", "evaluate")}
    start_stage, rl_stage, style = STARTS[args.start]
    rl_prof = prof[rl_stage]
    start = Artifact(store, store.newest(start_stage))
    data = Artifact(store, store.newest("reasoning_data"))
    problems = rl_problems(data)
    ev = prof["evaluate"]
    held_out = subset(data.read_table("problems-held_out.parquet").to_pylist(),
                      ev["max_problems"], ev["seed"])
    device = torch.device(rl_prof["device"] if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    folder = Path(start.path("config.json")).parent
    tok = ChatTokenizer.from_file(folder / "tokenizer.json")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{start_stage} {start.version} ({rl_stage}), {len(problems)} RL / {len(held_out)} "
          f"held-out problems, {args.steps} steps, device {device}", flush=True)
    results = []
    for spec in split_variants(args.variants):
        name, overrides = parse_variant(spec)
        if time.time() - t0 > args.budget_s - args.need_s and overrides is not None:
            print(f"{name}: not started, budget spent", flush=True)
            continue
        t1 = time.time()
        torch.manual_seed(0)
        policy = load_model(folder, rl_prof["max_seq_len"]).to(device)
        row = {"variant": name, "overrides": overrides, "steps": 0}
        opts = overrides or {}
        with answer_stop(opts.get("answer_stop", False)):
            try:
                if overrides is not None and opts.get("train", True):
                    fields = {k: v for k, v in overrides.items() if k not in BENCH_KEYS}
                    cfg = GRPOConfig(**{**dict(rl_prof["grpo"]), **fields, "steps": args.steps})
                    with (permuted_advantages(cfg.seed) if overrides.get("permute_rewards")
                          else contextlib.nullcontext()):
                        # keyed by what the run depends on: another start or length starts afresh
                        state = (Path(args.state_root) / f"{name}-{start.version}-{args.steps}"
                                 if args.state_root else None)
                        rows = r1_grpo.grpo_train(policy, problems, tok, cfg,
                                                  r1_grpo.rule_reward(dict(rl_prof["weights"])),
                                                  state_dir=state, save_every_s=args.save_every_s)
                        if state is not None:
                            shutil.rmtree(state, ignore_errors=True)
                    row.update(steps=len(rows), **curve_summary(rows),
                               **{f"per_step_{k}": [round(r[k], 4) for r in rows]
                                  for k in ("accuracy", "reward_format", "kl", "kl_max",
                                            "grad_norm")})
                model = inference_model(policy, ev["dtype"])
                res = evaluate(model, held_out, tok, args.eval_k or ev["k"], ev["temperature"],
                               ev["top_p"], ev["max_new_tokens"], style, ev["seed"],
                               ev["batch_rows"])
                del model
            except Exception as err:  # one broken variant must not cost the others
                print(f"{name}: failed: {err!r}", flush=True)
                del policy
                continue
        row.update({k: res[k] for k in ("k", "pass@1", "pass@k", "format_rate",
                                        "mean_response_tokens", "per_task", "per_level",
                                        "wrong_examples", "correct_per_problem")},
                   pass_at_max_k=res["pass@k"][str(res["k"])], wall_s=time.time() - t1)
        del policy
        torch.cuda.empty_cache() if device.type == "cuda" else None
        results.append(row)
        with open(out / "ablation.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{name}: pass@1 {row['pass@1']:.3f} {json.dumps(row['per_task'])} "
              f"({row['wall_s']:.0f} s)", flush=True)
    cols = ("pass@1", "pass_at_max_k", "fmt_step0", "fmt_onset", "fmt_last", "acc_first",
            "acc_last", "kl_last", "grad_norm", "grad_norm_max", "grad_norm_max_step", "skipped",
            "sampler_kl", "sampler_abs_gap", "is_truncated", "sample_s", "update_s")
    print("\n| variant | steps | " + " | ".join(cols) + " | per task |")
    print("|---|---:|" + "---:|" * len(cols) + "---|")
    for r in results:
        cells = [f"{r[c]:.4g}" if isinstance(r.get(c), float) else "never" if c in r else ""
                 for c in cols]  # None: fmt_onset of a run whose format never reached 0.5
        tasks = ", ".join(f"{t} {v:.3f}" for t, v in r["per_task"].items())
        print(f"| {r['variant']} | {r['steps']} | " + " | ".join(cells) + f" | {tasks} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
