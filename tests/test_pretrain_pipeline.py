"""RunPretrainPipeline on tiny: tokenizer, packed tokens and a pretrained MoE whose loss falls;
killing the training process mid-run and re-running the task resumes from its checkpoint and
ends where an uninterrupted run ends; two simulated nodes x 2 ranks (one c10d rendezvous)
started by the task commit one artifact, and a failing multi-node job fails the task with the
rank's error."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from deeprecipe.pipeline.store import ArtifactStore
from tests.conftest import REPO, base_env, free_port, luigi_cmd, run

PRETRAIN = ["--module", "workflows", "RunPretrainPipeline"]


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory) -> str:
    store = str(tmp_path_factory.mktemp("pretrain") / "store")
    run(luigi_cmd(*PRETRAIN, "--store", store, "--workers", "2"), timeout=1500)
    return store


def test_pretrain_pipeline_artifacts(trained_store):
    s = ArtifactStore(trained_store)
    m = s.newest("pretrain_moe")
    names = {f["name"] for f in m["outputs"]["files"]}
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.jsonl", "metrics.png"} <= names
    assert not any(n.endswith((".pt", ".bin", ".pkl")) for n in names)
    from deeprecipe.stages.hf_export import HF_FILES
    assert {f"hf/{n}" for n in HF_FILES} <= names  # the transformers export (issue 23)
    met = m["outputs"]["metrics"]
    assert met["loss_last"] < 0.5 * met["loss_first"], met
    assert met["val_loss"] < 0.6 * met["loss_first"], met
    assert met["resumed_from_step"] == 0 and met["steps"] == m["params"]["train"]["steps"]
    assert m["upstream"]["tokens"]["stage"] == "tokenize_pack"

    from tokenizers import Tokenizer
    from deeprecipe.stages.training_io import load_model
    from deeprecipe.stages.r1.sampler import generate
    folder = s.path("pretrain_moe", m["version"])
    model = load_model(folder)
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    assert model.cfg.vocab_size == tok.get_vocab_size()
    out = generate(model, [tok.encode("The city council").ids], max_new_tokens=8,
                   eos_id=tok.token_to_id("<|eos|>"), temperature=0.0)
    assert out.tokens_BN.shape[1] >= 1

    pack = s.newest("tokenize_pack")
    index = json.loads(Path(s.path("tokenize_pack", pack["version"], "index-train.json")).read_text())
    rows = np.load(s.path("tokenize_pack", pack["version"], index["shards"][0]["file"]))
    assert rows.shape[1] == index["row_len"] == pack["params"]["seq_len"] + 1
    per_source = pack["outputs"]["metrics"]["tokens_per_source"]
    share = per_source["<reasoning>"] / sum(per_source.values())
    assert abs(share - pack["params"]["reasoning_share"]) < 0.03, share   # pinned mixture share
    assert pack["upstream"]["reasoning"]["stage"] == "reasoning_corpus"
    corpus_man = s.newest("reasoning_corpus")
    corpus = corpus_man["outputs"]["metrics"]
    assert corpus["docs"] > 0 and corpus["docs_tagged"] > 0 and corpus["non_train_draws_skipped"] > 0
    # the pretraining corpus shows no held-out or RL problem worked
    import pyarrow.parquet as pq
    data_version = corpus_man["upstream"]["data"]["version"]
    unseen = {i for split in ("held_out", "rl") for i in pq.read_table(
        s.path("reasoning_data", data_version, f"problems-{split}.parquet")).column("id").to_pylist()}
    doc_ids = set(pq.read_table(s.path("reasoning_corpus", corpus_man["version"], "part-00000.parquet"),
                                columns=["id"]).column("id").to_pylist())
    assert unseen and doc_ids and not unseen & doc_ids


def test_killed_training_resumes_from_checkpoint(trained_store, tmp_path):
    """Copy every upstream artifact, then run pretrain_moe alone, SIGKILL it after its first
    checkpoint, re-run: it resumes and matches the uninterrupted run."""
    src, store = ArtifactStore(trained_store), str(tmp_path / "store")
    for stage in src.stages():
        if stage != "pretrain_moe":
            shutil.copytree(src.path(stage), os.path.join(store, stage))
    reference = src.newest("pretrain_moe")
    work = Path(store, "pretrain_moe", reference["version"], "_work", "train")
    proc = subprocess.Popen(luigi_cmd(*PRETRAIN, "--store", store), cwd=REPO, env=base_env(),
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    while not any(work.glob("checkpoint-*")):
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    s = ArtifactStore(store)
    assert s.committed("pretrain_moe") == []
    run(luigi_cmd(*PRETRAIN, "--store", store), timeout=1500)
    resumed = s.newest("pretrain_moe")
    assert resumed["version"] == reference["version"]
    got, want = resumed["outputs"]["metrics"], reference["outputs"]["metrics"]
    assert got["resumed_from_step"] > 0
    assert got["loss_last"] == pytest.approx(want["loss_last"], rel=1e-3)
    assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-3)


def upstream_only(trained_store: str, store: str) -> None:
    """Copy every committed stage but pretrain_moe into `store`."""
    src = ArtifactStore(trained_store)
    for stage in src.stages():
        if stage != "pretrain_moe":
            shutil.copytree(src.path(stage), os.path.join(store, stage))


def two_node_args(tmp_path: Path, ranks_per_node: int, train: dict) -> list[str]:
    """PretrainMoe options for a job on two 'hosts' of this machine (127.0.0.1, 127.0.0.2: both
    loopback), each started by the task's `local` starter: two torchrun launchers."""
    hostfile = tmp_path / "hosts"
    hostfile.write_text(f"127.0.0.1 slots={ranks_per_node}\n127.0.0.2 slots={ranks_per_node}\n")
    return ["--PretrainMoe-hosts", str(hostfile), "--PretrainMoe-node-start", "local",
            "--PretrainMoe-gpus", str(ranks_per_node), "--PretrainMoe-rdzv-port",
            str(free_port()), "--PretrainMoe-train", json.dumps(train)]


def test_two_nodes_of_two_ranks_commit_one_artifact(trained_store, tmp_path):
    store = str(tmp_path / "store")
    upstream_only(trained_store, store)
    r = run(luigi_cmd(*PRETRAIN, "--store", store,
                      *two_node_args(tmp_path, 2, {"steps": 4, "log_every": 1})), timeout=600)
    s = ArtifactStore(store)
    [m] = s.committed("pretrain_moe")
    assert m["params"]["hosts"].endswith("hosts") and m["params"]["gpus"] == 2
    met = m["outputs"]["metrics"]
    assert met["world_size"] == 4 and met["steps"] == 4, met
    assert {"config.json", "model.safetensors", "metrics.jsonl"} <= {
        f["name"] for f in m["outputs"]["files"]}
    # 4 ranks = both launchers joined the rendezvous; rank 0's step lines reached the task
    assert "step 4 loss" in r.stderr and "pretrain_moe steps 4/4" in r.stderr


def test_failing_multi_node_job_fails_the_task_with_the_ranks_error(trained_store, tmp_path):
    store = str(tmp_path / "store")
    upstream_only(trained_store, store)
    r = run(luigi_cmd(*PRETRAIN, "--store", store, "--scheduler-retry-count", "0",
                      "--PretrainMoe-model-overrides", json.dumps({"vocab_size": 16}),
                      "--PretrainMoe-max-restarts", "0",
                      *two_node_args(tmp_path, 1, {"steps": 2})), timeout=600, check=False)
    assert r.returncode != 0
    assert "JobFailed" in r.stderr and ">= vocab_size 16" in r.stderr, r.stderr[-4000:]
    assert ArtifactStore(store).committed("pretrain_moe") == []
