"""Merkle version keys: a stage's version is a hash of what produced it.

key = sha256(canonical_json({stage, code_version, params, inputs: {name: upstream identity}}))
shown as its first 16 hex digits. An upstream's identity is its content once committed
(``content:<digest of its files>``, see ``pipeline.task.VersionedTask.key``), so a change of
params re-keys the stage and, through its inputs, everything downstream whose inputs change.
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Mapping

SHORT_DIGITS = 16


def _canonical(value: Any) -> Any:
    """Normalise a value so equal configurations serialise identically."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value):
            return int(value)  # 1.0 and 1 mean the same parameter value
        return value
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    raise TypeError(f"cannot put {type(value).__name__} into a version key: {value!r}")


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, floats that are integers as ints."""
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def version_key(stage: str, code_version: str, params: Mapping[str, Any],
                inputs: Mapping[str, str], salt: str | None = None) -> dict:
    """The full key of one stage run: ``{"key": <dict hashed>, "digest": 64 hex, "version": 16 hex}``."""
    key = {"stage": stage, "code_version": str(code_version), "params": dict(params),
           "inputs": dict(inputs)}
    if salt:
        key["rerun_salt"] = salt
    digest = hashlib.sha256(canonical_json(key).encode()).hexdigest()
    return {"key": _canonical(key), "digest": digest, "version": digest[:SHORT_DIGITS]}
