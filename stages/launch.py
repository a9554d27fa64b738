"""Start a training job on one or many hosts: one torchrun launcher per node, joined by one c10d
rendezvous, elastic restarts, merged progress lines, the failing rank's error.

    hosts (hostfile | Slurm allocation | this machine)
      -> per node: NODE_STARTERS[starter](host, ["env", K=V.., python, -m, torch.distributed.run,
                   --nnodes N --nproc-per-node G --rdzv-backend c10d --rdzv-endpoint H0:PORT
                   --max-restarts R --local-addr host, -m MODULE, args..])
      -> run_job: every launcher's stderr line to `on_line(host, line)`; the job succeeds when
         every launcher exits 0; the first that fails stops the others and its torchrun
         failure report (rank, exit code, traceback from the rank's error file) is the error.

A rank that dies (any exit but 0) or hangs (its peers' collectives time out, so they exit) makes
torchrun stop and restart every rank of the job, up to max_restarts times; the trainer resumes
from its newest complete checkpoint (`stages.pretrain`). The rendezvous store lives on the first
host (torchrun serves it where the endpoint's host is this machine; other agents connect).
Everything (python, the repository, token shards, the output folder) must sit at the same paths
on every host: a shared file system or the same image.
"""
from __future__ import annotations

import os
import queue
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

# ----------------------------------------------------------------------------- hosts

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets: 'a[1,2],b' -> ['a[1,2]', 'b']."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "[") - (ch == "]")
        if depth < 0:
            raise ValueError(f"unbalanced ']' in Slurm node list {text!r}")
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"unbalanced '[' in Slurm node list {text!r}")
    parts.append(text[start:])
    return [p for p in (s.strip() for s in parts) if p]


def _expand_brackets(body: str, where: str) -> list[str]:
    """'01-03,7' -> ['01', '02', '03', '7'] (a range keeps its zero padding)."""
    out = []
    for item in body.split(","):
        m = _RANGE.match(item.strip())
        if not m:
            raise ValueError(f"bad range {item!r} in Slurm node list {where!r}")
        lo, hi = m.group(1), m.group(2) or m.group(1)
        if int(hi) < int(lo):
            raise ValueError(f"descending range {item!r} in Slurm node list {where!r}")
        width = len(lo) if lo.startswith("0") else 0
        out.extend(str(n).zfill(width) for n in range(int(lo), int(hi) + 1))
    return out


def expand_nodelist(nodelist: str) -> list[str]:
    """Slurm's compressed host list as `scontrol show hostnames` prints it, in order:
    'gpu[01-02,05],login1' -> gpu01 gpu02 gpu05 login1; several bracket groups in one name
    expand as a product ('r[1-2]n[1-2]' -> r1n1 r1n2 r2n1 r2n2)."""
    hosts: list[str] = []
    for entry in _split_top_level(nodelist):
        names = [""]
        for literal, body in re.findall(r"([^\[]*)(?:\[([^\]]*)\])?", entry):
            suffixes = _expand_brackets(body, nodelist) if body else [""]
            names = [n + literal + s for n in names for s in suffixes]
        hosts.extend(names)
    return hosts


def slurm_hosts(env: Mapping[str, str] = os.environ) -> list[str]:
    """The hosts of the Slurm allocation this process runs in (SLURM_JOB_NODELIST, checked
    against SLURM_JOB_NUM_NODES / SLURM_NNODES)."""
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise RuntimeError("hosts='slurm' but SLURM_JOB_NODELIST is unset: run the task inside "
                           "a Slurm allocation (salloc/sbatch)")
    hosts = expand_nodelist(nodelist)
    count = env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES")
    if count and int(count) != len(hosts):
        raise RuntimeError(f"SLURM_JOB_NODELIST={nodelist!r} names {len(hosts)} hosts, "
                           f"SLURM_JOB_NUM_NODES says {count}")
    return hosts


def read_hostfile(path: str | Path, ranks_per_host: int) -> list[str]:
    """Hosts of a DeepSpeed/MPI-style hostfile: one `host [slots=N]` per line, '#' comments.
    A host with fewer slots than `ranks_per_host` is an error."""
    hosts = []
    for n, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        host, *rest = line.split()
        for opt in rest:
            key, _, value = opt.partition("=")
            if key != "slots" or not value.isdigit():
                raise ValueError(f"{path}:{n}: expected 'host [slots=N]', got {raw!r}")
            if int(value) < ranks_per_host:
                raise ValueError(f"{path}:{n}: {host} has {value} slots, the job wants "
                                 f"{ranks_per_host} ranks per host")
        if host in hosts:
            raise ValueError(f"{path}:{n}: host {host} listed twice")
        hosts.append(host)
    if not hosts:
        raise ValueError(f"{path}: no hosts")
    return hosts


def resolve_hosts(hosts: str, ranks_per_host: int) -> list[str]:
    """'' -> ['127.0.0.1'] (this machine); 'slurm' -> the allocation; else a hostfile path."""
    if not hosts:
        return ["127.0.0.1"]
    if hosts == "slurm":
        return slurm_hosts()
    return read_hostfile(hosts, ranks_per_host)


# ----------------------------------------------------------------------------- node commands

def ssh_start(host: str, argv: Sequence[str]) -> list[str]:
    """Over ssh (keys, no password prompt); the remote shell parses one quoted line."""
    return ["ssh", "-o", "BatchMode=yes", host, shlex.join(argv)]


def srun_start(host: str, argv: Sequence[str]) -> list[str]:
    """One Slurm job step on `host` inside the current allocation."""
    return ["srun", "--nodes=1", "--ntasks=1", f"--nodelist={host}", "--kill-on-bad-exit=1",
            *argv]


def local_start(host: str, argv: Sequence[str]) -> list[str]:
    """On this machine, whatever the host is called (tests: several 'nodes' on 127.0.0.1)."""
    return list(argv)


NODE_STARTERS: dict[str, Callable[[str, Sequence[str]], list[str]]] = {
    "ssh": ssh_start, "srun": srun_start, "local": local_start}
"""How a node's launcher starts: name -> (host, argv) -> the argv run here. Add your own."""


PASSED_ENV_PREFIXES = ("NCCL_", "GLOO_", "TORCH_", "OMP_", "CUDA_", "DEEPRECIPE_")
"""Variables of the task's environment that travel to every host's launcher (with PYTHONPATH)."""


def free_port() -> int:
    """A TCP port nobody listens on now (for a rendezvous on this machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_starter(hosts_spec: str) -> str:
    return "local" if not hosts_spec else "srun" if hosts_spec == "slurm" else "ssh"


@dataclass(frozen=True)
class Rendezvous:
    """One c10d rendezvous for every node's torchrun agent."""
    hosts: tuple[str, ...]
    ranks_per_host: int
    port: int
    run_id: str
    max_restarts: int = 0

    @property
    def endpoint(self) -> str:
        return f"{self.hosts[0]}:{self.port}"


def torchrun_argv(rdzv: Rendezvous, host: str, module: str, args: Sequence[str],
                  env: Mapping[str, str] | None = None, python: str = sys.executable) -> list[str]:
    """`env K=V.. python -m torch.distributed.run ... -m module args` for the node `host`
    (env travels in the command, so it survives ssh and srun).

    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1: the ranks' own TCPStore is made anew by each attempt.
    With torch 2.13's default (the ranks share the rendezvous store, same keys every round) a
    restarted attempt's gloo ranks read the dead attempt's addresses and fail to connect."""
    env = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", **(env or {})}
    return ["env", *(f"{k}={v}" for k, v in env.items()), python,
            "-m", "torch.distributed.run", f"--nnodes={len(rdzv.hosts)}",
            f"--nproc-per-node={rdzv.ranks_per_host}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rdzv.endpoint}", f"--rdzv-id={rdzv.run_id}",
            f"--rdzv-conf=is_host={str(host == rdzv.hosts[0]).lower()}",
            f"--max-restarts={rdzv.max_restarts}", f"--local-addr={host}",
            "-m", module, *args]


# ----------------------------------------------------------------------------- running

class JobFailed(RuntimeError):
    """A node's launcher exited non-zero; the message carries torchrun's failure report."""


def failure_report(lines: Sequence[str], max_lines: int = 120) -> str:
    """What a failed launcher says about the failure: torchrun's last summary (from its last
    'Failures:' line: failed rank, exit code or signal, the rank's traceback out of its error
    file), else the last Python traceback, else its last lines. A longer block keeps its first
    20 and last lines (a traceback ends with the error)."""
    block = list(lines[-max_lines:])
    for marker in ("Failures:", "Traceback (most recent call last)"):
        starts = [i for i, line in enumerate(lines) if marker in line]
        if starts:
            block = list(lines[starts[-1]:])
            break
    if len(block) > max_lines:
        block = block[:20] + ["...\n"] + block[-(max_lines - 20):]
    return "".join(block)


def _pump(name: str, stream, out: queue.Queue, keep: list[str]) -> None:
    for line in stream:
        keep.append(line)
        del keep[:-400]
        out.put((name, line))
    out.put((name, None))


def run_job(commands: Mapping[str, Sequence[str]], on_line: Callable[[str, str], None],
            env: Mapping[str, str] | None = None, stdout_of: str | None = None) -> str:
    """Run one launcher per node (`commands`: host -> argv) until all end. Each stderr line
    goes to on_line(host, line) as it comes. Returns the stdout of `stdout_of` (default the
    first host). The first launcher to fail stops the rest (SIGTERM: torchrun passes it to its
    ranks) and raises JobFailed with its failure report."""
    lines: queue.Queue = queue.Queue()
    procs, logs, outs = {}, {}, {}
    stdout_of = stdout_of or next(iter(commands))
    try:
        for host, argv in commands.items():
            outs[host] = tempfile.TemporaryFile("w+")
            procs[host] = subprocess.Popen(list(argv), stdout=outs[host], stderr=subprocess.PIPE,
                                           text=True, env=dict(env) if env else None)
            logs[host] = []
            threading.Thread(target=_pump, args=(host, procs[host].stderr, lines, logs[host]),
                             daemon=True).start()
        open_streams, failed = len(procs), None
        while open_streams:
            host, line = lines.get()
            if line is None:
                open_streams -= 1
                rc = procs[host].wait()
                if rc and failed is None:
                    failed = (host, rc)
                    _stop(procs)
                continue
            on_line(host, line)
        if failed:
            host, rc = failed
            raise JobFailed(f"launcher on {host} exited {rc}:\n{failure_report(logs[host])}")
        outs[stdout_of].seek(0)
        return outs[stdout_of].read()
    finally:
        _stop(procs)
        for p in procs.values():
            p.wait()
        for f in outs.values():
            f.close()


def _stop(procs: Mapping[str, subprocess.Popen]) -> None:
    """SIGTERM every launcher still running (torchrun stops its ranks; ssh and srun pass it on)."""
    for p in procs.values():
        if p.poll() is None:
            p.terminate()

