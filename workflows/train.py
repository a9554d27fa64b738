"""pretrain_moe: the DeepSeekMoE base model trained through DeepSpeed on the packed tokens.

Training runs in a subprocess (`python -m deeprecipe.stages.pretrain`, or `torchrun` for
several GPUs) that checkpoints into the attempt's scratch folder; re-running the task after a crash resumes
from the newest checkpoint (same version = same scratch folder). The artifact is an HF-style
folder: config.json, model.safetensors, tokenizer.json, plus metrics.jsonl and metrics.png, and
hf/: the model as a transformers checkpoint (`put_hf_export`, every model stage writes one)."""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np

import deeprecipe
from deeprecipe.pipeline.lazy import lazy_module
from deeprecipe.stages import launch, train_config   # neither imports torch

from .base import LOCAL_CACHE, StageTask, local_copy, local_dir
from .pretrain import TokenizePack, TokenizerTrain

# imported on first use, so that reading the DAG (deeprecipe status) does not import torch
torch = lazy_module("torch")
moe_model = lazy_module("deeprecipe.stages.moe_model")
pretrain = lazy_module("deeprecipe.stages.pretrain")
training_io = lazy_module("deeprecipe.stages.training_io")
hf_export = lazy_module("deeprecipe.stages.hf_export")
report = lazy_module("deeprecipe.stages.report")  # metrics.png (stages.pretrain draws it)
hf_import = lazy_module("deeprecipe.stages.hf_import")

STEP_LINE = re.compile(r"\bstep (\d+) (loss .*)$")


def run_training(commands: list[str] | dict[str, list[str]], env: dict, bar) -> str:
    """Run the training job (one command, or one launcher per host: `stages.launch.run_job`);
    pass its log through to this process's stderr (prefixed by the host when there are
    several) and turn its phase and step lines into progress (terminal and luigid). Returns
    the first command's stdout; a failed job raises `launch.JobFailed` with the failing rank's
    report."""
    if not isinstance(commands, dict):
        commands = {"localhost": commands}
    several = len(commands) > 1
    bar.update_to(0, "starting the training process (imports torch and DeepSpeed)")

    def on_line(host: str, line: str) -> None:
        sys.stderr.write(f"[{host}] {line}" if several else line)
        m = STEP_LINE.search(line.rstrip())
        if m:
            bar.update_to(int(m.group(1)), m.group(2))
        elif "engine" in line or "training steps" in line or "resumed from" in line:
            bar.update_to(bar.n, line.rstrip().split(" ", 2)[-1])

    try:
        return launch.run_job(commands, on_line, env=env)
    finally:
        bar.close()


DIST_VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def put_hf_export(ctx, model, tok_json: Path, scratch: Path) -> None:
    """The model as a transformers checkpoint (`stages.hf_export`: deepseek_v3 / glm4_moe /
    llama, tokenizer with our chat template) into the artifact's `hf/` folder."""
    local = scratch / "transformers"
    hf_export.export_transformers(model, tok_json, local)
    for name in hf_export.HF_FILES:
        dest = ctx.output_path(f"hf/{name}")
        ctx.store.makedirs(os.path.dirname(dest))
        ctx.fs.put_file(str(local / name), dest)

class PretrainMoe(StageTask):
    """DeepSeekMoE pretraining (aux-loss-free routing, DeepSpeed ZeRO, bf16 on GPU)."""
    code_version = "3"  # 2: hf/ (transformers export); 3: multi-host launch, elastic restarts
    source_objects = (pretrain, train_config, training_io, moe_model, hf_export, report)
    config_cls = train_config.PretrainConfig

    @property
    def resources(self):
        # GPUs of this machine; a job on `hosts` uses theirs (the allocation's or the hostfile's)
        c = self.config
        return {"gpu": c.gpus} if c.gpus and not c.hosts else {}

    def upstream(self):
        return {"tokens": self.clone(TokenizePack), "tokenizer": self.clone(TokenizerTrain)}

    def job_commands(self, args: list[str], env: dict,
                     run_id: str) -> tuple[dict[str, list[str]], int]:
        """(host -> the command that starts its launcher, world size). One process for
        gpus <= 1 on this machine; else torchrun on every host (`stages.launch`), joined by a
        c10d rendezvous on the first host, restarting its ranks up to max_restarts times."""
        c = self.config
        module = "deeprecipe.stages.pretrain"
        if not c.hosts and c.gpus <= 1:
            return {"localhost": [sys.executable, "-m", module, *args]}, 1
        hosts = launch.resolve_hosts(c.hosts, max(1, c.gpus))
        port = c.rdzv_port or (launch.free_port() if not c.hosts else 0)
        if not port:
            raise ValueError("pretrain_moe: rdzv_port 0 (a free port) only works on one host; "
                             "give --PretrainMoe-rdzv-port for a multi-host job")
        rdzv = launch.Rendezvous(hosts=tuple(hosts), ranks_per_host=max(1, c.gpus), port=port,
                                 run_id=run_id, max_restarts=c.max_restarts)
        starter = c.node_start or launch.default_starter(c.hosts)
        if starter not in launch.NODE_STARTERS:
            raise ValueError(f"pretrain_moe: node_start={starter!r}; choose one of "
                             f"{sorted(launch.NODE_STARTERS)}")
        start = launch.NODE_STARTERS[starter]
        passed = {k: v for k, v in env.items() if k == "PYTHONPATH" or k.startswith(
            launch.PASSED_ENV_PREFIXES)}
        commands = {host: start(host, launch.torchrun_argv(rdzv, host, module, args, passed))
                    for host in hosts}
        return commands, len(hosts) * rdzv.ranks_per_host

    def model_overrides_for(self, ctx) -> dict:
        vocab = ctx.input("tokenizer").manifest["outputs"]["metrics"]["vocab_size"]
        seq_len = ctx.input("tokens").manifest["params"]["seq_len"]
        return {"vocab_size": vocab, "max_seq_len": seq_len, **self.config.model_overrides}

    def build(self, ctx):
        c, tokens = self.config, ctx.input("tokens")
        data_dir, train_dir = local_dir(ctx, "data"), local_dir(ctx, "train")
        shards = [str(local_copy(ctx, tokens, n, data_dir)) for n in tokens.files("train-*.npy")]
        overrides = self.model_overrides_for(ctx)
        args = ["--model", c.model, "--model-overrides", json.dumps(overrides),
                "--train", json.dumps(self.stage_params["train"]), "--tokens", *shards,
                "--out", str(train_dir)]
        env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}  # the run picks its own
        # the child imports this very deeprecipe (the folder holding the package), whatever cwd
        env["PYTHONPATH"] = os.pathsep.join([str(Path(deeprecipe.__file__).resolve().parents[1]),
                                             env.get("PYTHONPATH", "")])
        summary_path = train_dir / pretrain.SUMMARY_FILE
        summary_path.unlink(missing_ok=True)
        commands, world = self.job_commands(args, env, f"{ctx.stage}-{ctx.version}")
        self.set_status_message(f"pretrain_moe: {world} rank(s) on {len(commands)} host(s)")
        steps = c.train.steps
        for attempt in range(c.max_restarts + 1):
            try:
                run_training(commands, env, ctx.progress(total=steps, desc=f"{self.stage} steps"))
                break
            except launch.JobFailed as e:
                # torchrun restarted its ranks max_restarts times already: the job gave up.
                # The single process (no torchrun) is re-run here instead.
                if world > 1 or attempt == c.max_restarts:
                    raise
                sys.stderr.write(f"pretrain_moe: training failed ({e}); restart {attempt + 1} "
                                 f"of {c.max_restarts} from the newest checkpoint\n")
        run_summary = json.loads(summary_path.read_text())  # rank 0's final metrics
        if run_summary["world_size"] != world or run_summary["step"] != steps:
            raise RuntimeError(f"pretrain_moe: the job ended at step {run_summary['step']} with "
                               f"{run_summary['world_size']} ranks; expected {steps} steps on "
                               f"{world}")

        rows = [json.loads(line) for line in (train_dir / "metrics.jsonl").read_text().splitlines() if line]
        final = sorted(training_io.checkpoint_dirs(train_dir))[-1]
        model = training_io.load_model(final)
        export = local_dir(ctx, "export")
        tok_json = local_copy(ctx, ctx.input("tokenizer"), "tokenizer.json", export)
        training_io.export_hf_folder(model, model.cfg, tok_json, export / "hf")
        put_hf_export(ctx, model, tok_json, export)
        val = np.concatenate([np.load(local_copy(ctx, tokens, n, data_dir), mmap_mode="r")
                              for n in tokens.files("validation-*.npy")])
        # on the GPU when there is one (on CPU, 20 x 16 rows of `small` take minutes)
        val_loss = pretrain.validation_loss(model.to("cuda" if torch.cuda.is_available() else "cpu"), val)
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            ctx.fs.put_file(str(export / "hf" / name), ctx.output_path(name))
        for name in ("metrics.jsonl", "metrics.png"):
            if (train_dir / name).exists():
                ctx.fs.put_file(str(train_dir / name), ctx.output_path(name))
        first, last = rows[0], rows[-1]
        loads = [l["max_over_mean"] for l in last.get("expert_load", [])]
        summary = {"steps": last["step"], "loss_first": first["loss"], "loss_last": last["loss"],
                   "val_loss": val_loss, "expert_load_max_over_mean": max(loads) if loads else None,
                   "params": model.num_params(), "active_params": model.num_params(active_only=True),
                   "resumed_from_step": run_summary.get("start_step", 0),
                   "world_size": run_summary.get("world_size")}
        if not ctx.store.is_local:
            shutil.rmtree(LOCAL_CACHE / ctx.stage / ctx.version, ignore_errors=True)
        return summary


class BaseModel(StageTask):
    """External input: the user's own base model (`--base-model PATH`, a local transformers
    folder of a supported architecture, `stages.hf_import`) as our model folder, for the
    post-training stages to start from instead of pretrain_moe. Versioned by the sha256 of
    the folder's files (not its path): new bytes re-key it and everything built from it."""
    code_version = "1"
    source_objects = (hf_import,)

    def key_extras(self) -> dict:
        if not self.base_model:
            raise ValueError("stage base_model needs --base-model PATH (a transformers folder)")
        return {"base_model_sha256": hf_import.folder_sha256(self.base_model)}

    def build(self, ctx):
        out = local_dir(ctx, "import")
        info = hf_import.import_folder(self.base_model, out)
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            ctx.fs.put_file(str(out / name), ctx.output_path(name))
        if not ctx.store.is_local:
            shutil.rmtree(LOCAL_CACHE / ctx.stage / ctx.version, ignore_errors=True)
        return {**info, "source_path": str(self.base_model),
                "base_model_sha256": self.key_extras()["base_model_sha256"]}


def base_stage(task) -> type[StageTask]:
    """Where post-training starts: pretrain_moe, or base_model under --base-model."""
    return BaseModel if task.base_model else PretrainMoe
