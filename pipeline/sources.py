"""Resolving a user's ``--source`` (path, glob, folder or ``s3://`` URI) into a file listing."""
from __future__ import annotations

import hashlib
import json

from .store import open_filesystem


class SourceError(ValueError):
    """The --source option names nothing readable."""


def list_source_files(source: str) -> list[dict]:
    """Files under ``source`` as ``[{uri, bytes, fingerprint}]`` in a stable order.
    A folder means every file below it; hidden files are ignored. The fingerprint (ETag or
    mtime) lets the version key notice a file replaced under the same name."""
    fs, path = open_filesystem(source)
    try:
        if any(ch in path for ch in "*?["):
            paths = fs.glob(path)
        elif fs.isdir(path):
            paths = fs.find(path)
        elif fs.exists(path):
            paths = [path]
        else:
            paths = []
    except (OSError, PermissionError) as e:
        raise SourceError(f"cannot list --source {source!r}: {e}. Check the path and, for "
                          "s3://, the AWS_* credentials in the environment.") from e
    out = []
    for p in sorted(paths):
        name = p.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith((".", "_")):
            continue
        info = fs.info(p)
        if info.get("type") == "directory":
            continue
        fingerprint = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
        out.append({"uri": fs.unstrip_protocol(p) if "://" in source else p,
                    "bytes": int(info.get("size") or 0), "fingerprint": str(fingerprint)})
    if not out:
        raise SourceError(f"--source {source!r} matches no files. Give a file, a folder, a glob "
                          "such as 'data/*.warc.gz' or an s3://bucket/prefix/*.jsonl.gz URI.")
    return out


def listing_digest(files: list[dict]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
