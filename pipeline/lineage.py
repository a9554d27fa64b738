"""Lineage read from manifests only: upstream/downstream trees, diffs, verify, gc, status."""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from .store import MANIFEST, WORK_DIR, ArtifactStore, StoreError, any_leases, live_leases, recently_active, safe_name


class RefError(LookupError):
    pass


def resolve_ref(store: ArtifactStore, ref: str) -> dict:
    """A manifest from ``STAGE`` (newest committed), ``STAGE/VERSION``, ``VERSION`` or the
    path/URI of a version folder or its manifest."""
    ref = ref.rstrip("/")
    if ref.endswith(MANIFEST):
        ref = ref[: -len(MANIFEST) - 1]
    parts = ref.split("/")
    if len(parts) >= 2 and store.fs.exists(store.path(parts[-2], parts[-1], MANIFEST)):
        return store.read_manifest(parts[-2], parts[-1])
    if len(parts) == 1:
        if ref in store.stages():
            m = store.newest(ref)
            if m is None:
                raise RefError(f"stage {ref!r} has no committed version in {store.url}")
            return m
        for stage in store.stages():
            if store.is_committed(stage, ref):
                return store.read_manifest(stage, ref)
    raise RefError(f"{ref!r} is neither a stage, a STAGE/VERSION nor a committed version folder "
                   f"in {store.url} (see `deeprecipe ls`)")


def fmt_params(params: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(params.items())) or "-"


def describe(m: dict) -> str:
    out = m["outputs"]
    rows = f", rows {out['rows']}" if out.get("rows") is not None else ""
    return f"{m['stage']} {m['version']} (committed {m['run']['end'][:19]}{rows})"


def upstream_lines(store: ArtifactStore, m: dict, prefix: str = "", name: str | None = None) -> list[str]:
    head = f"{name}: " if name else ""
    lines = [f"{prefix}{head}{describe(m)}  params: {fmt_params(m['params'])}"]
    child_prefix = prefix.replace("└── ", "    ").replace("├── ", "│   ")
    for f in m["outputs"].get("metrics", {}).get("source_files", []):
        lines.append(f"{child_prefix}    source: {f['uri']} ({f.get('bytes', '?')} B)")
    ups = sorted(m["upstream"].items())
    for i, (name_, u) in enumerate(ups):
        branch = "└── " if i == len(ups) - 1 else "├── "
        if store.is_committed(u["stage"], u["version"]):
            um = store.read_manifest(u["stage"], u["version"])
            lines += upstream_lines(store, um, child_prefix + branch, name_)
        else:
            lines.append(f"{child_prefix}{branch}{name_}: {u['stage']} {u['version']} (MISSING from store)")
    return lines


def downstream_index(store: ArtifactStore) -> dict[tuple[str, str], list[dict]]:
    index: dict[tuple[str, str], list[dict]] = {}
    for m in store.all_manifests():
        for u in m["upstream"].values():
            index.setdefault((u["stage"], u["version"]), []).append(m)
    return index


def downstream_lines(store: ArtifactStore, m: dict, index=None, prefix: str = "") -> list[str]:
    index = downstream_index(store) if index is None else index
    lines = [f"{prefix}{describe(m)}"]
    child_prefix = prefix.replace("└── ", "    ").replace("├── ", "│   ")
    kids = sorted(index.get((m["stage"], m["version"]), []), key=lambda k: (k["stage"], k["version"]))
    for i, k in enumerate(kids):
        branch = "└── " if i == len(kids) - 1 else "├── "
        lines += downstream_lines(store, k, index, child_prefix + branch)
    return lines


def diff_manifests(a: dict, b: dict) -> list[str]:
    """What differs between two artifacts: key, params, upstream, code, outputs."""
    out = []

    def cmp(label: str, x: dict, y: dict):
        for k in sorted(set(x) | set(y)):
            if x.get(k) != y.get(k):
                out.append(f"{label}.{k}: {x.get(k)!r} → {y.get(k)!r}")
    out.append(f"A: {describe(a)}")
    out.append(f"B: {describe(b)}")
    if a["stage"] != b["stage"]:
        out.append(f"stage: {a['stage']} → {b['stage']}")
    cmp("params", a["params"], b["params"])
    cmp("key", {k: v for k, v in a["key"].items() if k not in ("params", "inputs")},
        {k: v for k, v in b["key"].items() if k not in ("params", "inputs")})
    cmp("upstream", {k: f"{v['stage']}/{v['version']}" for k, v in a["upstream"].items()},
        {k: f"{v['stage']}/{v['version']}" for k, v in b["upstream"].items()})
    cmp("code", {k: v for k, v in a["code"].items() if k != "packages"},
        {k: v for k, v in b["code"].items() if k != "packages"})
    cmp("packages", a["code"].get("packages", {}), b["code"].get("packages", {}))
    cmp("outputs", {"rows": a["outputs"].get("rows"), "files": len(a["outputs"]["files"])},
        {"rows": b["outputs"].get("rows"), "files": len(b["outputs"]["files"])})
    flat = lambda m: {k: v for k, v in m["outputs"].get("metrics", {}).items() if not isinstance(v, (list, dict))}
    cmp("metrics", flat(a), flat(b))
    if len(out) == 2:
        out.append("no differences in key, params, upstream, code or outputs")
    return out


def verify_store(store: ArtifactStore) -> tuple[int, list[str]]:
    """Recompute every committed file's digest; ``(files checked, problems)``."""
    checked, problems = 0, []
    for m in store.all_manifests():
        try:  # a manifest's stage, version and file names stay inside the store
            for n in (m["stage"], m["version"], *(f["name"] for f in m["outputs"]["files"])):
                safe_name(n, "name")
        except StoreError as e:
            problems.append(f"{m.get('stage')}/{m.get('version')}: {e}")
            continue
        for f in m["outputs"]["files"]:
            path = store.path(m["stage"], m["version"], f["name"])
            checked += 1
            if not store.fs.exists(path):
                problems.append(f"{m['stage']}/{m['version']}/{f['name']}: missing")
                continue
            digest, size = store.file_digest(path)
            if digest != f["sha256"] or size != f["bytes"]:
                problems.append(f"{m['stage']}/{m['version']}/{f['name']}: digest mismatch "
                                f"(recorded {f['sha256'][:12]}… {f['bytes']} B, now {digest[:12]}… {size} B)")
        for name, u in m["upstream"].items():
            mp = store.manifest_path(u["stage"], u["version"])
            if not store.fs.exists(mp):
                problems.append(f"{m['stage']}/{m['version']}: upstream {name} {u['stage']}/{u['version']} missing")
            elif store.file_digest(mp)[0] != u["manifest_sha256"]:
                problems.append(f"{m['stage']}/{m['version']}: upstream {name} manifest changed since use")
    return checked, problems


def size_problems(store: ArtifactStore, m: dict) -> list[str]:
    """The cheap check of a committed version: every file exists with its recorded size."""
    out = []
    for f in m["outputs"]["files"]:
        try:
            path = store.path(safe_name(m["stage"]), safe_name(m["version"]), safe_name(f["name"]))
            size = store.file_size(path)
        except StoreError as e:
            out.append(str(e))
            continue
        except FileNotFoundError:
            out.append(f"{m['stage']}/{m['version']}/{f['name']}: missing")
            continue
        if size != f["bytes"]:
            out.append(f"{m['stage']}/{m['version']}/{f['name']}: {size} bytes, recorded {f['bytes']}")
    return out


def debris(store: ArtifactStore) -> list[str]:
    """Paths gc would remove: uncommitted version folders, and scratch and `.tmp-*` files left
    in committed ones; never a folder with a live lease (a run in progress)."""
    out = []
    for stage in store.stages():
        for version in store.versions(stage):
            vdir = store.version_dir(stage, version)
            if live_leases(store, stage, version):
                continue  # a run in progress
            if not any_leases(store, stage, version) and recently_active(store, stage, version):
                continue  # a run between two of its tasks (a killed one leaves a stale lease)
            if not store.is_committed(stage, version):
                out.append(vdir)
                continue
            if store.fs.exists(posixpath.join(vdir, WORK_DIR)):
                out.append(posixpath.join(vdir, WORK_DIR))
            out.extend(p for p in store.fs.ls(vdir, detail=False)
                       if posixpath.basename(p.rstrip("/")).startswith(".tmp-"))
    return out


def gc(store: ArtifactStore, dry_run: bool = False) -> list[str]:
    found = debris(store)
    if not dry_run:
        for p in found:
            store.remove(p)
    return found


# -- status of a root task's DAG ------------------------------------------------------------
@dataclass
class StageStatus:
    stage: str
    version: str
    state: str  # fresh | stale | missing
    reasons: list[str] = field(default_factory=list)
    upstream: list[str] = field(default_factory=list)


def stage_tasks(root) -> list:
    """The VersionedTasks a root depends on, upstream first (each once)."""
    from luigi.task import flatten
    from .task import VersionedTask
    seen: dict[str, object] = {}

    def visit(t):
        deps = t.upstream().values() if isinstance(t, VersionedTask) else flatten(t.requires())
        for d in deps:
            visit(d)
        if isinstance(t, VersionedTask) and t.task_id not in seen:
            seen[t.task_id] = t
    visit(root)
    return list(seen.values())


def key_distance(a: dict, b: dict) -> int:
    """How many key entries (code version, params, inputs) two keys disagree on."""
    n = int(str(a.get("code_version")) != str(b.get("code_version")))
    for part in ("params", "inputs"):
        n += sum(a[part].get(k) != b[part].get(k) for k in set(a[part]) | set(b[part]))
    return n


def why_missing(task, committed: list[dict]) -> list[str]:
    """Why the task's version is not in the store, against the nearest committed version."""
    if not committed:
        return ["never built"]
    key = task.key["key"]
    nearest = min(committed, key=lambda m: key_distance(m["key"], key))  # newest first on ties
    reasons = []
    old = nearest["key"]
    if task.stage in task.rerun_stages:
        reasons.append("--rerun requested a fresh attempt")
    if str(old.get("code_version")) != str(key["code_version"]):
        reasons.append(f"new code version {old.get('code_version')} → {key['code_version']}")
    for k in sorted(set(old["params"]) | set(key["params"])):
        if old["params"].get(k) != key["params"].get(k):
            reasons.append(f"param {k}: {old['params'].get(k)!r} → {key['params'].get(k)!r}")
    for k in sorted(set(old["inputs"]) | set(key["inputs"])):
        if old["inputs"].get(k) != key["inputs"].get(k):
            reasons.append(f"new upstream {k}: {old['inputs'].get(k)} → {key['inputs'].get(k)}")
    return reasons or [f"differs from {nearest['version']} only by its rerun salt"]


def dag_status(root) -> list[StageStatus]:
    out = []
    for t in stage_tasks(root):
        store = t.artifact_store
        ups = [f"{u.stage}" for u in t.upstream().values()]
        if store.is_committed(t.stage, t.version):
            m = store.read_manifest(t.stage, t.version)
            if m["code"]["source_sha256"] != t.code_source[0]:
                out.append(StageStatus(t.stage, t.version, "stale", [
                    f"source of {', '.join(t.code_source[1])} changed since commit but code_version "
                    f"is still {t.code_version}: bump code_version (or --rerun {t.stage})"], ups))
            else:
                out.append(StageStatus(t.stage, t.version, "fresh", [], ups))
        else:
            out.append(StageStatus(t.stage, t.version, "missing", why_missing(t, store.committed(t.stage)), ups))
    return out
