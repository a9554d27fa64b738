"""A committed artifact as its readers see it: files listed by its manifest, each checked
against the manifest's size and sha256 as it is read."""
from __future__ import annotations

import hashlib
import time

from .store import ArtifactStore, IntegrityError, safe_name


class Artifact:
    """A committed upstream artifact, read through its manifest (never by globbing). Every
    file is checked against the manifest as it is read: its size always (``path``), its
    sha256 too when the bytes pass through here (``read_bytes``, ``read_table``, ``open``,
    ``verify``); a mismatch raises IntegrityError naming the file and ``deeprecipe verify``."""

    def __init__(self, store: ArtifactStore, manifest: dict, stage: str | None = None,
                 version: str | None = None):
        self.store, self.manifest = store, manifest
        self.stage, self.version = manifest.get("stage"), manifest.get("version")
        where = store.manifest_path(stage or str(self.stage), version or str(self.version))
        if (stage and self.stage != stage) or (version and self.version != version):
            raise IntegrityError(f"{where} names {self.stage}/{self.version}, not "
                                 f"{stage}/{version}: edited manifest (run `deeprecipe verify`)")
        safe_name(str(self.stage), f"stage in {where}")
        safe_name(str(self.version), f"version in {where}")
        self._entries = {}
        for f in manifest["outputs"]["files"]:
            self._entries[safe_name(f["name"], f"file name in {where}")] = f

    def entry(self, name: str) -> dict:
        if name not in self._entries:
            raise IntegrityError(f"{self.store.uri(self.stage, self.version)} has no file {name!r} "
                                 f"in its manifest")
        return self._entries[name]

    def _mismatch(self, name: str, what: str) -> IntegrityError:
        return IntegrityError(
            f"upstream file {self.store.uri(self.stage, self.version, name)} does not match its "
            f"manifest ({what}): it was changed after the commit; run `deeprecipe verify`, then "
            f"`--rerun {self.stage}` to rebuild it")

    def path(self, name: str) -> str:
        """The file's path, after the cheap check (it exists with the recorded size)."""
        f = self.entry(name)
        path = self.store.path(self.stage, self.version, name)
        try:
            size = self.store.file_size(path)
        except FileNotFoundError:
            raise self._mismatch(name, "missing") from None
        if size != f["bytes"]:
            raise self._mismatch(name, f"{size} bytes, recorded {f['bytes']}")
        return path

    # what content checks cost in this process (logged per task: BENCHMARKS.md sums them)
    hashed = {"bytes": 0, "seconds": 0.0}

    def check_bytes(self, name: str, data: bytes) -> bytes:
        f = self.entry(name)
        if len(data) != f["bytes"]:
            raise self._mismatch(name, f"{len(data)} bytes, recorded {f['bytes']}")
        t0 = time.perf_counter()
        digest = hashlib.sha256(data).hexdigest()
        Artifact.hashed["bytes"] += len(data)
        Artifact.hashed["seconds"] += time.perf_counter() - t0
        if digest != f["sha256"]:
            raise self._mismatch(name, "sha256 differs")
        return data

    def read_bytes(self, name: str) -> bytes:
        with self.store.fs.open(self.path(name), "rb") as fh:
            return self.check_bytes(name, fh.read())

    def open(self, name: str):
        """A verified in-memory reader of the file."""
        import io
        return io.BytesIO(self.read_bytes(name))

    def verify(self, name: str, local_path: str | None = None) -> None:
        """Stream the stored file (or a local copy of it) through sha256 and compare."""
        f = self.entry(name)
        t0 = time.perf_counter()
        if local_path is None:
            digest, size = self.store.file_digest(self.path(name))
        else:
            h, size = hashlib.sha256(), 0
            with open(local_path, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    h.update(chunk)
                    size += len(chunk)
            digest = h.hexdigest()
        Artifact.hashed["bytes"] += size
        Artifact.hashed["seconds"] += time.perf_counter() - t0
        if size != f["bytes"] or digest != f["sha256"]:
            raise self._mismatch(name, f"sha256 {digest[:12]}… {size} B, recorded "
                                       f"{f['sha256'][:12]}… {f['bytes']} B")

    def files(self, pattern: str = "*") -> list[str]:
        import fnmatch
        return [f["name"] for f in self.manifest["outputs"]["files"]
                if fnmatch.fnmatch(f["name"], pattern)]

    def parts(self) -> list[str]:
        """Data shard names (``part-*.parquet``) in shard order."""
        return sorted(self.files("part-*.parquet"))

    def read_table(self, name: str, columns: list[str] | None = None):
        import pyarrow as pa
        import pyarrow.parquet as pq
        data = self.read_bytes(name)
        try:
            return pq.read_table(pa.BufferReader(data), columns=columns)
        except (pa.ArrowException, OSError) as e:
            raise IntegrityError(f"cannot read {self.store.uri(self.stage, self.version, name)}: "
                                 f"{e}; run `deeprecipe verify`") from e
