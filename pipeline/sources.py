"""Resolving a user's ``--source`` (path, glob, folder or ``s3://`` URI) into a file listing."""
from __future__ import annotations

import hashlib
import json

from .store import StoreError, open_filesystem, redact


class SourceError(ValueError):
    """The --source option names nothing readable."""
    permanent = True


def _no_credentials(e: BaseException) -> bool:
    while e is not None:
        if type(e).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            return True
        e = e.__cause__ or e.__context__
    return False


def list_source_files(source: str) -> list[dict]:
    """Files under ``source`` as ``[{uri, bytes, fingerprint}]`` in a stable order.
    A folder means every file below it; hidden files are ignored. The fingerprint (ETag or
    mtime) lets the version key notice a file replaced under the same name."""
    try:
        return _list_source_files(source)
    except SourceError:
        raise
    except StoreError as e:
        raise SourceError(f"--source {e}") from None
    except Exception as e:
        if _no_credentials(e):
            raise SourceError(f"--source {redact(source)!r}: no S3 credentials found. Set "
                              "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL "
                              "for an S3-compatible server) in the environment.") from None
        raise


def _list_source_files(source: str) -> list[dict]:
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
        raise SourceError(f"cannot list --source {redact(source)!r}: {redact(str(e))}. Check the path and, for "
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
        raise SourceError(f"--source {redact(source)!r} matches no files. Give a file, a folder, a glob "
                          "such as 'data/*.warc.gz' or an s3://bucket/prefix/*.jsonl.gz URI.")
    return out


def listing_digest(files: list[dict]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
