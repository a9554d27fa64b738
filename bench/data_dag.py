"""The whole data DAG (RunDataPipeline) on ~100k generated pages: wall time and docs/s per stage.

Runs ``luigi --module workflows RunDataPipeline --local-scheduler --store DIR --workers N`` once on
a fresh store, with the generated crawl sized by ``--files`` × ``--pages-per-file`` (default
25 × 4000 = 100k pages; the rest of the parameters come from the ``tiny`` profile, the 2-core
one), and times the whole command. Then it reads every stage's ``_MANIFEST.json`` and prints:

- wall s: ``run.wall_seconds``, the stage's first work unit start → its commit;
- work s: ``outputs.metrics.work_seconds`` summed over phases, i.e. the seconds of each work
  unit's ``do()`` added up (with 2 workers this can reach 2 × wall). Stages without work units
  (synthetic_crawl, reference_lm, quality_classifier) do everything in their build step, so for
  them it is ``run.seconds``;
- docs in / docs out: the stage's ``docs_in``/``docs_out`` metrics (synthetic_crawl: WARC records
  written; crawl_ingest: WARC records read; reference_lm: seed docs trained on;
  quality_classifier: crawl docs scored);
- docs/s = docs in / wall s, and docs per work-second = docs in / work s (≈ per core-second).

The run record (command, wall, CPU seconds of the process tree, load averages, CPU seconds other
processes used meanwhile) is saved as ``DIR/_bench_data_dag.json``; ``--from-store DIR`` reprints
the table from it without running again.

    python bench/data_dag.py [--files 25 --pages-per-file 4000 --workers 2] [--append BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORD = "_bench_data_dag.json"
CPU_LOG = "_bench_task_cpu.jsonl"
STAGES = ["synthetic_crawl", "crawl_ingest", "url_dedup", "minhash_dedup", "simhash_dedup",
          "reference_lm", "quality_classifier", "quality_filter", "pii_redact", "decontaminate"]
# where a stage without docs_in/docs_out keeps its counts
DOCS_IN_KEYS = ["docs_in", "records_read", "trained_on_docs", "crawl_docs_scored"]
DOCS_OUT_KEYS = ["docs_out", "records"]


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class LoadSampler(threading.Thread):
    """Samples the 1-minute load average every ``every`` seconds while the run goes."""

    def __init__(self, every: float = 10.0):
        super().__init__(daemon=True)
        self.every, self.samples, self._halt = every, [], threading.Event()

    def run(self):
        while not self._halt.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> list[float]:
        self._halt.set()
        self.join()
        return self.samples


def luigi_args(args, store: str) -> list[str]:
    return ["--module", "workflows", "RunDataPipeline", "--local-scheduler",
            "--store", store, "--workers", str(args.workers),
            "--SyntheticCrawl-num-files", str(args.files),
            "--SyntheticCrawl-pages-per-file", str(args.pages_per_file)]


def _cpu_self() -> float:
    """CPU seconds (user + system) of this process and its waited-for children."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def luigi_with_cpu_log(argv: list[str]) -> None:
    """``luigi <argv>`` (luigi.cmdline.luigi_run, what the ``luigi`` script calls), plus START /
    SUCCESS handlers that append each task's CPU seconds to $DATA_DAG_CPU_LOG. With --workers > 1
    every task runs in its own forked process and both events fire there."""
    import luigi
    from luigi.cmdline import luigi_run
    log, started = os.environ["DATA_DAG_CPU_LOG"], {}

    @luigi.Task.event_handler(luigi.Event.START)
    def _start(task):
        started[task.task_id] = (_cpu_self(), time.time())

    @luigi.Task.event_handler(luigi.Event.SUCCESS)
    def _success(task):
        if task.task_id not in started:
            return
        cpu0, t0 = started.pop(task.task_id)
        owner = getattr(task, "stage_task", None)
        stage = getattr(owner or task, "stage", None)
        if not stage:
            return  # the wrapper task
        line = json.dumps({"stage": stage, "phase": getattr(task, "phase", "commit") if owner else "commit",
                           "task": task.task_family, "cpu": round(_cpu_self() - cpu0, 3),
                           "seconds": round(time.time() - t0, 3), "pid": os.getpid()})
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    sys.path.insert(0, str(REPO))
    sys.argv = ["luigi", *argv]
    sys.exit(luigi_run(argv))  # its argv default is bound at import time


def luigi_command(args, store: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--luigi", *luigi_args(args, store)]


def run_pipeline(args, store: str) -> dict:
    cmd = luigi_command(args, store)
    log = os.path.join(store, "_luigi.log")
    os.makedirs(store, exist_ok=True)
    env = {**os.environ, "DATA_DAG_CPU_LOG": os.path.join(store, CPU_LOG)}
    print("$ luigi", shlex.join(luigi_args(args, store)), flush=True)
    print(f"  log: {log}", flush=True)
    load_before, busy0 = os.getloadavg(), busy_cpu_seconds()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler = LoadSampler()
    sampler.start()
    t0 = time.time()
    with open(log, "wb") as out:
        rc = subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.time() - t0
    samples = sampler.stop()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_after, busy1 = os.getloadavg(), busy_cpu_seconds()
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    record = {
        "bench_command": shlex.join(["python", "bench/data_dag.py", *sys.argv[1:]]),
        "command": "luigi " + shlex.join(luigi_args(args, store)), "returncode": rc, "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1), "cores": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "loadavg_1m_during": {"mean": round(sum(samples) / len(samples), 2) if samples else None,
                              "max": round(max(samples), 2) if samples else None,
                              "samples": len(samples)},
        "other_cpu_seconds": (round((busy1 - busy0) - cpu, 1)
                              if busy0 is not None and busy1 is not None else None),
        "files": args.files, "pages_per_file": args.pages_per_file, "workers": args.workers,
    }
    with open(os.path.join(store, RECORD), "w") as f:
        json.dump(record, f, indent=2)
    if rc != 0:
        print(f"luigi exited {rc}; last lines of {log}:", file=sys.stderr)
        with open(log, errors="replace") as f:
            sys.stderr.write("".join(f.readlines()[-60:]))
    return record


def first(d: dict, keys: list[str]):
    for k in keys:
        if isinstance(d.get(k), (int, float)):
            return d[k]
    return None


def task_cpu(store: str) -> dict[str, dict]:
    """Per stage: CPU seconds of its Luigi tasks (work units and commit) and how many ran."""
    out: dict[str, dict] = {}
    path = os.path.join(store, CPU_LOG)
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            t = json.loads(line)
            s = out.setdefault(t["stage"], {"cpu": 0.0, "tasks": 0, "phases": {}})
            s["cpu"] += t["cpu"]
            s["tasks"] += 1
            s["phases"][t["phase"]] = s["phases"].get(t["phase"], 0.0) + t["cpu"]
    return out


def stage_rows(store: str) -> list[dict]:
    rows, t_first, cpu = [], None, task_cpu(store)
    for stage in STAGES:
        paths = glob.glob(os.path.join(store, stage, "*", "_MANIFEST.json"))
        if not paths:
            rows.append({"stage": stage, "missing": True})
            continue
        ms = [json.load(open(p)) for p in paths]
        m = max(ms, key=lambda m: m["run"]["end"])  # a fresh store has one version per stage
        run, metrics = m["run"], m["outputs"]["metrics"]
        phases = metrics.get("work_seconds")
        work = sum(phases.values()) if phases else run["seconds"]
        start = datetime.fromisoformat(run["start"])
        t_first = start if t_first is None or start < t_first else t_first
        rows.append({"stage": stage, "version": m["version"], "start": start,
                     "wall": run["wall_seconds"], "work": work, "phases": phases or {"build": run["seconds"]},
                     "cpu": cpu.get(stage, {}).get("cpu"), "tasks": cpu.get(stage, {}).get("tasks"),
                     "cpu_phases": cpu.get(stage, {}).get("phases", {}),
                     "docs_in": first(metrics, DOCS_IN_KEYS), "docs_out": first(metrics, DOCS_OUT_KEYS),
                     "git": {k: m["code"].get(k) for k in ("git_commit", "git_dirty")}})
    for r in rows:
        if not r.get("missing"):
            r["offset"] = (r["start"] - t_first).total_seconds()
            n = r["docs_in"] if r["docs_in"] is not None else r["docs_out"]
            r["rate"] = n / r["wall"] if n and r["wall"] else None
            r["rate_work"] = n / r["work"] if n and r["work"] else None
            r["rate_cpu"] = n / r["cpu"] if n and r["cpu"] else None
    return rows


def _n(x, fmt="{:,.0f}") -> str:
    return "—" if x is None else fmt.format(x)


def table(rows: list[dict], record: dict | None) -> str:
    lines = ["| stage | starts at s | wall s | work s | CPU s | docs in | docs out | docs/s | "
             "docs per work-s | docs per CPU-s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("missing"):
            lines.append(f"| {r['stage']} | not committed | | | | | | | | |")
            continue
        lines.append(f"| {r['stage']} | {r['offset']:,.0f} | {r['wall']:,.1f} | {r['work']:,.1f} | "
                     f"{_n(r['cpu'], '{:,.1f}')} | {_n(r['docs_in'])} | {_n(r['docs_out'])} | "
                     f"{_n(r['rate'])} | {_n(r['rate_work'])} | {_n(r['rate_cpu'])} |")
    done = [r for r in rows if not r.get("missing")]
    sum_wall, sum_work = sum(r["wall"] for r in done), sum(r["work"] for r in done)
    sum_cpu = sum(r["cpu"] or 0.0 for r in done)
    total = record["wall_seconds"] if record else None
    tree = record["cpu_seconds"] if record else None
    lines.append(f"| **whole command** | | **{_n(total, '{:,.1f}')}** | {sum_work:,.1f} | "
                 f"{_n(tree, '{:,.1f}')} | | | | | |")
    lines.append("")
    lines.append(f"Sum of the stage wall times: {sum_wall:,.1f} s (stages can overlap: reference_lm "
                 "runs beside the crawl stages; the rest of the total is scheduling, completeness "
                 "checks and commits between stages). CPU s of the whole command is the luigi process "
                 f"tree's user + system time; {sum_cpu:,.1f} s of it ran inside tasks, the rest is "
                 "the scheduler/worker process (completeness checks, forking, imports).")
    return "\n".join(lines)


def phase_lines(rows: list[dict]) -> str:
    out = []
    for r in rows:
        if not r.get("missing"):
            ph = ", ".join(f"{k} {v:,.1f}" + (f" (CPU {r['cpu_phases'][k]:,.1f})" if k in r["cpu_phases"] else "")
                           for k, v in sorted(r["phases"].items(), key=lambda kv: -kv[1]))
            n = r["tasks"] or 0
            out.append(f"- {r['stage']} ({n} Luigi task{'' if n == 1 else 's'}): {ph}")
    return "\n".join(out)


def section(args, rows, record) -> str:
    done = [r for r in rows if not r.get("missing")]
    slow = max(done, key=lambda r: r["wall"]) if done else None
    git = done[0]["git"] if done else {}
    lb, la, dur = record["loadavg_before"], record["loadavg_after"], record["loadavg_1m_during"]
    pages = args.files * args.pages_per_file
    other = record.get("other_cpu_seconds")
    bench = record.get("bench_command") or (f"python bench/data_dag.py --files {args.files} "
                                            f"--pages-per-file {args.pages_per_file} --workers {args.workers}")
    if args.from_store:
        bench += f"`, then `python bench/data_dag.py --from-store {args.from_store} --append {args.append}"
    elif args.append and "--append" not in bench:
        bench += f" --append {args.append}"
    busy = ((record["cpu_seconds"] + other) / (record["cores"] * record["wall_seconds"])
            if other is not None else None)
    lines = [
        f"## Data DAG on {pages // 1000}k generated pages, 2 workers ({args.date})", "",
        f"Command: `{bench}`; the run is  ",
        f"`{record['command']}`  ",
        "(through `luigi.cmdline.luigi_run`, what the `luigi` script calls, with CPU-accounting event "
        "handlers added) on a fresh, empty store; the other parameters come from the `tiny` profile.  ",
        f"Machine: {args.machine}. Code: git {str(git.get('git_commit'))[:10]}"
        f"{' plus uncommitted changes' if git.get('git_dirty') else ''}.  ",
        "wall s = `run.wall_seconds` (first work unit start → commit); work s = the stage's work-unit "
        "seconds summed over phases (`outputs.metrics.work_seconds`; for stages without work units, "
        "`run.seconds`); these are wall seconds of each unit, so they include time spent waiting for "
        "a core. CPU s = user + system seconds of the stage's Luigi tasks (work units and commit), "
        "recorded by START/SUCCESS event handlers in each forked task process. "
        "docs/s = docs in / wall s; docs per work-s = docs in / work s; docs per CPU-s = docs in / CPU s. "
        "synthetic_crawl has no docs in, so its rates use the WARC records it wrote (docs out); docs in "
        "for crawl_ingest is WARC records read, for reference_lm the seed docs it trained on and for "
        "quality_classifier the crawl docs it scored (a sample of at most `max_crawl_docs`).", "",
        table(rows, record), "",
        "Work seconds by phase (CPU seconds of those tasks in brackets):", "", phase_lines(rows), "",
        f"Total wall time: {record['wall_seconds']:,.1f} s ({record['wall_seconds'] / 60:.1f} min), "
        f"luigi exit code {record['returncode']}; slowest stage: "
        f"{slow['stage'] if slow else '—'} ({slow['wall']:,.1f} s)." if slow else "",
        "",
        f"The machine is shared with other jobs, so these are not clean numbers: the load average "
        f"(1/5/15 min) was {lb[0]:.2f}/{lb[1]:.2f}/{lb[2]:.2f} before the run and "
        f"{la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f} after it (1-min mean {dur['mean']}, max {dur['max']} "
        f"while it ran, on {record['cores']} cores)"
        + (f", and other processes used {other:,.0f} CPU-seconds during the run against this run's "
           f"{record['cpu_seconds']:,.0f}, so the cores were {busy:.0%} busy and this run got about "
           f"{record['cpu_seconds'] / (record['cores'] * record['wall_seconds']):.0%} of them; "
           "wall and work seconds would be lower on an idle machine, CPU seconds much less so."
           if other is not None else "."),
        "",
    ]
    if args.note:
        lines += [args.note, ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=25)
    p.add_argument("--pages-per-file", type=int, default=4000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--store", help="store folder to create (default: a new temporary folder)")
    p.add_argument("--from-store", help="skip the run; reprint the table of this finished store")
    p.add_argument("--clean", action="store_true", help="remove the store after a successful run")
    p.add_argument("--append", metavar="BENCHMARKS.md", help="append the result section to this file")
    p.add_argument("--note", help="a paragraph to add at the end of the appended section")
    p.add_argument("--date", default="2026-11-23")
    p.add_argument("--machine", default="2-core CPU (shared dev VM), Python 3.11")
    args = p.parse_args()

    if args.from_store:
        store = args.from_store
        with open(os.path.join(store, RECORD)) as f:
            record = json.load(f)
        args.files, args.pages_per_file, args.workers = (record["files"], record["pages_per_file"],
                                                         record["workers"])
    else:
        store = args.store or tempfile.mkdtemp(prefix="data_dag_")
        if os.path.exists(store) and os.listdir(store):
            sys.exit(f"{store} is not empty; the benchmark needs a fresh store")
        record = run_pipeline(args, store)
    rows = stage_rows(store)
    print(table(rows, record))
    print("\nWork seconds by phase (CPU seconds in brackets):\n" + phase_lines(rows))
    print("\nrun record:", json.dumps(record))
    if args.append and record["returncode"] != 0:
        print(f"luigi failed (exit {record['returncode']}); nothing appended to {args.append}")
    elif args.append:
        with open(args.append, "a") as f:
            f.write("\n" + section(args, rows, record))
        print(f"appended to {args.append}")
    if not args.from_store and args.clean and record["returncode"] == 0:
        shutil.rmtree(store)
    elif not args.from_store:
        print(f"store kept: {store}")
    if record["returncode"] != 0:
        sys.exit(record["returncode"])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--luigi"]:
        luigi_with_cpu_log(sys.argv[2:])
    main()
