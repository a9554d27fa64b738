"""Progress of long stages: tqdm on a terminal; luigid's percentage and status message; and,
when stderr is not a terminal (a log, CI, this test), a log line now and then."""
from __future__ import annotations

import io
import json
import logging
import sys

from deeprecipe.pipeline.progress import Progress


class FakeTask:
    def __init__(self):
        self.percent, self.messages = [], []

    def set_progress_percentage(self, p):
        self.percent.append(p)

    def set_status_message(self, m):
        self.messages.append(m)


def test_progress_reports_to_luigid_and_logs_without_a_terminal(caplog, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal, even under pytest -s
    task = FakeTask()
    with caplog.at_level(logging.INFO, logger="luigi-interface"):
        bar = Progress(task, total=10, desc="grpo_zero steps", every_s=0.0, log_every_s=3600)
        bar.update_to(0, "sampling the first batch")
        for step in range(10):
            bar.update_to(step + 1, f"reward 0.{step}")
        bar.close()
    assert task.percent == [0.0] + [10.0 * (i + 1) for i in range(10)]
    assert task.messages[0] == "sampling the first batch" and task.messages[-1] == "reward 0.9"
    lines = [r.getMessage() for r in caplog.records]
    # not a terminal: the first and the last update are logged (the rest at most every 3600 s)
    assert len(lines) == 2
    assert lines[0].startswith("grpo_zero steps 0/10 (0%, ") and lines[0].endswith("): sampling the first batch")
    assert lines[1].startswith("grpo_zero steps 10/10 (100%, ") and lines[1].endswith("): reward 0.9")
    assert "ETA" not in lines[1]


def test_eta_leaves_out_the_set_up_before_the_first_step(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    clock = [1000.0]
    monkeypatch.setattr("deeprecipe.pipeline.progress.time.time", lambda: clock[0])
    bar = Progress(FakeTask(), total=100, desc="pretrain_moe steps")
    bar.update_to(0, "building the engine")
    clock[0] += 60  # a minute of set-up, then one step a second
    bar.update_to(1)
    clock[0] += 10
    bar.update_to(11)
    assert bar.line(None, clock[0]) == "pretrain_moe steps 11/100 (11%, 70s, ETA 89s)"


def test_pretraining_progress_comes_from_the_training_process(caplog, monkeypatch):
    """workflows.train.run_training passes the training process's log through and turns its
    phase and step lines (stages.pretrain's format) into progress."""
    from deeprecipe.workflows.train import run_training
    script = (
        "import logging, json, sys; logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s'); "
        "log = logging.getLogger('x'); "
        "log.info('building the model and the DeepSpeed engine (world size 1, cpu)'); "
        "log.info('engine ready in 0.1 s: 1000 parameters'); "
        "log.info('step %d loss %.4f lr %.3g gnorm %.3g tok/s %.0f', 1, 5.0, 1e-3, 1.0, 100); "
        "log.info('step %d loss %.4f lr %.3g gnorm %.3g tok/s %.0f', 4, 4.0, 1e-3, 1.0, 100); "
        "print(json.dumps({'start_step': 0, 'world_size': 1}))")
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    task = FakeTask()
    with caplog.at_level(logging.INFO, logger="luigi-interface"):
        bar = Progress(task, total=4, desc="pretrain_moe steps", every_s=0.0, log_every_s=0.0)
        out = run_training([sys.executable, "-c", script], {}, bar)
    assert json.loads(out.strip().splitlines()[-1]) == {"start_step": 0, "world_size": 1}
    assert task.percent[0] == 0.0 and task.percent[-1] == 100.0 and 25.0 in task.percent
    assert task.messages[0].startswith("starting the training process")
    assert any(m.startswith("building the model") for m in task.messages)
    assert task.messages[-1].startswith("loss 4.0000")
    assert "engine ready in 0.1 s" in err.getvalue()  # the process's own log passes through
    assert any(r.getMessage().startswith("pretrain_moe steps 1/4 (25%") for r in caplog.records)
