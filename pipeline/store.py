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
import re
import socket
import tempfile
import threading
import time
import uuid
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


class StoreError(ValueError):
    """A store URL, manifest or file the store cannot use; the message names it."""
    permanent = True  # the same input fails the same way again: no retry, no traceback


class IntegrityError(IOError):
    """A committed file no longer matches its manifest (size or sha256)."""
    permanent = True


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]*@)")


def redact(text: str) -> str:
    """``scheme://user:password@host`` → ``scheme://***@host`` anywhere in ``text``."""
    return _USERINFO.sub(lambda m: m.group("scheme") + "***@", text) if isinstance(text, str) else text


def redact_value(value):
    """``redact`` applied to every string inside a JSON-like value."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` less the process umask (what ``open()`` would create)."""
    current = os.umask(0)
    os.umask(current)
    return mode & ~current


def safe_name(name: str, what: str = "file name") -> str:
    """A manifest file name, stage or version that stays inside its folder (no ``..``, no
    absolute path, no protocol); else StoreError naming it."""
    if (not isinstance(name, str) or not name or name.startswith(("/", "\\")) or "://" in name
            or any(part in ("", ".", "..") for part in name.replace("\\", "/").split("/"))):
        raise StoreError(f"{what} {name!r} leaves the store folder; the manifest was edited or "
                         f"is corrupt (run `deeprecipe verify`)")
    return name


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
    if protocol not in fsspec.available_protocols():
        raise StoreError(f"{redact(url)!r}: unknown protocol {protocol!r} (known: file, s3, gs, "
                         f"http, ... any fsspec protocol whose package is installed)")
    # fsspec caches instances per process and thread, so forked workers get their own client
    options = {} if protocol in ("file", "local") else {"use_listings_cache": False}
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except ImportError as e:
        raise StoreError(f"{redact(url)!r}: protocol {protocol!r} needs a package: {e}") from e
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
        try:
            self._fs, self.root = open_filesystem(self.url)
        except StoreError as e:
            raise StoreError(f"--store {e}") from e
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
        try:
            return self.fs.exists(self.manifest_path(stage, version))
        except Exception as e:  # the first touch of a store: say which store and why
            if type(e).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
                raise StoreError(f"--store {redact(self.url)!r}: no S3 credentials found. Set "
                                 "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and "
                                 "AWS_ENDPOINT_URL for an S3-compatible server).") from None
            raise

    def read_manifest(self, stage: str, version: str) -> dict:
        with self.fs.open(self.manifest_path(stage, version), "rb") as f:
            return json.load(f)

    def commit_manifest(self, stage: str, version: str, manifest: dict) -> str:
        """Write the manifest atomically and exclusively; raise AlreadyCommitted if present."""
        data = (to_json(redact_value(manifest)) + "\n").encode()  # no password of a URL
        self.create_exclusive(self.manifest_path(stage, version), data)
        return self.manifest_path(stage, version)

    def create_exclusive(self, path: str, data: bytes) -> None:
        """Atomic create-if-absent: a reader sees the whole file or none of it."""
        if self.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            # the temporary name lives beside the target, so a kill between link and unlink
            # leaves a `.tmp-*` that gc lists (debris) and verify ignores
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
            os.fchmod(fd, umask_mode())  # mkstemp creates 0600; a store is shared
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

    def discard_work(self, stage: str, version: str) -> None:
        """Remove a committed version's ``_work``: on a local disk first renamed aside in one
        step (a kill during the slower recursive delete then leaves a `.tmp-work-*` folder,
        which gc lists), then deleted."""
        work = self.work_dir(stage, version)
        if self.is_local:
            aside = self.path(stage, version, f".tmp-work-{uuid.uuid4().hex[:12]}")
            try:
                os.rename(work, aside)
            except FileNotFoundError:
                return
            work = aside
        self.remove(work)

    def file_size(self, path: str) -> int:
        return int(self.fs.info(path)["size"])

    def publish(self, staged: str, final: str) -> None:
        """Give an attempt-private file its artifact name, before the manifest commits it.
        Local: hard link to a temporary name in the same folder, then an atomic rename over
        whatever a crashed earlier commit left (the staged file stays until ``_work`` goes).
        S3: a server-side copy. The caller holds the version's commit lease and has checked
        that no manifest exists, so no committed file is ever replaced."""
        if self.is_local:
            tmp = posixpath.join(posixpath.dirname(final), f".tmp-{uuid.uuid4().hex[:12]}-"
                                 f"{posixpath.basename(final)}")
            os.makedirs(posixpath.dirname(final), exist_ok=True)
            os.link(staged, tmp)
            os.replace(tmp, final)
        else:
            self.fs.copy(staged, final)


# -- leases ---------------------------------------------------------------------------------
LEASE_DIR = "leases"  # below a version's _work/
LEASE_STALE_ENV = "DEEPRECIPE_LEASE_STALE_S"


def lease_stale_seconds() -> float:
    """A lease whose heartbeat is older than this is taken over (default 120 s; a lease of a
    dead process on this host is taken over at once)."""
    return float(os.environ.get(LEASE_STALE_ENV, "120"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lease:
    """An exclusive lease on one task of a version (a work unit or the commit): an
    exclusively created JSON file ``<version>/_work/leases/<name>.json`` naming its owner
    (host, pid, attempt), kept fresh by a heartbeat thread (mtime on a local store, a rewrite
    on S3) and taken over when stale. Whoever holds it is the only writer of that task's
    scratch and the only committer of its marker (or of the manifest)."""

    def __init__(self, store: "ArtifactStore", stage: str, version: str, name: str, attempt: str,
                 task: str = ""):
        self.store, self.stage, self.version, self.name = store, stage, version, name
        self.path = store.path(stage, version, WORK_DIR, LEASE_DIR, f"{name}.json")
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "attempt": attempt,
                      "token": uuid.uuid4().hex, "task": task}
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- state of the file on the store ----------------------------------------------------
    def _read(self) -> tuple[dict | None, float | None]:
        """(owner, seconds since its last heartbeat) or (None, None) if absent."""
        fs = self.store.fs
        try:
            info = fs.info(self.path)
            owner = json.loads(fs.cat_file(self.path))
        except (FileNotFoundError, json.JSONDecodeError, ValueError):
            return None, None
        mtime = info.get("mtime") or info.get("LastModified") or info.get("created")
        if hasattr(mtime, "timestamp"):
            mtime = mtime.timestamp()
        age = max(0.0, time.time() - float(mtime or 0)) if mtime else float("inf")
        if self.store.is_local is False and "heartbeat" in owner:
            age = min(age, max(0.0, time.time() - float(owner["heartbeat"])))
        return owner, age

    def _stale(self, owner: dict, age: float) -> bool:
        if owner.get("host") == socket.gethostname() and not _pid_alive(int(owner.get("pid", 0))):
            return True
        return age > lease_stale_seconds()

    def describe_holder(self) -> str:
        owner, age = self._read()
        if owner is None:
            return "nobody"
        return (f"host {owner.get('host')} pid {owner.get('pid')} attempt {owner.get('attempt')}"
                f" (heartbeat {age:.0f} s ago)")

    # -- acquire / release -------------------------------------------------------------------
    def try_acquire(self) -> bool:
        data = json.dumps({**self.owner, "heartbeat": time.time()}, sort_keys=True).encode()
        try:
            self.store.create_exclusive(self.path, data)
            return True
        except AlreadyCommitted:
            pass
        owner, age = self._read()
        if owner is None or not self._stale(owner, age):
            return False
        # take over a stale lease: only if the file is still the stale one we read
        again, _ = self._read()
        if again is None or again.get("token") != owner.get("token"):
            return False
        try:
            self.store.fs.rm(self.path)
        except FileNotFoundError:
            pass
        try:
            self.store.create_exclusive(self.path, data)
        except AlreadyCommitted:
            return False
        return True

    def acquire(self, done=lambda: False, poll: float = 0.25, on_wait=None) -> bool:
        """Block until the lease is ours (True) or ``done()`` says the work is already
        committed by someone else (False)."""
        waited = 0.0
        while True:
            if done():
                return False
            if self.try_acquire():
                if done():  # committed while we were getting the lease
                    self.release()
                    return False
                self._start_heartbeat()
                return True
            if on_wait is not None:
                on_wait(self, waited)
            time.sleep(poll)
            waited += poll

    def _start_heartbeat(self) -> None:
        interval = max(0.5, min(10.0, lease_stale_seconds() / 6))

        def beat():
            while not self._stop.wait(interval):
                try:
                    owner, _ = self._read()
                    if owner is None or owner.get("token") != self.owner["token"]:
                        self.lost = True
                        return
                    if self.store.is_local:
                        os.utime(self.path)
                    else:
                        self.store.fs.pipe_file(self.path, json.dumps(
                            {**self.owner, "heartbeat": time.time()}, sort_keys=True).encode())
                except Exception:  # a transient store error: try again at the next beat
                    continue
        self._thread = threading.Thread(target=beat, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Raise unless we still hold the lease (call right before committing)."""
        owner, _ = self._read()
        if self.lost or owner is None or owner.get("token") != self.owner["token"]:
            self.lost = True
            raise RuntimeError(f"lost the lease {self.path} to {self.describe_holder()}; "
                               f"not committing (another run took this work over)")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        owner, _ = self._read()
        if owner is not None and owner.get("token") == self.owner["token"]:
            try:
                self.store.fs.rm(self.path)
            except FileNotFoundError:
                pass
        if self.store.is_local:  # leave no empty lease folders behind
            for d in (posixpath.dirname(self.path), posixpath.dirname(posixpath.dirname(self.path))):
                try:
                    os.rmdir(d)
                except OSError:
                    break

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def recently_active(store: "ArtifactStore", stage: str, version: str) -> bool:
    """Whether anything in a version's ``_work`` changed within the lease timeout: a run
    between two of its tasks holds no lease, and gc must not take its markers either."""
    d = store.path(stage, version, WORK_DIR)
    try:
        entries = store.fs.find(d, detail=True).values() if store.fs.exists(d) else []
    except FileNotFoundError:
        return False
    now = time.time()
    for info in entries:
        mtime = info.get("mtime") or info.get("LastModified") or info.get("created")
        if hasattr(mtime, "timestamp"):
            mtime = mtime.timestamp()
        if mtime and now - float(mtime) < lease_stale_seconds():
            return True
    return False


def any_leases(store: "ArtifactStore", stage: str, version: str) -> bool:
    d = store.path(stage, version, WORK_DIR, LEASE_DIR)
    return store.fs.exists(d) and any(p.endswith(".json") for p in store.fs.ls(d, detail=False))


def live_leases(store: "ArtifactStore", stage: str, version: str) -> list[str]:
    """Lease files of a version whose holder is alive (what gc must never touch)."""
    d = store.path(stage, version, WORK_DIR, LEASE_DIR)
    if not store.fs.exists(d):
        return []
    out = []
    for p in store.fs.ls(d, detail=False):
        name = posixpath.basename(p)
        if not name.endswith(".json"):
            continue
        lease = Lease(store, stage, version, name[:-5], attempt="gc")
        owner, age = lease._read()
        if owner is not None and not lease._stale(owner, age):
            out.append(p)
    return out
