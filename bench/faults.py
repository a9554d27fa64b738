"""Fault battery for issue 19: SIGKILL at many moments across the tiny data DAG, and two runs
started together on one store with Luigi's lock off; every trial is checked with
`deeprecipe verify` and against the file digests of single, undisturbed runs.

    python bench/faults.py [--kills 20] [--concurrent 10] [--pages 60] [--out faults.json]

Kill moments follow the DAG's progress, not the clock: k = 0, 1, ... versions committed, then
each of --delays seconds, so they spread over every stage whatever the machine's load.

A trial *survives* when (after a resume run, for kills) the root's DAG is complete, verify
reports 0 problems, and every committed version's files have exactly the digests a single run
gives that version; else it is *corrupted* (the details are printed and kept in --out)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deeprecipe.pipeline.store import ArtifactStore  # noqa: E402

BIN = Path(sys.executable).parent


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPRECIPE_", "TOYFLOW_"))}
    e["PYTHONPATH"] = str(REPO)
    return e


def luigi(store: str, *extra: str) -> list[str]:
    return [str(BIN / "luigi"), "--module", "workflows", "RunDataPipeline", "--local-scheduler",
            "--store", store, "--SyntheticCrawl-pages-per-file", str(ARGS.pages), *extra]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=1200)


def digests(store: str) -> dict[str, dict[str, str]]:
    s = ArtifactStore(store)
    return {f"{m['stage']}/{m['version']}": {f["name"]: f["sha256"] for f in m["outputs"]["files"]}
            for m in s.all_manifests()}


def judge(store: str, reference: dict, extra: tuple[str, ...] = ()) -> list[str]:
    """Problems of a finished trial's store (empty: survived)."""
    problems = []
    v = run([str(BIN / "deeprecipe"), "--store", store, "verify"])
    if v.returncode != 0:
        problems.append("verify: " + v.stdout.strip().splitlines()[-1])
        problems += [line for line in v.stdout.splitlines() if line.startswith("FAIL")][:5]
    st = run([str(BIN / "deeprecipe"), "--store", store, "status", "RunDataPipeline", "--check",
              "--SyntheticCrawl-pages-per-file", str(ARGS.pages), *extra])
    if st.returncode != 0:
        problems.append("status --check: " + " | ".join(st.stdout.splitlines()[:3]))
    for key, files in digests(store).items():
        if key not in reference:
            problems.append(f"{key}: committed, but no single run makes this version")
        elif files != reference[key]:
            bad = sorted(n for n in set(files) | set(reference[key]) if files.get(n) != reference[key].get(n))
            problems.append(f"{key}: {len(bad)} file digest(s) differ from a single run ({bad[:3]})")
    for stage in ArtifactStore(store).stages():  # nothing left behind in committed folders
        for version in ArtifactStore(store).versions(stage):
            d = Path(store) / stage / version
            if (d / "_MANIFEST.json").exists():
                left = [n for n in os.listdir(d) if n.startswith((".tmp-", "_work"))]
                if left:
                    problems.append(f"{stage}/{version}: left {left}")
    return problems


def kill_trial(after: int, delay: float, reference: dict, root: Path) -> dict:
    """Start a run, wait until ``after`` versions are committed, then ``delay`` seconds more
    (so the kill lands inside the next stage, whatever the machine's load), SIGKILL the whole
    process group, judge what is committed, resume, judge again."""
    store = str(root / f"kill-{after}-{delay}")
    proc = subprocess.Popen(luigi(store), cwd=REPO, env=env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while proc.poll() is None and committed_count(store) < after:
        time.sleep(0.05)
    time.sleep(delay)
    moment = time.time() - t0
    finished_before = proc.poll() is not None
    if not finished_before:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    committed_at_kill = len(digests(store))
    before = judge_partial(store, reference)
    r = run(luigi(store))
    problems = before + ([f"resume exited {r.returncode}: {r.stderr[-800:]}"] if r.returncode else [])
    problems += judge(store, reference)
    shutil.rmtree(store, ignore_errors=True)
    return {"kind": "sigkill", "after_commits": after, "delay_s": delay, "moment_s": round(moment, 2),
            "committed_at_kill": committed_at_kill,
            "finished_before_kill": finished_before, "problems": problems}


def committed_count(store: str) -> int:
    root = Path(store)
    return len(list(root.glob("*/*/_MANIFEST.json"))) if root.exists() else 0


def judge_partial(store: str, reference: dict) -> list[str]:
    """Right after the kill: whatever is committed must already be right."""
    out = []
    for key, files in digests(store).items():
        if reference.get(key) != files:
            out.append(f"after kill, {key} differs from a single run")
    return out


CONCURRENT = [
    ("same command line", (), ()),
    ("same, one with --workers 2", (), ("--workers", "2")),
    ("different: --UrlDedup-num-buckets 3", (), ("--UrlDedup-num-buckets", "3")),
]


def concurrent_trial(i: int, reference: dict, root: Path) -> dict:
    name, a, b = CONCURRENT[i % len(CONCURRENT)]
    store = str(root / f"conc-{i}")
    procs = [subprocess.Popen(luigi(store, "--no-lock", *x), cwd=REPO, env=env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for x in (a, b)]
    errs = [p.communicate(timeout=1200)[1] for p in procs]
    problems = [f"run {j} exited {p.returncode}: {errs[j][-600:]}" for j, p in enumerate(procs) if p.returncode]
    problems += judge(store, reference, b if b and b[0] != "--workers" else ())
    shutil.rmtree(store, ignore_errors=True)
    return {"kind": "concurrent", "variant": name, "problems": problems}


def main() -> None:
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--concurrent", type=int, default=10)
    ap.add_argument("--pages", type=int, default=60, help="SyntheticCrawl pages per file")
    ap.add_argument("--out", default="faults.json")
    ap.add_argument("--delays", type=float, nargs="+", default=[0.5, 2.5],
                    help="seconds after the k-th commit at which to kill (one trial each)")
    ARGS = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="faults-"))
    ref = str(root / "reference")
    t0 = time.time()
    r = run(luigi(ref))
    assert r.returncode == 0, r.stderr[-3000:]
    duration = time.time() - t0
    stages = len(digests(ref))  # versions of one plain run
    # the concurrent trials' other command line: url_dedup re-keys (its downstream is cut off)
    assert run(luigi(ref, "--UrlDedup-num-buckets", "3")).returncode == 0
    reference = digests(ref)
    print(f"reference: {len(reference)} versions ({stages} from one plain run), single run "
          f"{duration:.1f} s", flush=True)
    trials = []
    delays = ARGS.delays
    moments = [(k, d) for k in range(stages) for d in delays][:ARGS.kills]
    for after, delay in moments:
        t = kill_trial(after, delay, reference, root)
        trials.append(t)
        save(trials, duration)
        print(f"kill {delay:.1f} s after commit {after:2d} (t={t['moment_s']:6.2f} s): "
              f"{t['committed_at_kill']:2d} versions committed at the kill, "
              f"{'survived' if not t['problems'] else 'CORRUPTED ' + '; '.join(t['problems'][:3])}", flush=True)
    for i in range(ARGS.concurrent):
        t = concurrent_trial(i, reference, root)
        trials.append(t)
        save(trials, duration)
        print(f"concurrent {i:2d} ({t['variant']}): "
              f"{'survived' if not t['problems'] else 'CORRUPTED ' + '; '.join(t['problems'][:3])}", flush=True)
    for kind in ("sigkill", "concurrent"):
        ts = [t for t in trials if t["kind"] == kind]
        bad = sum(bool(t["problems"]) for t in ts)
        print(f"{kind}: {len(ts) - bad} survived / {bad} corrupted of {len(ts)}")
    save(trials, duration)
    shutil.rmtree(root, ignore_errors=True)


def save(trials: list, duration: float) -> None:
    Path(ARGS.out).write_text(json.dumps({"reference_seconds": round(duration, 1), "trials": trials}, indent=2))


ARGS = None

if __name__ == "__main__":
    main()
