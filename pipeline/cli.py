"""``deeprecipe``: inspect the artifact store and the DAG (ls, path, status, lineage, graph,
diff, verify, gc). Everything but status/graph reads manifests only."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

from . import lineage
from .store import ArtifactStore, StoreError, redact, resolve_store_url


def store_url(args) -> str:
    return resolve_store_url(args.store)


@contextlib.contextmanager
def root_task(args):
    """The root task as `luigi` would build it, with any extra ``--Task-param value``
    overrides in force while the DAG is walked."""
    from luigi.cmdline_parser import CmdlineParser
    module = importlib.import_module(args.module)
    roots = getattr(module, "ROOTS", {})
    if args.root not in roots and not hasattr(module, args.root):
        raise SystemExit(f"no root task {args.root!r} in module {args.module} "
                         f"(roots: {', '.join(sorted(roots))})")
    cmdline = [args.root, "--profile", args.profile, "--store", args.store or "",
               "--source", args.source or "", "--rerun", args.rerun or "", *args.overrides]
    with CmdlineParser.global_instance(cmdline) as parser:
        yield parser.get_task_obj()


def cmd_ls(store, args):
    stages = [args.stage] if args.stage else store.stages()
    for stage in stages:
        committed = store.committed(stage)
        pending = [v for v in store.versions(stage) if not store.is_committed(stage, v)]
        print(f"{stage}")
        for m in committed:
            print(f"  {m['version']}  {m['run']['end'][:19]}  rows={m['outputs'].get('rows')}  "
                  f"files={len(m['outputs']['files'])}  {lineage.fmt_params(m['params'])}")
        for v in pending:
            print(f"  {v}  (uncommitted: in progress or debris)")


def cmd_path(store, args):
    print(store.uri(*_stage_version(store, args.ref)))


def _stage_version(store, ref):
    m = lineage.resolve_ref(store, ref)
    return m["stage"], m["version"]


def cmd_lineage(store, args):
    m = lineage.resolve_ref(store, args.ref)
    lines = lineage.downstream_lines(store, m) if args.downstream else lineage.upstream_lines(store, m)
    print("\n".join(lines))


def cmd_diff(store, args):
    a, b = lineage.resolve_ref(store, args.a), lineage.resolve_ref(store, args.b)
    print("\n".join(lineage.diff_manifests(a, b)))


def cmd_verify(store, args):
    checked, problems = lineage.verify_store(store)
    for p in problems:
        print(f"FAIL {p}")
    print(f"verified {checked} files: {len(problems)} problem(s)")
    return 1 if problems else 0


def cmd_gc(store, args):
    found = lineage.gc(store, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for p in found:
        print(f"{verb} {p}")
    print(f"{verb} {len(found)} path(s)")


def cmd_status(store, args):
    with root_task(args) as root:
        statuses = lineage.dag_status(root)
    for s in statuses:
        why = f"  ({'; '.join(s.reasons)})" if s.reasons else ""
        print(f"{s.state:8s} {s.stage:18s} {s.version}{why}")
    corrupt = check_fresh_sizes(store, statuses) if args.check else []
    return 0 if (all(s.state == "fresh" for s in statuses) and not corrupt) or not args.check else 3


def check_fresh_sizes(store, statuses) -> list[str]:
    """``status --check``: the cheap check (sizes) of every fresh stage's files."""
    problems = []
    for s in statuses:
        if s.state == "fresh":
            problems += lineage.size_problems(store, store.read_manifest(s.stage, s.version))
    for p in problems:
        print(f"corrupt  {p}  (run `deeprecipe verify`)")
    return problems


def cmd_graph(store, args):
    from . import graph
    with root_task(args) as root:
        statuses = lineage.dag_status(root)
    if args.format == "mermaid":
        print(graph.to_mermaid(statuses))
    elif args.format == "dot":
        print(graph.to_dot(statuses))
    else:
        out = args.output or f"{args.root}.png"
        graph.to_png(statuses, out)
        print(out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deeprecipe", description=__doc__)
    p.add_argument("--store", help="store URL (default: $DEEPRECIPE_STORE, luigi.cfg, ./artifacts)")
    sub = p.add_subparsers(dest="command", required=True)

    def root_args(sp):
        sp.add_argument("root", help="root task, e.g. RunDataPipeline")
        sp.add_argument("--module", default="workflows")
        sp.add_argument("--profile", default="tiny")
        sp.add_argument("--source", default="")
        sp.add_argument("--rerun", default="")

    sp = sub.add_parser("ls", help="stages and their versions")
    sp.add_argument("stage", nargs="?")
    sp.set_defaults(fn=cmd_ls)
    sp = sub.add_parser("path", help="folder/URI of a stage's newest committed version")
    sp.add_argument("ref", help="STAGE, STAGE/VERSION or VERSION")
    sp.set_defaults(fn=cmd_path)
    sp = sub.add_parser("status", help="each stage of ROOT: fresh / stale / missing, and why "
                        "(extra luigi-style --Task-param value overrides are applied)")
    root_args(sp)
    sp.add_argument("--check", action="store_true", help="exit 3 unless every stage is fresh")
    sp.set_defaults(fn=cmd_status)
    sp = sub.add_parser("lineage", help="upstream tree (or --downstream) of an artifact")
    sp.add_argument("ref", help="STAGE, STAGE/VERSION, VERSION or a version folder path")
    sp.add_argument("--downstream", action="store_true")
    sp.set_defaults(fn=cmd_lineage)
    sp = sub.add_parser("graph", help="the stage DAG of ROOT")
    root_args(sp)
    sp.add_argument("--format", choices=["mermaid", "dot", "png"], default="mermaid")
    sp.add_argument("--output", "-o", help="PNG file (default ROOT.png)")
    sp.set_defaults(fn=cmd_graph)
    sp = sub.add_parser("diff", help="what differs between two artifacts")
    sp.add_argument("a")
    sp.add_argument("b")
    sp.set_defaults(fn=cmd_diff)
    sp = sub.add_parser("verify", help="recorded digests still match the files")
    sp.set_defaults(fn=cmd_verify)
    sp = sub.add_parser("gc", help="remove uncommitted version folders and scratch")
    sp.add_argument("--dry-run", action="store_true")
    sp.set_defaults(fn=cmd_gc)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command in ("status", "graph"):
        args.overrides = [a for a in extra if a != "--"]  # luigi-style --Task-param value
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        store = ArtifactStore(args.store)
        return args.fn(store, args) or 0
    except (lineage.RefError, StoreError) as e:
        print(f"deeprecipe: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # an unreachable store, missing credentials: say which, briefly
        if type(e).__name__ in ("NoCredentialsError", "PartialCredentialsError", "EndpointConnectionError",
                                "ClientError", "PermissionError", "FileNotFoundError", "ConnectionError"):
            print(f"deeprecipe: store {redact(store_url(args))}: {type(e).__name__}: {redact(str(e))}",
                  file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
