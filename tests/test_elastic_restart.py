"""Elastic restart: 2 gloo ranks under torchrun (started by `stages.launch.run_job`, c10d
rendezvous on 127.0.0.1, --max-restarts 1). One rank SIGKILLs itself, or SIGSTOPs itself (a
hang its peer detects by the collective timeout), after step 15 of the first attempt; torchrun
restarts both ranks, they resume from checkpoint-10 and end with the weights and losses of an
uninterrupted run. The ranks are `tests.test_pretrain`'s worker (its `faults` spec)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from deeprecipe.stages.launch import JobFailed, Rendezvous, run_job, torchrun_argv
from deeprecipe.stages.training_io import checkpoint_dirs
from tests.conftest import free_port
from tests.test_pretrain import TRAIN, read_rows, tokens_path, worker_env, write_spec  # noqa: F401 (fixture)

STEPS, FAULT_AFTER = 20, 15          # checkpoints at 10 and 20; the fault falls between them
TIMEOUT_S = 10.0                     # collective timeout of these runs (hang detection)


def run_two_ranks(tmp: Path, name: str, tokens: Path, faults=(), max_restarts: int = 1):
    """Train STEPS steps on 2 ranks through run_job; returns (wall s, log lines)."""
    out = tmp / name
    spec = write_spec(tmp, name, tokens=str(tokens), out_dir=str(out), faults=list(faults),
                      train={**TRAIN, "steps": STEPS, "collective_timeout_s": TIMEOUT_S})
    rdzv = Rendezvous(hosts=("127.0.0.1",), ranks_per_host=2, port=free_port(), run_id=name,
                      max_restarts=max_restarts)
    argv = torchrun_argv(rdzv, "127.0.0.1", "tests.test_pretrain", [str(spec)])
    lines: list[str] = []
    t0 = time.time()
    run_job({"127.0.0.1": argv}, lambda host, line: lines.append(line), env=worker_env())
    return time.time() - t0, lines


@pytest.fixture(scope="module")
def uninterrupted(tokens_path, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    run_two_ranks(tmp, "run", tokens_path, max_restarts=0)
    return tmp / "run"


def assert_same_run(out: Path, reference: Path) -> None:
    results = [json.loads((out / f"result-rank{r}.json").read_text()) for r in range(2)]
    assert [(r["restart_count"], r["start_step"]) for r in results] == [(1, 10), (1, 10)]
    assert [p.name for p in checkpoint_dirs(out)] == ["checkpoint-00000010",
                                                      "checkpoint-00000020"]
    rows, ref_rows = read_rows(out), read_rows(reference)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))    # no duplicated steps
    np.testing.assert_allclose([r["loss"] for r in rows], [r["loss"] for r in ref_rows],
                               rtol=1e-5)
    got = load_file(str(checkpoint_dirs(out)[-1] / "model.safetensors"))
    want = load_file(str(checkpoint_dirs(reference)[-1] / "model.safetensors"))
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6, msg=k)


def test_sigkilled_rank_restarts_job_from_last_checkpoint(tokens_path, uninterrupted, tmp_path):
    _, lines = run_two_ranks(tmp_path, "killed", tokens_path, faults=[
        {"attempt": 0, "rank": 1, "after_step": FAULT_AFTER, "signal": "SIGKILL"}])
    log = "".join(lines)
    assert "failed (exitcode: -9) local_rank: 1" in log, log[-3000:]   # torchrun saw the kill
    assert_same_run(tmp_path / "killed", uninterrupted)


def test_sigstopped_rank_is_detected_by_timeout_and_restarted(tokens_path, uninterrupted, tmp_path):
    wall, lines = run_two_ranks(tmp_path, "stopped", tokens_path, faults=[
        {"attempt": 0, "rank": 1, "after_step": FAULT_AFTER, "signal": "SIGSTOP"}])
    log = "".join(lines)
    assert "[rank0]: RuntimeError" in log and "Timed out waiting" in log, log[-3000:]
    assert wall > TIMEOUT_S
    assert_same_run(tmp_path / "stopped", uninterrupted)


def test_restarts_exhausted_fails_with_the_failing_ranks_report(tokens_path, tmp_path):
    with pytest.raises(JobFailed) as e:
        run_two_ranks(tmp_path, "dead", tokens_path, max_restarts=0, faults=[
            {"attempt": 0, "rank": 1, "after_step": 2, "signal": "SIGKILL"}])
    assert "rank: 1" in str(e.value) and "SIGKILL" in str(e.value), str(e.value)


def test_checkpoint_replaced_or_pruned_is_never_left_partial(tmp_path, monkeypatch):
    """A process killed while commit_checkpoint deletes an old or same-step folder (simulated:
    rmtree raises before removing anything) leaves no partial `checkpoint-*` behind: the folder
    was renamed to a temp name first, and the newest complete checkpoint is intact."""
    import shutil

    from deeprecipe.stages import training_io

    def make(name: str, step_marker: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.safetensors").write_text(step_marker)
        (folder / "trainer_state.json").write_text("{}")
        return folder

    make("checkpoint-00000010", "10")
    make("checkpoint-00000020", "old 20")

    def killed_mid_delete(path, *a, **kw):
        if Path(path).exists():
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(shutil, "rmtree", killed_mid_delete)
    with pytest.raises(KeyboardInterrupt):   # re-saving step 20 replaces the old folder
        training_io.commit_checkpoint(make(".tmp-checkpoint-00000020", "new 20"),
                                      tmp_path / "checkpoint-00000020", keep=2)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["checkpoint-00000010"]
    monkeypatch.undo()
    training_io.commit_checkpoint(tmp_path / ".tmp-checkpoint-00000020",
                                  tmp_path / "checkpoint-00000020", keep=1)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["checkpoint-00000020"]
    assert (tmp_path / "checkpoint-00000020" / "model.safetensors").read_text() == "new 20"
    assert not any(p.name.startswith("checkpoint-00000010") for p in tmp_path.iterdir())
