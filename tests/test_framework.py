"""The versioned-artifact core on a small DAG (tests/toyflow.py), driven through `luigi` and
`deeprecipe` as a user would: no-op reruns, re-keying, --rerun, crash safety, luigid, exit codes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from deeprecipe.pipeline.store import ArtifactStore
from tests.conftest import base_env, deeprecipe, luigi_cmd, run, REPO

TOY = ["--module", "tests.toyflow", "RunToy"]


def versions(store: str) -> dict[str, set[str]]:
    s = ArtifactStore(store)
    return {stage: {m["version"] for m in s.committed(stage)} for stage in s.stages()}


def ran(stdout_stderr: str) -> int:
    """Number of tasks luigi's execution summary says ran."""
    for line in stdout_stderr.splitlines():
        if "ran successfully" in line:
            return int(line.split("*", 1)[1].split()[0])
    return 0


def test_dict_parameter_from_the_command_line_commits(store):
    """Luigi hands DictParameter values over as frozen dicts; the manifest must still commit."""
    labels = {"note": {"run": [1, 2], "by": "test"}}
    run(luigi_cmd(*TOY, "--store", store, "--Squares-labels", json.dumps(labels)))
    squares = ArtifactStore(store).newest("squares")
    assert squares["params"]["labels"] == labels and squares["key"]["params"]["labels"] == labels


def test_rerun_semantics(store):
    r1 = run(luigi_cmd(*TOY, "--store", store, "--workers", "2"))
    first = versions(store)
    assert {k: len(v) for k, v in first.items()} == {"numbers": 1, "squares": 1, "total": 1}
    assert ran(r1.stderr) == 8  # 4 shards + 3 stages + root

    t0 = time.time()
    r2 = run(luigi_cmd(*TOY, "--store", store))
    assert time.time() - t0 < 15
    assert ran(r2.stderr) == 0 and "Did not run any tasks" in r2.stderr
    assert versions(store) == first

    # a parameter of the middle stage re-keys it and its downstream, nothing upstream
    run(luigi_cmd(*TOY, "--store", store, "--Squares-offset", "7"))
    after = versions(store)
    assert after["numbers"] == first["numbers"]
    assert len(after["squares"]) == 2 and len(after["total"]) == 2

    # --rerun forces a fresh attempt of one stage without any change; it wrote the same bytes,
    # so its downstream is cut off (early cutoff) ...
    run(luigi_cmd(*TOY, "--store", store, "--rerun", "squares"))
    again = versions(store)
    assert again["numbers"] == first["numbers"]
    assert len(again["squares"]) == 3 and again["total"] == after["total"]
    # ... unless STAGE+ asks for its downstream too
    run(luigi_cmd(*TOY, "--store", store, "--rerun", "squares+"))
    again = versions(store)
    assert again["numbers"] == first["numbers"]
    assert len(again["squares"]) == 4 and len(again["total"]) == 3

    # the manifests record lineage and outputs
    s = ArtifactStore(store)
    total = s.newest("total")
    assert total["upstream"]["squares"]["version"] in again["squares"]
    assert total["outputs"]["metrics"]["total"] == sum(x * x for x in range(40))
    squares = s.newest("squares")
    assert squares["key"].get("rerun_salt", "").startswith("rerun-")
    assert squares["code"]["code_version"] == "1" and squares["code"]["source_sha256"]
    assert all(len(f["sha256"]) == 64 for f in squares["outputs"]["files"])


STATES = ("fresh", "stale", "missing", "cutoff?")


def status_lines(out: str) -> dict[str, str]:
    """``deeprecipe status`` stage lines by stage (the summary line left out)."""
    return {line.split()[1]: line for line in out.splitlines() if line.split()[:1] and line.split()[0] in STATES}


def test_status_lineage_diff_verify(store):
    run(luigi_cmd(*TOY, "--store", store))
    st = deeprecipe("--store", store, "status", *TOY[2:], "--module", "tests.toyflow").stdout
    assert [line.split()[0] for line in st.splitlines()[:-1]] == ["fresh"] * 3
    assert st.splitlines()[-1] == "0 stages would run, 3 fresh"
    st = deeprecipe("--store", store, "status", "RunToy", "--module", "tests.toyflow",
                    "--Squares-offset", "2").stdout
    lines = status_lines(st)
    assert lines["numbers"].startswith("fresh")
    assert lines["squares"].startswith("missing") and "param offset: 0 → 2" in lines["squares"]
    # total's inputs are not known before squares runs: it re-runs unless squares' outputs
    # come out unchanged
    assert lines["total"].startswith("cutoff?") and "after squares re-runs" in lines["total"]

    s = ArtifactStore(store)
    v = {stage: s.newest(stage)["version"] for stage in ("total", "squares", "numbers")}
    # lineage: each artifact once (numbers feeds total directly and through squares), the
    # artifact first, each after everything built from it, with params and inputs
    lin = deeprecipe("--store", store, "lineage", "total").stdout
    heads = [line for line in lin.splitlines() if not line.startswith(" ")]
    assert [h.split()[:2] for h in heads] == [["total", v["total"]], ["squares", v["squares"]],
                                              ["numbers", v["numbers"]]]
    assert f"from: numbers {v['numbers']}, squares {v['squares']}" in lin
    assert "params: count=40 shards=4" in lin
    tree = deeprecipe("--store", store, "lineage", "total", "--tree").stdout
    assert tree.count(v["numbers"]) == 2  # the full tree repeats the shared upstream
    top = deeprecipe("--store", store, "lineage", "total", "--depth", "0").stdout
    assert [line.split()[0] for line in top.splitlines() if not line.startswith(" ")] == ["total", "(--depth"]
    assert "2 more upstream not shown" in top
    down = deeprecipe("--store", store, "lineage", "numbers", "--downstream").stdout
    heads = [line.split()[:2] for line in down.splitlines() if not line.startswith(" ")]
    assert heads == [["numbers", v["numbers"]], ["squares", v["squares"]], ["total", v["total"]]]
    assert f"used by: squares {v['squares']}, total {v['total']}" in down
    assert deeprecipe("--store", store, "lineage", "numbers", "--downstream", "--tree").stdout.count(v["total"]) == 2
    path = deeprecipe("--store", store, "path", "squares").stdout.strip()
    assert Path(path, "_MANIFEST.json").exists()

    run(luigi_cmd(*TOY, "--store", store, "--Squares-offset", "2"))
    sq = sorted(s.committed("squares"), key=lambda m: m["run"]["end"])
    d = deeprecipe("--store", store, "diff", f"squares/{sq[0]['version']}", f"squares/{sq[1]['version']}").stdout
    assert "params.offset: 0 → 2" in d

    assert "0 problem(s)" in deeprecipe("--store", store, "verify").stdout
    part = Path(path, "part-00000.parquet")
    part.write_bytes(part.read_bytes() + b"tampered")
    v = deeprecipe("--store", store, "verify", check=False)
    assert v.returncode == 1 and "digest mismatch" in v.stdout and "part-00000.parquet" in v.stdout


def test_early_cutoff(store):
    """A stage whose upstream re-ran into byte-identical outputs is not re-run: its version
    keys on the upstream's content. A change that alters the outputs still re-runs it."""
    run(luigi_cmd(*TOY, "--store", store))
    first, s = versions(store), ArtifactStore(store)
    total0 = s.newest("total")

    # before running, status says what would run and what may be cut off
    st = deeprecipe("--store", store, "status", "RunToy", "--module", "tests.toyflow",
                    "--Squares-batch", "3").stdout
    lines = status_lines(st)
    assert lines["numbers"].startswith("fresh")
    assert lines["squares"].startswith("missing") and "param batch: 8 → 3" in lines["squares"]
    assert lines["total"].startswith("cutoff?") and total0["version"] in lines["total"]
    assert "after squares re-runs: cut off if its outputs are unchanged" in lines["total"]
    assert st.splitlines()[-1] == "1 stage would run, 1 run only if their inputs change (early cutoff), 1 fresh"

    # a speed-only parameter: squares re-runs into the same bytes, total is not executed
    r = run(luigi_cmd(*TOY, "--store", store, "--workers", "2", "--Squares-batch", "3"))
    after = versions(store)
    assert after["numbers"] == first["numbers"] and len(after["squares"]) == 2
    assert after["total"] == first["total"]
    assert s.versions("total") == [total0["version"]]  # no attempt folder either
    assert s.newest("total")["run"] == total0["run"]  # the old commit, untouched
    assert f"total {total0['version']}: already committed" in r.stderr
    sq = {m["version"]: m for m in s.committed("squares")}
    assert len({json.dumps(m["outputs"]["files"], sort_keys=True) for m in sq.values()}) == 1

    # the new configuration is complete: no-change reruns execute nothing
    r = run(luigi_cmd(*TOY, "--store", store, "--Squares-batch", "3"))
    assert "Did not run any tasks" in r.stderr
    st = deeprecipe("--store", store, "status", "RunToy", "--module", "tests.toyflow",
                    "--Squares-batch", "3", "--check")
    assert st.returncode == 0 and st.stdout.splitlines()[-1] == "0 stages would run, 3 fresh"

    # a parameter that changes squares' outputs re-runs total
    run(luigi_cmd(*TOY, "--store", store, "--Squares-offset", "1"))
    after = versions(store)
    assert len(after["squares"]) == 3 and len(after["total"]) == 2
    new_total = s.newest("total")
    assert new_total["outputs"]["metrics"]["total"] == total0["outputs"]["metrics"]["total"] + 40
    sq_new = s.read_manifest("squares", new_total["upstream"]["squares"]["version"])
    assert new_total["key"]["inputs"]["squares"].startswith("content:")
    assert sq_new["params"]["offset"] == 1


def test_stale_when_source_changes_without_code_version(store, tmp_path):
    run(luigi_cmd(*TOY, "--store", store))
    s = ArtifactStore(store)
    m = s.newest("squares")
    mp = Path(s.manifest_path("squares", m["version"]))
    m["code"]["source_sha256"] = "0" * 64  # as if the code had changed since
    mp.write_text(json.dumps(m))
    st = deeprecipe("--store", store, "status", "RunToy", "--module", "tests.toyflow").stdout
    line = next(x for x in st.splitlines() if " squares " in x)
    assert line.startswith("stale") and "bump code_version" in line


def test_graph_formats(store, tmp_path):
    mer = deeprecipe("--store", store, "graph", "RunToy", "--module", "tests.toyflow").stdout
    assert mer.startswith("graph LR") and "numbers --> squares" in mer and "squares --> total" in mer
    dot = deeprecipe("--store", store, "graph", "RunToy", "--module", "tests.toyflow", "--format", "dot").stdout
    assert "numbers -> squares;" in dot
    png = tmp_path / "g.png"
    deeprecipe("--store", store, "graph", "RunToy", "--module", "tests.toyflow", "--format", "png", "-o", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("stage", ["numbers", "squares"])
def test_sigkill_mid_write_leaves_no_commit(store, tmp_path, stage):
    ready = tmp_path / "ready"
    proc = subprocess.Popen(luigi_cmd(*TOY, "--store", store), cwd=REPO, start_new_session=True,
                            env=base_env({"TOYFLOW_HANG_IN": stage, "TOYFLOW_READY": str(ready)}),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not ready.exists():
        assert proc.poll() is None and time.time() < deadline, "task never reached the write"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    s = ArtifactStore(store)
    assert s.committed(stage) == []
    assert s.versions(stage), "the half-written attempt left its folder"
    dry = deeprecipe("--store", store, "gc", "--dry-run").stdout
    assert stage in dry and "would remove" in dry
    assert s.versions(stage)
    run(luigi_cmd(*TOY, "--store", store))  # the next run completes over the debris
    assert len(s.committed("total")) == 1
    m = s.newest(stage)
    assert "part-99999.parquet" not in {f["name"] for f in m["outputs"]["files"]}
    out = deeprecipe("--store", store, "gc").stdout
    assert "removed" in out
    assert deeprecipe("--store", store, "gc", "--dry-run").stdout.strip().endswith("would remove 0 path(s)")
    assert "0 problem(s)" in deeprecipe("--store", store, "verify").stdout


def test_failed_task_exits_nonzero(store):
    r = run(luigi_cmd(*TOY, "--store", store, "--scheduler-retry-delay", "0.1", "--scheduler-retry-count", "1"),
            env={"TOYFLOW_FAIL_IN": "squares"}, check=False)
    assert r.returncode == 30, r.stderr[-2000:]
    assert "planned failure in squares" in r.stderr
    assert ArtifactStore(store).committed("squares") == []


def test_two_workers_share_a_central_scheduler(store, luigid):
    cmd = luigi_cmd(*TOY, "--store", store, "--Numbers-shards", "8", "--Numbers-sleep-s", "0.7",
                    "--scheduler-host", "127.0.0.1", "--scheduler-port", str(luigid), "--no-lock",
                    local=False)  # --no-lock: both workers run on this one host
    procs = [subprocess.Popen(cmd, cwd=REPO, env=base_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    # A worker that ends while the other still runs its tasks exits 10 (run by another worker)
    # or 25 (not granted run permission); never a failure code. The store is the judge.
    assert all(p.returncode in (0, 10, 25) for p in procs), outs[0][1][-3000:] + outs[1][1][-3000:]
    assert deeprecipe("--store", store, "status", "RunToy", "--module", "tests.toyflow",
                      "--Numbers-shards", "8", "--check").returncode == 0
    counts = [ran(err) for _, err in outs]
    assert sum(counts) == 12, counts  # 8 shards + 3 stages + root, each run exactly once
    assert min(counts) >= 1, f"one worker did everything: {counts}"
    s = ArtifactStore(store)
    assert [len(s.committed(x)) for x in ("numbers", "squares", "total")] == [1, 1, 1]
    assert s.newest("total")["outputs"]["metrics"]["total"] == sum(x * x for x in range(40))
