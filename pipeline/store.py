"""The artifact store: versioned stage folders on any fsspec filesystem (local, ``s3://``).

Layout: ``<root>/<stage>/<version>/`` holds data files and ``_MANIFEST.json``. The manifest is
written last, by exclusive create: it is the commit point and the lock. A version folder
without a manifest is debris from a crashed or running attempt and is never read as an input.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tempfile
from pathlib import Path
from collections.abc import Mapping
from typing import Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem

MANIFEST = "_MANIFEST.json"
WORK_DIR = "_work"  # scratch of an attempt in progress (shard markers, bucket files)
from deeprecipe import CHECKOUT, PACKAGE_ROOT

REPO_ROOT = PACKAGE_ROOT  # the folder holding pipeline/, stages/, ...: source paths are relative to it
STORE_ENV = "DEEPRECIPE_STORE"


def default_store() -> str:
    """The source checkout's ``artifacts/`` folder (the same store from any working directory);
    installed from a wheel, ``./artifacts`` in the working directory."""
    return str((CHECKOUT or Path.cwd()) / "artifacts")


class AlreadyCommitted(FileExistsError):
    """Another attempt committed this version first."""


def resolve_store_url(option: str | None = None) -> str:
    """The store URL: explicit option, else $DEEPRECIPE_STORE, else ``[deeprecipe] store`` of
    the user's Luigi config (luigi.cfg in the working directory, $LUIGI_CONFIG_PATH), else
    ``default_store()``."""
    from .luigi_config import configured_store
    return option or os.environ.get(STORE_ENV) or configured_store() or default_store()


def open_filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """``(filesystem, root path)`` for a store or source URL. Remote listings are not cached,
    so a manifest committed by another process or host is seen at once. S3 credentials and
    endpoint come from the environment (AWS_* variables), never from the URL or a manifest."""
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    # fsspec caches instances per process and thread, so forked workers get their own client
    options = {} if protocol in ("file", "local") else {"use_listings_cache": False}
    fs, root = fsspec.core.url_to_fs(url, **options)
    return fs, root.rstrip("/") or root


def _plain(value):
    """JSON fallback for what Luigi hands tasks: DictParameter values are FrozenOrderedDicts,
    ListParameter values tuples of them."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable: {value!r}")


def to_json(value) -> str:
    """Indented, key-sorted JSON of manifests and metadata (Luigi's frozen dicts included)."""
    return json.dumps(value, indent=2, sort_keys=True, default=_plain)


class ArtifactStore:
    """Versioned, manifest-committed stage folders under one root URL."""

    def __init__(self, url: str | None = None):
        self.url = resolve_store_url(url).rstrip("/")
        self._fs, self.root = open_filesystem(self.url)
        self._pid = os.getpid()
        self.is_local = isinstance(self._fs, LocalFileSystem)

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The filesystem, opened anew in a forked worker (s3fs clients are not fork-safe)."""
        if self._pid != os.getpid():
            self._fs, _ = open_filesystem(self.url)
            self._pid = os.getpid()
        return self._fs

    # -- paths -------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """Filesystem path (no protocol) below the root."""
        return posixpath.join(self.root, *parts)

    def uri(self, *parts: str) -> str:
        """User-facing URI (with protocol for remote stores) below the root."""
        p = self.path(*parts)
        return p if self.is_local else self.fs.unstrip_protocol(p)

    def version_dir(self, stage: str, version: str) -> str:
        return self.path(stage, version)

    def manifest_path(self, stage: str, version: str) -> str:
        return self.path(stage, version, MANIFEST)

    def work_dir(self, stage: str, version: str) -> str:
        return self.path(stage, version, WORK_DIR)

    # -- commit ------------------------------------------------------------------------
    def is_committed(self, stage: str, version: str) -> bool:
        return self.fs.exists(self.manifest_path(stage, version))

    def read_manifest(self, stage: str, version: str) -> dict:
        with self.fs.open(self.manifest_path(stage, version), "rb") as f:
            return json.load(f)

    def commit_manifest(self, stage: str, version: str, manifest: dict) -> str:
        """Write the manifest atomically and exclusively; raise AlreadyCommitted if present."""
        data = (to_json(manifest) + "\n").encode()
        self.create_exclusive(self.manifest_path(stage, version), data)
        return self.manifest_path(stage, version)

    def create_exclusive(self, path: str, data: bytes) -> None:
        """Atomic create-if-absent: a reader sees the whole file or none of it."""
        if self.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.link(tmp, path)  # atomic, fails if the target exists
            except FileExistsError as e:
                raise AlreadyCommitted(path) from e
            finally:
                os.unlink(tmp)
            return
        if self.fs.exists(path):
            raise AlreadyCommitted(path)
        try:  # one PUT with If-None-Match: * on S3: atomic and exclusive
            self.fs.pipe_file(path, data, mode="create")
        except FileExistsError as e:
            raise AlreadyCommitted(path) from e
        except Exception as e:  # s3 precondition failures surface as OSError subclasses
            if "PreconditionFailed" in repr(e) or "412" in str(e):
                raise AlreadyCommitted(path) from e
            raise

    # -- listing -----------------------------------------------------------------------
    def _child_names(self, path: str) -> list[str]:
        if not self.fs.exists(path):
            return []
        names = []
        for entry in self.fs.ls(path, detail=True):
            if entry["type"] == "directory":
                names.append(posixpath.basename(entry["name"].rstrip("/")))
        return sorted(names)

    def stages(self) -> list[str]:
        return [n for n in self._child_names(self.root) if not n.startswith((".", "_"))]

    def versions(self, stage: str) -> list[str]:
        """Every version folder of a stage, committed or not."""
        return self._child_names(self.path(stage))

    def committed(self, stage: str) -> list[dict]:
        """Manifests of a stage's committed versions, newest commit first."""
        out = [self.read_manifest(stage, v) for v in self.versions(stage)
               if self.is_committed(stage, v)]
        return sorted(out, key=lambda m: m["run"]["end"], reverse=True)

    def all_manifests(self) -> Iterator[dict]:
        for stage in self.stages():
            yield from self.committed(stage)

    def newest(self, stage: str) -> dict | None:
        found = self.committed(stage)
        return found[0] if found else None

    # -- files -------------------------------------------------------------------------
    def file_digest(self, path: str) -> tuple[str, int]:
        """``(sha256 hex, size in bytes)`` of a stored file, streamed."""
        h = hashlib.sha256()
        size = 0
        with self.fs.open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
                size += len(chunk)
        return h.hexdigest(), size

    def write_json(self, path: str, value) -> None:
        with self.fs.open(path, "wb") as f:
            f.write(to_json(value).encode())

    def read_json(self, path: str):
        with self.fs.open(path, "rb") as f:
            return json.load(f)

    def remove(self, path: str) -> None:
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def makedirs(self, path: str) -> None:
        if self.is_local:
            os.makedirs(path, exist_ok=True)
