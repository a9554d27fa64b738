"""What a manifest records about the code and the machine that produced an artifact."""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import inspect
import linecache
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone

from deeprecipe import CHECKOUT

from .store import REPO_ROOT

SCHEMA = "deeprecipe.manifest/1"
TRACKED_PACKAGES = ("luigi", "numpy", "pandas", "pyarrow", "fsspec", "s3fs", "torch", "deepspeed",
                    "triton", "datasketch", "fasttext", "warcio", "resiliparse", "tokenizers",
                    "safetensors")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


@functools.lru_cache(maxsize=1)
def git_state() -> dict:
    """Commit of the source checkout and whether it had uncommitted changes (None outside git,
    and for an installed wheel, which has no checkout of its own)."""
    def git(*args: str) -> str | None:
        if CHECKOUT is None:
            return None
        try:
            r = subprocess.run(["git", "-C", str(CHECKOUT), *args], capture_output=True,
                               text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None
    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(dirty) if dirty is not None else None}


def source_digest(objects: list) -> tuple[str, list[str]]:
    """sha256 over the source text of classes/modules; and the files they live in. A
    :class:`pipeline.lazy.LazyModule` is read from its file, not imported (the same text
    ``inspect.getsource`` gives for the imported module)."""
    from .lazy import LazyModule
    h = hashlib.sha256()
    files = []
    for obj in objects:
        if isinstance(obj, LazyModule):
            path = obj.source_file()
            h.update("".join(linecache.getlines(path)).encode())
        else:
            h.update(inspect.getsource(obj).encode())
            path = inspect.getsourcefile(obj)
        if path:
            rel = os.path.relpath(path, REPO_ROOT)
            files.append(rel if not rel.startswith("..") else path)
    return h.hexdigest(), sorted(set(files))


def run_environment() -> dict:
    """Host and devices; never environment variables (they may hold secrets)."""
    devices = {"cpu_count": os.cpu_count()}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        devices["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"host": socket.gethostname(), "pid": os.getpid(), "devices": devices}
