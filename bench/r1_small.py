"""Issue #5's numbers: RunR1Pipeline on the `small` profile on one H100/H200, in phases that
each fit one command of at most 9.5 minutes, then the acceptance table read from the artifacts.

    data   TokenizePack, ReasoningData (CPU stages, --workers = cores)                  ~3-4 min
    base   PretrainMoe, PretrainStudent, ColdStartSft, RewardModel (GPU, one worker)   ~9-9.5 min
    rl     Grpo, RejectionSample (GPU, one worker)                                       ~5.5-6 min
    post   RunR1Pipeline: every other stage (grpo_zero, final_sft, final_rl, distill,
           student_grpo), evaluate last (GPU, one worker)                               ~8-8.5 min
           (a phase stopped at its budget keeps its committed stages: run it again)
    teacher  PretrainMoe and ColdStartSft only (the start of bench/grpo_ablation.py; not in
           'all')
    moe    PretrainMoe only (the start of grpo_ablation.py --start base; not in 'all')

Each phase runs the real pipeline (`python -m luigi --module bench.r1_small ...
--local-scheduler` in a subprocess) on one store with the same parameters, so Luigi's
completeness makes a phase pick up where the previous one stopped. A phase still running when
the command's --budget-s (560 s) is spent is stopped and can be run again with the same
command: committed stages are kept, pretraining resumes from its last checkpoint, the GRPO
stages from their last saved state (every 3 minutes), any other half-done post-training stage
starts over. After its phases the script prints the stage timings and,
once evaluate has committed, the #5 table (held-out pass@1 of every model, GRPO's and
grpo_zero's format reward at step 0 and first vs last quarter of their steps, the distillation ratio,
pass/fail per acceptance line). Every number comes from the manifests in the store. The luigi
logs, table.md, timings.md and the evaluation report (report.md, results.json, PNGs) go to
--out.

The R1 path's parameters are the profile's (deeprecipe/profiles.py; the budget
arithmetic: BENCHMARKS.md, "Profile choices") with a shorter base run: --crawl-files (SyntheticCrawl num_files; small: 16 of
32), --base-steps / --student-steps (PretrainMoe / PretrainStudent steps; small: 800 and 800 of
2000, warmup 10 %, checkpoints every 3 min), and any `--set stage.param[.field]=JSON` (e.g.
`--set grpo.grpo.lr=2e-5`). The script hands them to its luigi processes as a derived profile
`<profile>-r1` (environment variable R1_BENCH_PROFILE, read when luigi imports this module), so
every stage sees plain values and the versions are those the same values would get on the
command line. Anything after `--` goes to every luigi call unchanged (e.g. `-- --rerun grpo`).
Give every phase the same options: they are part of the stages' versions.

Next session, on the development machine once:

    bash ../shared/gpu/make-wheels.sh warcio six resiliparse fastwarc brotli click matplotlib contourpy cycler fonttools kiwisolver pillow pyparsing

(fills .whl/, ~40 MB, with luigi, deepspeed, datasketch, fasttext, pydantic and, for the data
phase and the plots, warcio, resiliparse/fastwarc and matplotlib with their needs: the GPU image
lists none of them; Python 3.12 wheels). Then four
back-to-back `run` calls (kind nvidia-h200, carry [".whl"], timeout_s 600), each:

    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD TORCH_CUDA_ARCH_LIST=9.0 PYTHONUNBUFFERED=1 || exit; python3 bench/r1_small.py --phase data --out $OUT

with `--phase base`, `--phase rl`, then `--phase post` in place of `--phase data` (25-26
minutes of commands in runs 6 and 7, eighth session: one machine holds 30). The store is
/tmp/r1_small/store on the machine's local disk: it survives between commands only while the
machine stays warm (start the next command within ~30 s). `--phase report` prints the table
again from the store. Nothing here needs the network.

Logic check on a CPU (tiny profile, a temp store, all phases, ~6 min on 2 cores):

    python bench/r1_small.py --smoke
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import luigi

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from deeprecipe.pipeline.store import ArtifactStore  # noqa: E402
from deeprecipe.pipeline.task import PipelineTask  # noqa: E402
from deeprecipe.stages.report import format_onset  # noqa: E402
from deeprecipe.pipeline.config import merge  # noqa: E402
from deeprecipe.profiles import profile, profile_params, register  # noqa: E402

PHASES = {  # name -> (root task, its targets, workers: None = all cores)
    "data": ("R1Phase", ["TokenizePack", "ReasoningData"], None),
    "base": ("R1Phase", ["PretrainMoe", "PretrainStudent", "ColdStartSft", "RewardModel"], 1),
    "teacher": ("R1Phase", ["PretrainMoe", "ColdStartSft"], 1),  # for bench/grpo_ablation.py
    "moe": ("R1Phase", ["PretrainMoe"], 1),  # for grpo_ablation.py --start base (R1-Zero)
    # the first part of post; grpo_zero runs in post: with it here a slow machine stopped the
    # phase inside grpo_zero, whose half-done minutes are lost (ninth session)
    "rl": ("R1Phase", ["Grpo", "RejectionSample"], 1),
    "post": ("RunR1Pipeline", None, 1),
}
PROFILE_ENV = "R1_BENCH_PROFILE"  # JSON {"name", "base": profile, "stages": {stage: params}}
STAGES = ["synthetic_crawl", "crawl_ingest", "url_dedup", "minhash_dedup", "simhash_dedup",
          "reference_lm", "quality_classifier", "quality_filter", "pii_redact", "decontaminate",
          "tokenizer_train", "reasoning_data", "reasoning_corpus", "tokenize_pack", "pretrain_moe",
          "pretrain_student", "cold_start_sft", "reward_model", "grpo", "grpo_zero",
          "rejection_sample", "final_sft", "final_rl", "distill", "student_grpo", "evaluate"]
MODELS = ["base", "cold_start", "grpo", "grpo_zero", "final", "student", "student_rl"]
# Shortened R1 path per profile: crawl files, MoE and student pretraining steps (None: keep).
R1_DEFAULTS = {"small": {"crawl_files": 16, "base_steps": 800, "student_steps": 800},
               "tiny": {"crawl_files": None, "base_steps": 60, "student_steps": 20}}
REPORT_FILES = ("report.md", "results.json", "pass_at_1.png", "response_length.png",
                "rl_curves.png")


if os.environ.get(PROFILE_ENV):  # inside the luigi processes this script starts
    _spec = json.loads(os.environ[PROFILE_ENV])
    register(_spec["name"], lambda: merge(profile(_spec["base"]), _spec["stages"], _spec["name"]))


class R1Phase(PipelineTask, luigi.WrapperTask):
    """Some stages of the pipeline (Luigi task names), with the root's global options."""
    targets = luigi.ListParameter(description="task names, e.g. [\"PretrainMoe\"]")

    def requires(self):  # the stages are registered: workflows is imported above
        return [self.clone(luigi.task_register.Register.get_task_cls(t)) for t in self.targets]


# ----------------------------------------------------------------------------- running


def short_train(train: dict, steps: int) -> dict:
    """A TrainConfig dict cut to `steps` optimiser steps: warmup 10 % (at most the original),
    a checkpoint at the end and every 3 minutes (a killed phase resumes from it)."""
    return {**train, "steps": steps, "warmup_steps": max(1, min(train["warmup_steps"], steps // 10)),
            "checkpoint_every_steps": steps, "checkpoint_every_minutes": 3.0}


def r1_profile(args) -> dict[str, dict]:
    """The profile's stage parameters with this run's R1-path changes (plain values)."""
    stages = {stage: profile_params(args.profile, stage) for stage in STAGES}
    if args.crawl_files:
        stages["synthetic_crawl"]["num_files"] = args.crawl_files
    for stage, steps in (("pretrain_moe", args.base_steps),
                         ("pretrain_student", args.student_steps)):
        if steps:
            stages[stage]["train"] = short_train(stages[stage]["train"], steps)
    for assignment in args.set:
        path, _, text = assignment.partition("=")
        *keys, last = path.split(".")
        if not keys or keys[0] not in stages:
            raise SystemExit(f"--set {assignment!r}: use stage.param[.field]=JSON with a stage "
                             f"of the profile ({', '.join(sorted(stages))})")
        node = stages
        for key in keys:
            node = node.setdefault(key, {})
        try:
            node[last] = json.loads(text)
        except json.JSONDecodeError:
            node[last] = text
    return stages


def committed(store: ArtifactStore) -> dict[str, dict]:
    """Newest committed manifest of every stage of the R1 DAG that has one."""
    out = {}
    for stage in STAGES:
        man = store.newest(stage)
        if man is not None:
            out[stage] = man
    return out


def run_phase(name: str, args, deadline: float) -> int | None:
    """One phase as a luigi subprocess (its own process group), killed at the deadline.
    Prints each stage as it commits. Returns luigi's exit code (None: stopped at the budget)."""
    root, targets, workers = PHASES[name]
    workers = workers or os.cpu_count() or 1
    cmd = [sys.executable, "-m", "luigi", "--module", "bench.r1_small", root, "--local-scheduler",
           "--workers", str(workers), "--profile", f"{args.profile}-r1", "--store", args.store,
           *args.luigi_args]
    if targets:
        cmd += ["--targets", json.dumps(targets)]
    env = {**os.environ, PROFILE_ENV: json.dumps({"name": f"{args.profile}-r1",
                                                  "base": args.profile,
                                                  "stages": r1_profile(args)}),
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", ""))
                                         if p)}
    log_path = Path(args.out) / f"luigi-{name}.log"
    store = ArtifactStore(args.store)
    seen = set(committed(store))
    t0 = time.time()
    print(f"[{name}] {' '.join(cmd[2:])}\n[{name}] log: {log_path}", flush=True)
    with open(log_path, "a") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        rc = None
        while rc is None and time.time() < deadline:
            try:
                rc = proc.wait(timeout=max(1.0, min(20.0, deadline - time.time())))
            except subprocess.TimeoutExpired:
                pass
            for stage, man in committed(store).items():
                if stage not in seen:
                    seen.add(stage)
                    print(f"[{name}] {time.time() - t0:6.0f} s  committed {stage} "
                          f"{man['version']} ({man['run'].get('wall_seconds', 0):.0f} s)",
                          flush=True)
        if rc is None:
            print(f"[{name}] budget reached after {time.time() - t0:.0f} s: stopping luigi "
                  f"(run the same command again to continue)", flush=True)
            stop(proc)
    print(f"[{name}] luigi exit code {rc} after {time.time() - t0:.0f} s", flush=True)
    if rc not in (0, None):
        print("".join(log_path.read_text().splitlines(keepends=True)[-40:]), flush=True)
    return rc


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the phase's process group (luigi and the training it started), SIGKILL after 20 s."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


# ----------------------------------------------------------------------------- report


def timings(store: ArtifactStore) -> list[str]:
    """Markdown table: every committed stage's version, wall seconds and a few metrics."""
    lines = ["| stage | version | wall s | notes |", "|---|---|---:|---|"]
    for stage, man in committed(store).items():
        m = {"rows": man["outputs"]["rows"], **man["outputs"]["metrics"]}
        notes = ", ".join(f"{k} {m[k]:.4g}" if isinstance(m[k], float) else f"{k} {m[k]}"
                          for k in ("rows", "steps", "examples", "kept", "val_loss", "loss_last",
                                    "train_tokens", "params")
                          if isinstance(m.get(k), (int, float)) and not isinstance(m[k], bool))
        lines.append(f"| {stage} | {man['version']} | {man['run'].get('wall_seconds', 0):.0f} | "
                     f"{notes} |")
    return lines


def upstream_manifest(store: ArtifactStore, man: dict, name: str) -> dict:
    up = man["upstream"][name]
    return store.read_manifest(up["stage"], up["version"])


def r1_numbers(store: ArtifactStore) -> dict | None:
    """The #5 numbers from the newest evaluate manifest and, through its upstream versions,
    the GRPO runs', distill's and rejection_sample's manifests; None before evaluate commits."""
    ev = store.newest("evaluate")
    if ev is None:
        return None
    models = ev["outputs"]["metrics"]["models"]
    rl = {n: upstream_manifest(store, ev, n)["outputs"]["metrics"]
          for n in ("grpo", "grpo_zero", "student_rl")}
    distill = upstream_manifest(store, ev, "student")
    samples = upstream_manifest(store, distill, "samples")
    policy = samples["upstream"]["policy"]
    teacher = next(n for n, r in models.items()
                   if (r["stage"], r["version"]) == (policy["stage"], policy["version"]))
    ratio = (models["student"]["pass@1"] / models[teacher]["pass@1"]
             if models[teacher]["pass@1"] > 0 else math.nan)
    return {"evaluate": ev, "models": models, "rl": rl, "teacher": teacher, "ratio": ratio,
            "distill_steps": distill["outputs"]["metrics"]["steps"],
            "distill_examples": distill["outputs"]["metrics"]["examples"],
            "kept_samples": samples["outputs"]["metrics"]["kept"]}


def format_at_start(rl_metrics: dict) -> float:
    """Format reward of an RL run's first step: the samples of the untouched starting model (a
    first-quarter mean hides a format that emerges within the first few steps)."""
    return rl_metrics["per_step"][0]["reward_format"]


def pass_at_max_k(model: dict) -> float:
    """pass@k at evaluate's k (the share of problems with a right sample among the k); nan from
    evaluate versions before pass@k."""
    ladder = model.get("pass@k") or {}
    return ladder[max(ladder, key=int)] if ladder else math.nan


def r1_table(n: dict) -> list[str]:
    """The #5 table (markdown), acceptance lines last."""
    ev, models, rl = n["evaluate"], n["models"], n["rl"]
    m = ev["outputs"]["metrics"]
    lines = [f"## R1 `{ev['profile']}`: held-out pass@1 (evaluate {ev['version']})", "",
             f"{m['held_out_problems']} held-out problems x k = {m['k']} samples, T "
             f"{ev['params']['temperature']}, top-p {ev['params']['top_p']}, at most "
             f"{ev['params']['max_new_tokens']} new tokens.", "",
             f"| model | stage | version | pass@1 | pass@{m['k']} | format rate | mean tokens "
             "| finished |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for name in MODELS:
        r = models[name]
        lines.append(f"| {name} | {r['stage']} | {r['version']} | {r['pass@1']:.3f} | "
                     f"{pass_at_max_k(r):.3f} | {r['format_rate']:.3f} | "
                     f"{r['mean_response_tokens']:.0f} | {r['finished_rate']:.3f} |")
    lines += ["", "| RL run | steps | format reward, step 0 | format reward, first -> last quarter "
              "| first step with format >= 0.5 | accuracy reward, first -> last quarter "
              "| largest grad norm (step) |",
              "|---|---:|---:|---|---:|---|---:|"]
    for name, r in rl.items():
        top = max(r["per_step"], key=lambda row: row["grad_norm"])
        onset = format_onset(r["per_step"])
        lines.append(f"| {name} | {r['steps']} | {format_at_start(r):.3f} | "
                     f"{r['reward_format_first']:.3f} -> {r['reward_format_last']:.3f} | "
                     f"{'never' if onset is None else onset} | "
                     f"{r['reward_accuracy_first']:.3f} -> {r['reward_accuracy_last']:.3f} | "
                     f"{top['grad_norm']:.2f} ({top['step']}) |")
    gain = models["grpo"]["pass@1"] - models["cold_start"]["pass@1"]
    teacher = models[n["teacher"]]["pass@1"]
    diffs = m.get("paired_differences", {})

    def stderr_note(name: str) -> str:
        """' ± s.e., paired' of evaluate's difference `name` (older evaluate versions: '')."""
        d = diffs.get(name)
        if not d:
            return ""
        noise = " (within 2 s.e. of 0)" if d["within_2se"] else ""
        return f", paired s.e. {100 * d['stderr']:.1f} points{noise}"

    checks = [
        (gain >= 0.15, f"GRPO raises held-out pass@1 by >= 15 points over the cold start: "
                       f"{models['cold_start']['pass@1']:.3f} -> {models['grpo']['pass@1']:.3f} "
                       f"({100 * gain:+.1f} points{stderr_note('grpo - cold_start')}; the "
                       f"cold start's pass@{m['k']}: {pass_at_max_k(models['cold_start']):.3f})"),
        (rl["grpo"]["reward_format_last"] >= 0.95,
         f"GRPO format reward >= 0.95 (last quarter of steps): "
         f"{rl['grpo']['reward_format_last']:.3f}"),
        (format_at_start(rl["grpo_zero"]) <= 0.1 and rl["grpo_zero"]["reward_format_last"] >= 0.9,
         f"grpo_zero format reward from near 0 (<= 0.1, step 0: the base's own samples) to >= 0.9 "
         f"(last quarter): {format_at_start(rl['grpo_zero']):.3f} -> "
         f"{rl['grpo_zero']['reward_format_last']:.3f}"),
        (n["ratio"] >= 0.8, f"distilled student >= 80 % of its teacher ({n['teacher']}, the "
                            f"checkpoint rejection_sample drew from): "
                            f"{models['student']['pass@1']:.3f} / {teacher:.3f} = {n['ratio']:.2f}"),
        (models["student"]["pass@1"] > models["student_rl"]["pass@1"]
         and rl["student_rl"]["steps"] == n["distill_steps"],
         f"distilled student beats the same base trained with GRPO alone for as many optimiser "
         f"steps ({n['distill_steps']} SFT on {n['distill_examples']} examples, "
         f"{n['kept_samples']} of them rejection samples, vs "
         f"{rl['student_rl']['steps']} GRPO): {models['student']['pass@1']:.3f} vs "
         f"{models['student_rl']['pass@1']:.3f}{stderr_note('student - student_rl')}")]
    lines += ["", "| acceptance | |", "|---|---|"]
    lines += [f"| {'PASS' if ok else 'FAIL'} | {text} |" for ok, text in checks]
    return lines


def report(args) -> bool:
    """Print (and write to --out) the stage timings and, if evaluate has committed, the #5
    table with the evaluation report's files; True when the table was made."""
    store = ArtifactStore(args.store)
    out = Path(args.out)
    times = timings(store)
    (out / "timings.md").write_text("\n".join(times) + "\n")
    print("\n## Stage timings (wall s from each manifest)\n\n" + "\n".join(times), flush=True)
    numbers = r1_numbers(store)
    if numbers is None:
        print("\nevaluate has not committed yet: no #5 table (run the next phase)", flush=True)
        return False
    ev = numbers["evaluate"]
    for name in REPORT_FILES:
        shutil.copyfile(store.path("evaluate", ev["version"], name), out / name)
    table = r1_table(numbers)
    (out / "table.md").write_text("\n".join(table) + "\n")
    print("\n" + "\n".join(table), flush=True)
    return True


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", default="all",
                    help="data | base | post | all | report, or a comma list (data,base)")
    ap.add_argument("--profile", default="small", choices=sorted(R1_DEFAULTS))
    ap.add_argument("--store", default="/tmp/r1_small/store")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "bench/out/r1_small"))
    ap.add_argument("--budget-s", type=float, default=560.0,
                    help="wall seconds for this command's phases; luigi is stopped after")
    ap.add_argument("--crawl-files", type=int, default=-1,
                    help="SyntheticCrawl num_files (-1: the profile's R1 default, 0: no override)")
    ap.add_argument("--base-steps", type=int, default=-1, help="PretrainMoe steps (-1: default)")
    ap.add_argument("--student-steps", type=int, default=-1,
                    help="PretrainStudent steps (-1: default)")
    ap.add_argument("--set", action="append", default=[], metavar="STAGE.PARAM[.FIELD]=JSON",
                    help="change one profile value for this run, e.g. grpo.grpo.lr=2e-5")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny profile on CPU into a temp store, all phases: checks the logic")
    ap.add_argument("luigi_args", nargs="*", help="after --: options for every luigi call")
    args = ap.parse_args(argv)
    t0 = time.time()
    if args.smoke:
        args.profile, args.phase, args.budget_s = "tiny", "all", 3600.0
        args.store = str(Path(tempfile.mkdtemp(prefix="r1_smoke_")) / "store")
        args.out = str(Path(args.store).parent / "out")
    for key, value in R1_DEFAULTS[args.profile].items():
        if getattr(args, key) == -1:
            setattr(args, key, value)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    phases = ["data", "base", "post"] if args.phase == "all" else [p for p in args.phase.split(",") if p]
    unknown = [p for p in phases if p not in (*PHASES, "report")]
    if unknown:
        ap.error(f"unknown phase {unknown}; use {', '.join(PHASES)}, all or report")
    print(f"profile {args.profile}-r1, store {args.store}, out {args.out}: crawl files "
          f"{args.crawl_files}, MoE steps {args.base_steps}, student steps {args.student_steps}, "
          f"set {args.set}, luigi {args.luigi_args}", flush=True)
    failed = False
    for name in phases:
        if name == "report":
            continue
        if time.time() > t0 + args.budget_s - 30:
            print(f"[{name}] not started: the budget is spent", flush=True)
            failed = True
            break
        rc = run_phase(name, args, t0 + args.budget_s)
        if rc != 0:
            failed = True
            break
    made = report(args)
    print(f"\ntotal {time.time() - t0:.0f} s", flush=True)
    if args.smoke:
        return 0 if made and not failed else 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
