"""stages/launch.py without torch: Slurm host lists, hostfiles, per-node torchrun commands,
and run_job's merged log, first-failure stop and failure report (plain processes)."""
from __future__ import annotations

import sys

import pytest

from deeprecipe.stages.launch import (NODE_STARTERS, JobFailed, Rendezvous, expand_nodelist,
                                      failure_report, read_hostfile, resolve_hosts, run_job,
                                      slurm_hosts, torchrun_argv)


def test_expand_nodelist_follows_scontrol_show_hostnames():
    assert expand_nodelist("gpu[01-03,07],login1") == ["gpu01", "gpu02", "gpu03", "gpu07",
                                                       "login1"]
    assert expand_nodelist("r[1-2]n[8-9]") == ["r1n8", "r1n9", "r2n8", "r2n9"]
    assert expand_nodelist("node[9-11]") == ["node9", "node10", "node11"]
    assert expand_nodelist("a1,b-2") == ["a1", "b-2"]
    for bad in ("n[1-", "n[3-1]", "n[x]", "n]1["):
        with pytest.raises(ValueError):
            expand_nodelist(bad)


def test_slurm_hosts_read_the_allocation_and_check_the_count():
    env = {"SLURM_JOB_NODELIST": "h[1-2]", "SLURM_JOB_NUM_NODES": "2"}
    assert slurm_hosts(env) == ["h1", "h2"]
    with pytest.raises(RuntimeError, match="says 3"):
        slurm_hosts({**env, "SLURM_JOB_NUM_NODES": "3"})
    with pytest.raises(RuntimeError, match="Slurm allocation"):
        slurm_hosts({})


def test_hostfile_lines_slots_and_comments(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("# cluster\nnode-a slots=8\n\nnode-b  # no slots: trusted\n")
    assert read_hostfile(path, 8) == ["node-a", "node-b"]
    assert resolve_hosts(str(path), 8) == ["node-a", "node-b"]
    assert resolve_hosts("", 8) == ["127.0.0.1"]
    with pytest.raises(ValueError, match="4 slots"):
        path.write_text("node-a slots=4\n")
        read_hostfile(path, 8)
    with pytest.raises(ValueError, match="twice"):
        path.write_text("a\na\n")
        read_hostfile(path, 1)


def test_every_node_runs_torchrun_with_one_rendezvous_on_the_first_host():
    rdzv = Rendezvous(hosts=("n1", "n2"), ranks_per_host=8, port=29400, run_id="job",
                      max_restarts=3)
    argvs = {h: torchrun_argv(rdzv, h, "deeprecipe.stages.pretrain", ["--out", "/x y"],
                              {"PYTHONPATH": "/repo"}, python="/venv/bin/python")
             for h in rdzv.hosts}
    for host, argv in argvs.items():
        assert argv[0] == "env" and "PYTHONPATH=/repo" in argv and "/venv/bin/python" in argv
        for flag in ("--nnodes=2", "--nproc-per-node=8", "--rdzv-backend=c10d",
                     "--rdzv-endpoint=n1:29400", "--rdzv-id=job", "--max-restarts=3",
                     f"--local-addr={host}"):
            assert flag in argv, (flag, argv)
        assert argv[-4:] == ["-m", "deeprecipe.stages.pretrain", "--out", "/x y"]
    assert "--rdzv-conf=is_host=true" in argvs["n1"] and "--rdzv-conf=is_host=false" in argvs["n2"]
    ssh = NODE_STARTERS["ssh"]("n2", argvs["n2"])
    assert ssh[:4] == ["ssh", "-o", "BatchMode=yes", "n2"] and ssh[4].endswith("--out '/x y'")
    assert NODE_STARTERS["srun"]("n2", ["x"])[-2:] == ["--kill-on-bad-exit=1", "x"]
    assert "--nodelist=n2" in NODE_STARTERS["srun"]("n2", ["x"])
    assert NODE_STARTERS["local"]("n2", ["x"]) == ["x"]


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_run_job_merges_lines_and_returns_the_first_hosts_stdout():
    lines = []
    out = run_job({"a": py("import sys; print('out-a'); sys.stderr.write('step 1\\n')"),
                   "b": py("import sys; print('out-b'); sys.stderr.write('hello\\n')")},
                  lambda host, line: lines.append((host, line)))
    assert out == "out-a\n"
    assert sorted(lines) == [("a", "step 1\n"), ("b", "hello\n")]


def test_a_failing_node_stops_the_others_and_reports_its_error():
    with pytest.raises(JobFailed) as e:
        run_job({"a": py("import time; time.sleep(60)"),
                 "b": py("print('noise'); raise SystemExit('rank 3 blew up')")},
                lambda host, line: None)
    assert "launcher on b exited 1" in str(e.value) and "rank 3 blew up" in str(e.value)


def test_failure_report_starts_at_torchruns_summary():
    restarted = ["Traceback (most recent call last):\n", "old attempt\n", "Failures:\n",
                 "  old\n"]
    log = restarted + ["noise\n"] * 100 + ["Failures:\n", "  rank : 3\n", "Root Cause\n"]
    assert failure_report(log) == "Failures:\n  rank : 3\nRoot Cause\n"
    assert failure_report(["a\n", "Traceback (most recent call last):\n", "E\n"]) == (
        "Traceback (most recent call last):\nE\n")
    assert failure_report(["a\n", "b\n"]) == "a\nb\n"


def test_a_long_failure_report_keeps_its_head_and_the_error_at_the_end():
    block = ["Failures:\n"] + [f"frame {i}\n" for i in range(500)] + ["ValueError: bad\n"]
    report = failure_report(["noise\n"] + block, max_lines=50).splitlines()
    assert len(report) == 51 and report[0] == "Failures:" and report[20] == "..."
    assert report[-1] == "ValueError: bad"
