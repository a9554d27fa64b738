"""Lineage read from manifests only: upstream/downstream trees, diffs, verify, gc, status."""
from __future__ import annotations

import json
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


def fmt_params_vs_profile(m: dict, baseline) -> str:
    """An artifact's params as the ones that differ from its profile's values (``baseline``:
    ``(profile, stage) -> dict``, or None for every param)."""
    if baseline is None:
        return fmt_params(m["params"])
    try:
        base = baseline(m.get("profile"), m["stage"])
    except Exception:  # an unknown profile: show everything
        return fmt_params(m["params"])
    if not base:  # a stage the profiles do not set (another module's): show everything
        return fmt_params(m["params"])
    canon = lambda v: json.dumps(v, sort_keys=True, default=list)  # noqa: E731  (tuples = lists)
    differ = {k: v for k, v in m["params"].items() if k not in base or canon(base[k]) != canon(v)}
    same = f"as profile {m.get('profile')}"
    return f"{fmt_params(differ)} (others {same})" if differ else same


def describe(m: dict) -> str:
    out = m["outputs"]
    rows = f", rows {out['rows']}" if out.get("rows") is not None else ""
    return f"{m['stage']} {m['version']} (committed {m['run']['end'][:19]}{rows})"


def upstream_lines(store: ArtifactStore, m: dict, prefix: str = "", name: str | None = None,
                   depth: int | None = None) -> list[str]:
    """The full upstream tree (a shared upstream is repeated under every branch)."""
    head = f"{name}: " if name else ""
    lines = [f"{prefix}{head}{describe(m)}  params: {fmt_params(m['params'])}"]
    child_prefix = prefix.replace("└── ", "    ").replace("├── ", "│   ")
    for f in m["outputs"].get("metrics", {}).get("source_files", []):
        lines.append(f"{child_prefix}    source: {f['uri']} ({f.get('bytes', '?')} B)")
    ups = sorted(m["upstream"].items()) if depth is None or depth > 0 else []
    for i, (name_, u) in enumerate(ups):
        branch = "└── " if i == len(ups) - 1 else "├── "
        if store.is_committed(u["stage"], u["version"]):
            um = store.read_manifest(u["stage"], u["version"])
            lines += upstream_lines(store, um, child_prefix + branch, name_,
                                    None if depth is None else depth - 1)
        else:
            lines.append(f"{child_prefix}{branch}{name_}: {u['stage']} {u['version']} (MISSING from store)")
    return lines


def _walk(store: ArtifactStore, m: dict, neighbours, depth: int | None) -> list[tuple[int, dict | tuple]]:
    """Every artifact reachable from ``m`` through ``neighbours(manifest) -> [manifest or
    (stage, version) when missing]``, each once, with its longest distance from ``m`` (so a
    node comes after everything between it and ``m``); ``depth`` limits the shortest distance."""
    ident = lambda n: (n["stage"], n["version"]) if isinstance(n, dict) else n  # noqa: E731
    nodes = {ident(m): m}
    shortest = {ident(m): 0}
    edges: dict[tuple, list[tuple]] = {}
    frontier = [m]
    while frontier:
        nxt = []
        for n in frontier:
            key = ident(n)
            edges[key] = []
            if not isinstance(n, dict) or (depth is not None and shortest[key] >= depth):
                continue
            for k in neighbours(n):
                kid = ident(k)
                edges[key].append(kid)
                if kid not in nodes:
                    nodes[kid], shortest[kid] = k, shortest[key] + 1
                    nxt.append(k)
        frontier = nxt
    longest: dict[tuple, int] = {}

    def visit(key, d):  # longest distance; the graph is a DAG
        if longest.get(key, -1) >= d:
            return
        longest[key] = d
        for kid in edges.get(key, []):
            visit(kid, d + 1)
    visit(ident(m), 0)
    order = sorted(nodes, key=lambda k: (longest[k], k))
    return [(longest[k], nodes[k]) for k in order]


def _dag_lines(store: ArtifactStore, nodes, link: str, links, baseline=None) -> list[str]:
    lines = []
    for _, n in nodes:
        if not isinstance(n, dict):
            lines.append(f"{n[0]} {n[1]} (MISSING from store)")
            continue
        lines.append(describe(n))
        lines.append(f"    params: {fmt_params_vs_profile(n, baseline)}")
        for f in n["outputs"].get("metrics", {}).get("source_files", []):
            lines.append(f"    source: {f['uri']} ({f.get('bytes', '?')} B)")
        found = links(n)
        if found:
            lines.append(f"    {link}: {', '.join(found)}")
    return lines


def upstream_dag_lines(store: ArtifactStore, m: dict, depth: int | None = None,
                       baseline=None) -> list[str]:
    """The upstream DAG of an artifact, each artifact once (as ``dvc dag`` does), the artifact
    first and every other after all that were built from it: a header line, its params (those
    that differ from ``baseline(profile, stage)`` when given), its source files and the
    upstream artifacts it was built from."""
    def ups(n):
        out = []
        for _, u in sorted(n["upstream"].items()):
            if store.is_committed(u["stage"], u["version"]):
                out.append(store.read_manifest(u["stage"], u["version"]))
            else:
                out.append((u["stage"], u["version"]))
        return out
    nodes = _walk(store, m, ups, depth)
    lines = _dag_lines(store, nodes, "from", lambda n: [
        f"{'' if name == u['stage'] else name + '='}{u['stage']} {u['version']}"
        for name, u in sorted(n["upstream"].items())], baseline)
    shown = {(n["stage"], n["version"]) if isinstance(n, dict) else n for _, n in nodes}
    hidden = {(u["stage"], u["version"]) for _, n in nodes if isinstance(n, dict)
              for u in n["upstream"].values()} - shown
    if hidden:
        lines.append(f"(--depth {depth}: {len(hidden)} more upstream not shown)")
    return lines


def downstream_dag_lines(store: ArtifactStore, m: dict, depth: int | None = None,
                         baseline=None) -> list[str]:
    """What was built from an artifact, each artifact once, in build order."""
    index = downstream_index(store)
    kids = lambda n: sorted(index.get((n["stage"], n["version"]), []),  # noqa: E731
                            key=lambda k: (k["stage"], k["version"]))
    nodes = _walk(store, m, kids, depth)
    return _dag_lines(store, nodes, "used by", lambda n: [f"{k['stage']} {k['version']}" for k in kids(n)],
                      baseline)


def downstream_index(store: ArtifactStore) -> dict[tuple[str, str], list[dict]]:
    index: dict[tuple[str, str], list[dict]] = {}
    for m in store.all_manifests():
        for u in m["upstream"].values():
            index.setdefault((u["stage"], u["version"]), []).append(m)
    return index


def downstream_lines(store: ArtifactStore, m: dict, index=None, prefix: str = "",
                     depth: int | None = None) -> list[str]:
    """The full downstream tree (an artifact reached two ways is repeated)."""
    index = downstream_index(store) if index is None else index
    lines = [f"{prefix}{describe(m)}"]
    child_prefix = prefix.replace("└── ", "    ").replace("├── ", "│   ")
    kids = sorted(index.get((m["stage"], m["version"]), []), key=lambda k: (k["stage"], k["version"]))
    if depth is not None and depth <= 0:
        kids = []
    for i, k in enumerate(kids):
        branch = "└── " if i == len(kids) - 1 else "├── "
        lines += downstream_lines(store, k, index, child_prefix + branch,
                                  None if depth is None else depth - 1)
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
    state: str  # fresh | stale | missing | cutoff?
    reasons: list[str] = field(default_factory=list)
    upstream: list[str] = field(default_factory=list)


def stage_tasks(root) -> list:
    """The VersionedTasks a root depends on, upstream first (each once)."""
    from luigi.task import flatten
    from .task import VersionedTask
    seen: dict[str, object] = {}
    entered: set[str] = set()

    def visit(t):
        if t.task_id in entered:  # a shared upstream: its subtree is walked once
            return
        entered.add(t.task_id)
        deps = t.upstream().values() if isinstance(t, VersionedTask) else flatten(t.requires())
        for d in deps:
            visit(d)
        if isinstance(t, VersionedTask):
            seen[t.task_id] = t
    visit(root)
    return list(seen.values())


def key_distance(a: dict, b: dict) -> int:
    """How many key entries (code version, params, inputs) two keys disagree on."""
    n = int(str(a.get("code_version")) != str(b.get("code_version")))
    for part in ("params", "inputs"):
        n += sum(a[part].get(k) != b[part].get(k) for k in set(a[part]) | set(b[part]))
    return n


def fmt_input(value) -> str:
    """A key's input as a reader wants it: content digest, pending upstream, or version."""
    value = str(value)
    kind, _, rest = value.partition(":")
    if kind == "content":
        return f"outputs {rest[:12]}"
    if kind == "pending":
        return "not built yet"
    if kind == "version":
        return rest
    return value  # keys written before early cutoff named the upstream version


def why_missing(task, committed: list[dict]) -> list[str]:
    """Why the task's version is not in the store, against the nearest committed version."""
    if not committed:
        return ["never built"]
    key = task.key["key"]
    nearest = min(committed, key=lambda m: key_distance(m["key"], key))  # newest first on ties
    reasons = []
    old = nearest["key"]
    if task.forced:
        reasons.append("--rerun requested a fresh attempt")
    if str(old.get("code_version")) != str(key["code_version"]):
        reasons.append(f"new code version {old.get('code_version')} → {key['code_version']}")
    for k in sorted(set(old["params"]) | set(key["params"])):
        if old["params"].get(k) != key["params"].get(k):
            reasons.append(f"param {k}: {old['params'].get(k)!r} → {key['params'].get(k)!r}")
    for k in sorted(set(old["inputs"]) | set(key["inputs"])):
        new = key["inputs"].get(k)
        if old["inputs"].get(k) != new and not str(new).startswith("pending:"):
            reasons.append(f"new upstream {k}: {fmt_input(old['inputs'].get(k))} → {fmt_input(new)}")
    return reasons or [f"differs from {nearest['version']} only by its rerun salt"]


def cutoff_candidate(task, committed: list[dict]) -> dict | None:
    """For a task whose key is provisional (an upstream runs first): the newest committed
    version it becomes again if the pending upstreams re-run into byte-identical outputs,
    i.e. one that agrees on everything else (code version, params, the committed inputs)."""
    key = task.key["key"]
    if task.forced:
        return None
    for m in committed:
        old = m["key"]
        if ("rerun_salt" in old or str(old.get("code_version")) != str(key["code_version"])
                or old["params"] != key["params"] or set(old["inputs"]) != set(key["inputs"])):
            continue
        if all(str(v).startswith("pending:") or old["inputs"][k] == v for k, v in key["inputs"].items()):
            return m
    return None


def dag_status(root) -> list[StageStatus]:
    """Each stage of the root's DAG before a run: ``fresh`` (its version is committed),
    ``stale`` (committed, but its source moved without a code_version bump), ``missing``
    (will run, with the reasons) or ``cutoff?`` (an upstream re-runs first; this stage is cut
    off if that upstream's outputs come out byte-identical, else it re-runs)."""
    out = []
    for t in stage_tasks(root):
        store = t.artifact_store
        ups = [f"{u.stage}" for u in t.upstream().values()]
        key = t.key
        waits = sorted({s for s, _ in key["pending"]})
        if key["pending"]:
            committed = store.committed(t.stage)
            cand = cutoff_candidate(t, committed)
            if cand is not None:
                after = f"after {', '.join(waits)} {'re-runs' if len(waits) == 1 else 're-run'}"
                its = "its" if len(waits) == 1 else "their"
                out.append(StageStatus(t.stage, cand["version"], "cutoff?", [
                    f"{after}: cut off if {its} outputs are unchanged, else re-runs"], ups))
            else:  # its version is known once what it waits for is committed
                reasons = why_missing(t, committed) if committed else ["never built"]
                out.append(StageStatus(t.stage, "?", "missing", [*reasons, f"waits for {', '.join(waits)}"], ups))
        elif store.is_committed(t.stage, t.version):
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


def status_summary(statuses: list[StageStatus]) -> str:
    """One line: how many stages would run, may be cut off, are fresh or stale."""
    n = {state: sum(s.state == state for s in statuses) for state in ("missing", "cutoff?", "fresh", "stale")}
    parts = [f"{n['missing']} stage{'s' if n['missing'] != 1 else ''} would run"]
    if n["cutoff?"]:
        parts.append(f"{n['cutoff?']} run only if their inputs change (early cutoff)")
    parts.append(f"{n['fresh']} fresh")
    if n["stale"]:
        parts.append(f"{n['stale']} stale")
    return ", ".join(parts)
