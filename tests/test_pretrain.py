"""stages/pretrain.py: DeepSpeed training of a small MoE on CPU (gloo), safetensors checkpoints,
kill -9 + resume, 2-rank ZeRO-0/ZeRO-2 with skewed routing, export/load.

Training runs with one intra-op thread (the CI box has 2 cores shared with other tests; more
threads oversubscribe). Multi-process runs start this file as a worker:
`python -m tests.test_pretrain SPEC.json` (one rank) or under `torchrun` (two ranks).
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from deeprecipe.stages.moe_model import MOE_CONFIGS, MoETransformer
from deeprecipe.stages.pretrain import TokenSource, scheduled_gamma, train
from deeprecipe.stages.train_config import TrainConfig, lr_multiplier
from deeprecipe.stages.training_io import (checkpoint_dirs, export_hf_folder, load_model,
                                           tree_from_tensors, tree_to_tensors)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# ~0.18M params: 2 layers (1 dense, 1 MoE with 1 shared + 8 routed experts, top-2).
MODEL = dataclasses.replace(MOE_CONFIGS["tiny"], vocab_size=64, d_model=64, n_layers=2,
                            n_heads=2, head_dim=32, d_ff_dense=128, d_ff_expert=64,
                            max_seq_len=32)
SEQ_LEN = 32
STEPS, CKPT_EVERY = 30, 10
TRAIN = dict(steps=STEPS, micro_batch=8, grad_accum=2, lr=3e-3, min_lr=3e-4, warmup_steps=5,
             zero_stage=0, dtype="fp32", bias_update_speed=0.01, gamma_off_frac=0.1,
             checkpoint_every_steps=CKPT_EVERY, checkpoint_every_minutes=None, log_every=10,
             seed=0)


def successor_tokens(n_seqs: int, seed: int = 0) -> np.ndarray:
    """(n_seqs, SEQ_LEN+1) uint32: each row follows one fixed random successor map
    t -> perm[t] from a random start, so the next token is a function of the current one."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(MODEL.vocab_size)
    rows = np.empty((n_seqs, SEQ_LEN + 1), dtype=np.uint32)
    rows[:, 0] = rng.integers(0, MODEL.vocab_size, n_seqs)
    for t in range(1, SEQ_LEN + 1):
        rows[:, t] = perm[rows[:, t - 1]]
    return rows


def skewed_tokens(n_seqs: int) -> np.ndarray:
    """Rows cycling through 3 tokens: even rows {0,1,2}, odd rows {40,41,42}. Without
    shuffling, rank 0 of 2 sees only the first cycle and rank 1 only the second, so routing is
    concentrated on few experts and differently on each rank."""
    t = np.arange(SEQ_LEN + 1)
    rows = np.empty((n_seqs, SEQ_LEN + 1), dtype=np.uint32)
    for i in range(n_seqs):
        rows[i] = (0 if i % 2 == 0 else 40) + (t + i // 2) % 3
    return rows


def read_rows(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def single_thread(fn):
    """Run fn() with one torch thread, restoring the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- worker

def worker_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **extra)
    return env


def write_spec(tmp: Path, name: str, **spec) -> Path:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(spec))
    return path


def worker_main(spec_path: str) -> None:
    """One rank: train per SPEC (tokens .npy, train config, shuffle, optional pause_after_step
    = hang in on_step after that step, as a long run would; optional faults = this rank sends
    itself a signal after a step of one launcher attempt); write result-rank{r}.json."""
    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", "0"))
    Path(spec["out_dir"]).mkdir(parents=True, exist_ok=True)
    Path(spec["out_dir"], f"pid-rank{rank}").write_text(str(os.getpid()))
    data = TokenSource(np.load(spec["tokens"]), seed=spec["train"]["seed"],
                       shuffle=spec.get("shuffle", True))

    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))

    def on_step(row):
        if row["step"] == spec.get("pause_after_step"):
            time.sleep(600)
        for fault in spec.get("faults", []):   # {"attempt", "rank", "after_step", "signal"}
            if (fault["attempt"], fault["rank"], fault["after_step"]) == (attempt, rank,
                                                                          row["step"]):
                os.kill(os.getpid(), getattr(signal, fault["signal"]))

    final = train(dataclasses.replace(MODEL, **spec.get("model", {})),
                  TrainConfig(**spec["train"]), data, spec["out_dir"], resume=True,
                  on_step=on_step)
    Path(spec["out_dir"], f"result-rank{rank}.json").write_text(json.dumps(final))


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tokens_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tokens.npy"
    np.save(path, successor_tokens(96))
    return path


@pytest.fixture(scope="module")
def reference_run(tokens_path, tmp_path_factory):
    """STEPS uninterrupted steps, in this process, without a launcher."""
    out = tmp_path_factory.mktemp("reference")
    data = TokenSource(np.load(tokens_path), seed=0)
    final = single_thread(lambda: train(MODEL, TrainConfig(**TRAIN), data, str(out)))
    return out, final


# ----------------------------------------------------------------------------- unit tests

def test_lr_schedule_warms_up_then_decays_to_min_lr():
    cfg = TrainConfig(**TRAIN)
    lrs = [cfg.lr * lr_multiplier(s, cfg) for s in range(cfg.steps + 1)]
    assert lrs[0] == pytest.approx(cfg.lr / cfg.warmup_steps)
    assert max(lrs) == pytest.approx(cfg.lr) and lrs.index(max(lrs)) == cfg.warmup_steps - 1
    assert all(a >= b for a, b in zip(lrs[cfg.warmup_steps:], lrs[cfg.warmup_steps + 1:]))
    assert lrs[-1] == pytest.approx(cfg.min_lr)


def test_gamma_schedule_constant_or_decaying_then_off():
    const = [scheduled_gamma(s, 100, 1e-3, off_frac=0.1) for s in range(1, 101)]
    assert const[:90] == [1e-3] * 90 and const[90:] == [0.0] * 10
    dec = [scheduled_gamma(s, 100, 1e-3, gamma_start=1e-2, decay_frac=0.5, off_frac=0.1)
           for s in range(0, 101)]
    assert dec[0] == pytest.approx(1e-2) and dec[50] == pytest.approx(1e-3)
    assert dec[25] == pytest.approx(1e-2 * 0.1 ** 0.5)  # geometric: halfway in log space
    assert all(a > b for a, b in zip(dec[:50], dec[1:51]))
    assert dec[51:91] == [pytest.approx(1e-3)] * 40 and dec[91:] == [0.0] * 10
    with pytest.raises(ValueError, match="gamma_start"):
        TrainConfig(**{**TRAIN, "gamma_start": 0.0})


def test_token_source_shards_ranks_and_resumes_mid_epoch():
    tokens = np.repeat(np.arange(10, dtype=np.uint32)[:, None], SEQ_LEN + 1, axis=1)  # row i = i
    ranks = [TokenSource(tokens, seed=3).shard(r, 2) for r in range(2)]
    seen = [np.concatenate([s.next_batch(2) for _ in range(2)])[:, 0].tolist() for s in ranks]
    assert len(set(seen[0])) == len(set(seen[1])) == 4 and not set(seen[0]) & set(seen[1])
    a = TokenSource(tokens, seed=3)
    a.next_batch(7)
    saved = json.loads(json.dumps(a.state_dict()))
    expected = [a.next_batch(4) for _ in range(3)]   # crosses into epochs 1 and 2
    b = TokenSource(tokens, seed=3)
    b.load_state_dict(saved)
    assert all(np.array_equal(x, b.next_batch(4)) for x in expected)
    assert b.epoch == a.epoch == 1 and b.index == a.index == 9
    with pytest.raises(ValueError, match="world size"):
        TokenSource(tokens, seed=3).shard(0, 2).load_state_dict(saved)


def test_state_tree_round_trip_keeps_int_keys_tuples_and_tensors():
    tree = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.arange(4.0)}},
            "param_groups": [{"betas": (0.9, 0.95), "params": [0, 1], "foreach": None}]}
    tensors: dict = {}
    skeleton = json.loads(json.dumps(tree_to_tensors(tree, tensors)))
    back = tree_from_tensors(skeleton, tensors)
    assert back["param_groups"] == tree["param_groups"]
    assert torch.equal(back["state"][0]["exp_avg"], tree["state"][0]["exp_avg"])
    with pytest.raises(TypeError, match="cannot store"):
        tree_to_tensors({"x": object()}, {})


# ----------------------------------------------------------------------------- training

@pytest.mark.slow
def test_single_process_training_loss_falls_and_logs_metrics(reference_run):
    out, final = reference_run
    rows = read_rows(out)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert final["loss"] < 0.6 * rows[0]["loss"], (rows[0]["loss"], final["loss"])
    assert final["device"] == "cpu" and final["dtype"] == "fp32" and final["mfu"] is None
    assert all(r["grad_norm"] > 0 and np.isfinite(r["grad_norm"]) for r in rows)
    assert all(r["tokens_per_s"] > 0 for r in rows)
    moe_layers = MODEL.n_layers - MODEL.n_dense_layers
    assert all(len(r["expert_load"]) == moe_layers and r["expert_load"][0]["max_over_mean"] >= 1
               for r in rows)
    assert rows[-1]["gamma"] == 0.0 and rows[0]["gamma"] == TRAIN["bias_update_speed"]
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    kept = checkpoint_dirs(out)
    assert [p.name for p in kept] == ["checkpoint-00000020", "checkpoint-00000030"]


@pytest.mark.slow
def test_checkpoint_is_safetensors_and_json_only(reference_run, tmp_path):
    out, final = reference_run
    ckpt = checkpoint_dirs(out)[-1]
    names = sorted(p.name for p in ckpt.iterdir())
    assert names == ["config.json", "model.safetensors", "optimizer.json",
                     "optimizer.safetensors", "trainer_state.json"]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pt", ".bin", ".pkl", ".pth")]
    assert {p.suffix for p in files} == {".safetensors", ".json", ".jsonl", ".png"}
    for path in files:   # every file parses as what its name says: nothing else hides there
        if path.suffix == ".safetensors":
            with safe_open(str(path), "pt") as f:
                assert len(list(f.keys())) > 0
        elif path.suffix == ".json":
            json.loads(path.read_text())
    index = json.loads((ckpt / "optimizer.json").read_text())
    decay, no_decay = index["param_groups"]
    all_names = [n for n, _ in MoETransformer(MODEL).named_parameters()]
    assert sorted(decay + no_decay) == sorted(all_names)
    assert not any("norm" in n for n in decay) and "layers.1.ffn.router.weight" in decay
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == STEPS and state["data"]["index"] >= 0
    assert state["lr_scheduler"]["last_epoch"] == STEPS


@pytest.mark.slow
def test_load_model_and_export_round_trip(reference_run, tokens_path, tmp_path):
    out, final = reference_run
    model = load_model(str(checkpoint_dirs(out)[-1]))
    assert model.cfg == MODEL
    bias = model.layers[1].ffn.router.expert_bias
    assert bias.abs().sum() > 0 and bias.tolist() == pytest.approx(
        final["router_bias"]["layers.1.ffn.router"], abs=1e-7)
    batch = torch.from_numpy(np.load(tokens_path)[:8].astype(np.int64))
    model.eval()
    with torch.no_grad():
        _, losses = model(batch[:, :-1], batch[:, 1:])
    assert losses["lm"].item() < 0.6 * read_rows(out)[0]["lm"]   # trained weights, not init
    tokenizer = tmp_path / "tok.json"
    tokenizer.write_text('{"model": {"type": "BPE"}}')
    folder = export_hf_folder(model, MODEL, str(tokenizer), str(tmp_path / "hf"))
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["MoETransformer"] and config["d_model"] == MODEL.d_model
    assert (folder / "tokenizer.json").read_text() == tokenizer.read_text()
    again = load_model(str(folder))
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    assert set(load_file(str(folder / "model.safetensors"))) == set(model.state_dict())


@pytest.mark.slow
def test_sigkill_after_checkpoint_then_resume_matches_uninterrupted(reference_run, tokens_path,
                                                                      tmp_path):
    ref_out, ref_final = reference_run
    out = tmp_path / "run"
    spec = dict(tokens=str(tokens_path), out_dir=str(out), train=TRAIN)
    cmd = [sys.executable, "-m", "tests.test_pretrain"]
    first = write_spec(tmp_path, "first", pause_after_step=CKPT_EVERY, **spec)
    proc = subprocess.Popen(cmd + [str(first)], cwd=REPO, env=worker_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    marker = out / f"checkpoint-{CKPT_EVERY:08d}" / "trainer_state.json"
    try:
        wait_for(marker, proc)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    log_text = proc.communicate(timeout=30)[0].decode()
    assert marker.exists(), log_text[-6000:]
    assert proc.returncode == -signal.SIGKILL
    assert [p.name for p in checkpoint_dirs(out)] == [marker.parent.name]
    (out / ".tmp-checkpoint-00000020").mkdir()     # debris of a save cut short: ignored
    (out / ".tmp-checkpoint-00000020" / "model.safetensors").write_bytes(b"partial")

    second = write_spec(tmp_path, "second", **spec)
    r = subprocess.run(cmd + [str(second)], cwd=REPO, env=worker_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    final = json.loads((out / "result-rank0.json").read_text())
    assert final["start_step"] == CKPT_EVERY and final["resumed_from"].endswith(marker.parent.name)
    assert not (out / ".tmp-checkpoint-00000020").exists()
    rows, ref_rows = read_rows(out), read_rows(ref_out)
    assert [row["step"] for row in rows] == list(range(1, STEPS + 1))   # no duplicates
    ref_loss = np.array([row["loss"] for row in ref_rows])
    loss = np.array([row["loss"] for row in rows])
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)   # bit-exact when measured
    assert final["loss"] == pytest.approx(ref_final["loss"], rel=1e-4)
    a = load_model(str(checkpoint_dirs(out)[-1])).state_dict()
    b = load_model(str(checkpoint_dirs(ref_out)[-1])).state_dict()
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def torchrun(spec: Path, **popen_kw) -> subprocess.Popen:
    """Two gloo ranks of the worker under torchrun, in their own process group."""
    return subprocess.Popen([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2",
                             "-m", "tests.test_pretrain", str(spec)], cwd=REPO,
                            env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, **popen_kw)


def sigkill_workers(out_dir: Path) -> list[int]:
    """SIGKILL every worker rank that wrote a pid file in out_dir (torchrun starts each rank
    in its own session, so killing the launcher alone would leave them running)."""
    killed = []
    for pid_file in out_dir.glob("pid-rank*"):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            killed.append(int(pid_file.read_text()))
        except ProcessLookupError:
            pass
    return killed


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 150) -> None:
    deadline = time.time() + timeout
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)


def finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-6000:]


@pytest.mark.slow
def test_two_ranks_zero0_and_zero2_skewed_routing_and_zero2_resume(tmp_path):
    """2 gloo ranks under torchrun; each rank sees a different 3-token cycle, so routing is
    skewed, and differently per rank. ZeRO-0 runs straight through; ZeRO-2 is SIGKILLed (all
    ranks) after its step-10 checkpoint and resumed from its per-rank optimiser shards. Both
    must learn, agree step by step, and end with the same router biases on both ranks."""
    tokens = tmp_path / "skewed.npy"
    np.save(tokens, skewed_tokens(64))
    steps, results = 20, {}
    for stage in (0, 2):
        out = tmp_path / f"zero{stage}"
        spec = dict(tokens=str(tokens), out_dir=str(out), shuffle=False,
                    train={**TRAIN, "steps": steps, "zero_stage": stage,
                           "bias_update_speed": 0.02})
        if stage == 2:
            proc = torchrun(write_spec(tmp_path, "zero2-first", pause_after_step=CKPT_EVERY,
                                       **spec))
            marker = out / f"checkpoint-{CKPT_EVERY:08d}" / "trainer_state.json"
            try:
                wait_for(marker, proc)
            finally:
                killed = sigkill_workers(out)
            log_text = proc.communicate(timeout=60)[0]
            assert marker.exists(), log_text[-6000:]
            assert len(killed) == 2 and proc.returncode != 0
        finish(torchrun(write_spec(tmp_path, f"zero{stage}", **spec)))
        ranks = [json.loads((out / f"result-rank{i}.json").read_text()) for i in range(2)]
        results[stage] = (ranks, read_rows(out))
        ckpts = checkpoint_dirs(out)
        assert [p.name for p in ckpts] == ["checkpoint-00000010", "checkpoint-00000020"]
        assert {p.name for p in ckpts[-1].iterdir()} >= (
            {"optimizer-rank0.safetensors", "optimizer-rank1.safetensors"} if stage
            else {"optimizer.safetensors"})

    assert [r["start_step"] for r in results[2][0]] == [CKPT_EVERY, CKPT_EVERY]
    assert [r["start_step"] for r in results[0][0]] == [0, 0]
    for stage, (ranks, rows) in results.items():
        assert [r["step"] for r in rows] == list(range(1, steps + 1))
        assert all(r["world_size"] == 2 and r["zero_stage"] == stage for r in ranks)
        assert rows[-1]["loss"] < 0.6 * rows[0]["loss"], (stage, rows[0]["loss"], rows[-1]["loss"])
        first_skew = rows[0]["expert_load"][0]["max_over_mean"]
        assert first_skew >= 1.5, f"routing not skewed: max/mean load {first_skew}"
        bias0, bias1 = (r["router_bias"]["layers.1.ffn.router"] for r in ranks)
        assert bias0 == bias1 and max(map(abs, bias0)) > 0      # identical, and it moved
        late_skew = np.mean([r["expert_load"][0]["max_over_mean"] for r in rows[-5:]])
        assert late_skew < first_skew, (stage, first_skew, late_skew)
    (ranks0, rows0), (ranks2, rows2) = results[0], results[2]
    for key in ("loss", "grad_norm", "lr"):
        np.testing.assert_allclose([r[key] for r in rows2], [r[key] for r in rows0], rtol=1e-4,
                                   err_msg=key)
    np.testing.assert_allclose(ranks2[0]["router_bias"]["layers.1.ffn.router"],
                               ranks0[0]["router_bias"]["layers.1.ffn.router"], atol=1e-6)


if __name__ == "__main__":
    worker_main(sys.argv[1])
