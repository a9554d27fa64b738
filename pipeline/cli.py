"""``deeprecipe``: inspect the artifact store and the DAG (ls, path, status, params, lineage,
graph, diff, compare, verify, gc). status, params and graph build ROOT's DAG (as `luigi` would, without
running or importing torch); the others read manifests only. `deeprecipe params ROOT` lists
every stage's parameters with their values, sources and flags."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
from collections.abc import Mapping

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


KEY_METRICS = ("docs_out", "duplicates_removed", "docs_removed", "removed", "rejected", "redacted",
               "tokens", "vocab_size", "params", "steps", "loss_last", "held_out_loss_after",
               "val_loss", "reward_last", "accuracy_last", "held_out_accuracy", "samples",
               "examples", "problems", "pairs", "pages")


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and abs(v) >= 10000:
        return f"{v:,}"
    return str(v)


def key_metrics(m: dict, limit: int = 3) -> str:
    metrics = m["outputs"].get("metrics", {})
    found = [f"{k}={_fmt_value(metrics[k])}" for k in KEY_METRICS
             if isinstance(metrics.get(k), (int, float)) and not isinstance(metrics.get(k), bool)]
    return " ".join(found[:limit])


def display_empty(module: str = "workflows") -> dict[str, dict[str, str]]:
    """Per stage, parameters whose empty value (0, []) means a default the code chooses
    ("auto", "all"), as the stage classes declare (``display_empty``); {} if the workflow
    module cannot be imported (manifests alone still list)."""
    from .task import VersionedTask
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - listing must work without the workflows
        return {}
    out: dict[str, dict[str, str]] = {}
    todo = [VersionedTask]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if getattr(cls, "display_empty", None) and cls.stage:
            out.setdefault(cls.stage, {}).update(cls.display_empty)
    return out


def fmt_stage_params(params: dict, empty_means: dict[str, str]) -> str:
    shown = {k: (empty_means[k] if k in empty_means and v in (0, [], (), "", None) else v)
             for k, v in params.items()}
    return lineage.fmt_params(shown)


def pipeline_order(store) -> list[str]:
    """The store's stages upstream first (longest path from a source stage, then name), as
    the committed manifests link them; stages without a committed version last."""
    ups: dict[str, set[str]] = {}
    unknown = set()  # no committed version yet: nothing says where they belong; listed last
    for stage in store.stages():
        committed = store.committed(stage)
        ups[stage] = {u["stage"] for m in committed for u in m["upstream"].values()}
        if not committed:
            unknown.add(stage)
    depth: dict[str, int] = {}

    def d(stage, seen=()):
        if stage not in depth:
            depth[stage] = 1 + max((d(u, (*seen, stage)) for u in ups.get(stage, ()) if u not in seen),
                                   default=-1)
        return depth[stage]
    return sorted(ups, key=lambda s: (s in unknown, d(s), s))


def cmd_ls(store, args):
    """Stages in pipeline order, each committed version with when, rows, size, key metrics
    and params (newest first); uncommitted folders flagged."""
    stages = pipeline_order(store)
    if args.stage:
        if args.stage not in stages:
            print(f"deeprecipe: no stage {args.stage!r} in {store.url} (stages: "
                  f"{', '.join(stages) or 'none'})", file=sys.stderr)
            return 2
        stages = [args.stage]
    if not stages:
        print(f"{store.url} holds no artifacts yet: run e.g. `luigi --module workflows "
              "RunDataPipeline --local-scheduler`, or point --store / $DEEPRECIPE_STORE at a store")
        return 0
    empty_means = display_empty()
    print(f"{'STAGE / VERSION':<20} {'CREATED (UTC)':<17} {'ROWS':>9} {'SIZE':>9}  KEY METRICS  |  PARAMS")
    for stage in stages:
        committed = store.committed(stage)
        pending = [v for v in store.versions(stage) if not store.is_committed(stage, v)]
        print(stage)
        for m in committed:
            out = m["outputs"]
            rows = out.get("rows")
            size = sum(f.get("bytes", 0) for f in out["files"])
            print(f"  {m['version']:<18} {m['run']['end'][:16].replace('T', ' '):<17} "
                  f"{_fmt_value(rows) if rows is not None else '-':>9} {human_bytes(size):>9}  "
                  f"{key_metrics(m) or '-'}  |  {fmt_stage_params(m['params'], empty_means.get(stage, {}))}")
        for v in pending:
            print(f"  {v:<18} (uncommitted: in progress or debris; `deeprecipe gc` removes debris)")


def cmd_path(store, args):
    """A stage's folder: the version ROOT's configuration resolves to with --root, else the
    newest committed one."""
    if not getattr(args, "root", None):
        print(store.uri(*_stage_version(store, args.ref)))
        return 0
    stage = args.ref.split("/")[0]
    with root_task(args) as root:
        tasks = {t.stage: t for t in lineage.stage_tasks(root)}
        if stage not in tasks:
            print(f"deeprecipe: {args.root} has no stage {stage!r} (stages: {', '.join(tasks)})",
                  file=sys.stderr)
            return 2
        t = tasks[stage]
        key = t.key
        if key["pending"]:
            waits = ", ".join(sorted({s for s, _ in key["pending"]}))
            print(f"deeprecipe: {stage}'s version under this configuration is not known until "
                  f"{waits} is built: run `luigi --module {args.module} {args.root}` with the same "
                  "options first", file=sys.stderr)
            return 1
        if not store.is_committed(stage, key["version"]):
            print(f"deeprecipe: {stage} {key['version']} (this configuration's version) is not "
                  f"built yet: run `luigi --module {args.module} {args.root}` with the same options "
                  "first", file=sys.stderr)
            return 1
        print(store.uri(stage, key["version"]))
    return 0


def _stage_version(store, ref):
    m = lineage.resolve_ref(store, ref)
    return m["stage"], m["version"]


def cmd_lineage(store, args):
    m = lineage.resolve_ref(store, args.ref)
    if args.tree:
        lines = (lineage.downstream_lines(store, m, depth=args.depth) if args.downstream
                 else lineage.upstream_lines(store, m, depth=args.depth))
    else:
        baseline = None if args.all_params else profile_baseline()
        lines = (lineage.downstream_dag_lines(store, m, args.depth, baseline) if args.downstream
                 else lineage.upstream_dag_lines(store, m, args.depth, baseline))
    print("\n".join(lines))


def profile_baseline():
    """``(profile, stage) -> the profile's params`` of deeprecipe's own profiles (None if they
    cannot be loaded: lineage then shows every param)."""
    try:
        from deeprecipe.profiles import profile_params
    except Exception:
        return None
    return profile_params


def cmd_diff(store, args):
    a, b = lineage.resolve_ref(store, args.a), lineage.resolve_ref(store, args.b)
    print("\n".join(lineage.diff_manifests(a, b)))


def _scalars(metrics: dict, prefix: str = "") -> dict:
    """The numeric / bool / short string leaves of a metrics dict, dotted keys; lists skipped."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(_scalars(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float, bool)) or (isinstance(v, str) and len(v) <= 40):
            out[f"{prefix}{k}"] = v
    return out


def _cell(v) -> str:
    return "-" if v is None else _fmt_value(v)


def _delta(a, b) -> str:
    if isinstance(a, bool) or isinstance(b, bool) or not all(isinstance(v, (int, float))
                                                             for v in (a, b)):
        return "" if a == b else "differs"
    return f"{b - a:+.4g}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def compare_lines(a: dict, b: dict) -> list[str]:
    """Two manifests' metrics side by side (as `mlflow`'s run comparison): for evaluate, per
    model pass@1 ± s.e., format rate, response length and whether it trained; for any other
    stage every scalar of outputs.metrics; with B - A where both are numbers."""
    ma, mb = a["outputs"].get("metrics", {}), b["outputs"].get("metrics", {})
    ref = lambda m: f"{m['stage']}/{m['version']}"  # noqa: E731
    when = lambda m: (m.get("run") or {}).get("end", "?")[:19]  # noqa: E731
    lines = [f"A = {ref(a)} (profile {a.get('profile', '?')}, built {when(a)})",
             f"B = {ref(b)} (profile {b.get('profile', '?')}, built {when(b)})", ""]
    if "models" in ma and "models" in mb:
        names = list(ma["models"]) + [n for n in mb["models"] if n not in ma["models"]]
        rows = [["model", "pass@1 A", "pass@1 B", "B - A", "format A", "format B",
                 "resp. tokens A", "resp. tokens B", "trained A", "trained B"]]

        def get(m, n, k):
            return m["models"].get(n, {}).get(k)

        def p1(m, n):
            v, se = get(m, n, "pass@1"), get(m, n, "pass@1_stderr")
            return "-" if v is None else f"{v:.3f}" + (f" ± {se:.3f}" if se is not None else "")

        def fmt(v, digits):
            return "-" if v is None else f"{v:.{digits}f}"

        def trained(m, n):
            t = get(m, n, "training")
            return "-" if not t else ("yes" if t["trained"] else "NO")

        for n in names:
            pa_, pb_ = get(ma, n, "pass@1"), get(mb, n, "pass@1")
            rows.append([n, p1(ma, n), p1(mb, n),
                         f"{pb_ - pa_:+.3f}" if None not in (pa_, pb_) else "",
                         fmt(get(ma, n, "format_rate"), 3), fmt(get(mb, n, "format_rate"), 3),
                         fmt(get(ma, n, "mean_response_tokens"), 1),
                         fmt(get(mb, n, "mean_response_tokens"), 1), trained(ma, n), trained(mb, n)])
        lines += _table(rows)
        ma = {k: v for k, v in ma.items() if k not in ("models", "paired_differences",
                                                        "did_not_train")}
        mb = {k: v for k, v in mb.items() if k not in ("models", "paired_differences",
                                                        "did_not_train")}
        lines.append("")
    sa, sb = _scalars(ma), _scalars(mb)
    keys = list(sa) + [k for k in sb if k not in sa]
    if keys:
        rows = [["metric", "A", "B", "B - A"]]
        rows += [[k, _cell(sa.get(k)), _cell(sb.get(k)),
                  _delta(sa[k], sb[k]) if k in sa and k in sb else ""] for k in keys]
        lines += _table(rows)
    elif "models" not in ma:
        lines.append("(no scalar metrics in either manifest)")
    return lines


def cmd_compare(store, args):
    a, b = lineage.resolve_ref(store, args.a), lineage.resolve_ref(store, args.b)
    print("\n".join(compare_lines(a, b)))


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


def cmd_export(store, args):
    """A model artifact as a transformers folder (stages.hf_export), rebuilt from its
    config.json + model.safetensors + tokenizer.json (also artifacts older than hf/)."""
    import tempfile

    from deeprecipe.stages import hf_export
    m = lineage.resolve_ref(store, f"{args.stage}/{args.version}" if args.version else args.stage)
    names = {f["name"] for f in m["outputs"]["files"]}
    need = ("config.json", "model.safetensors", "tokenizer.json")
    if not set(need) <= names:
        raise lineage.RefError(f"{m['stage']}/{m['version']} is not a model artifact (no "
                               f"{', '.join(n for n in need if n not in names)})")
    with tempfile.TemporaryDirectory() as tmp:
        src = store.version_dir(m["stage"], m["version"]) if store.is_local else tmp
        if not store.is_local:
            for n in need:
                store.fs.get_file(store.path(m["stage"], m["version"], n), f"{tmp}/{n}")
        manifest = hf_export.export_folder(src, args.output)
    print(f"{m['stage']}/{m['version']} -> {args.output} ({manifest['model_type']})")
    for note in manifest["notes"]:
        print(f"  note: {note}")


def cmd_status(store, args):
    with root_task(args) as root:
        statuses = lineage.dag_status(root)
    for s in statuses:
        why = f"  ({'; '.join(s.reasons)})" if s.reasons else ""
        print(f"{s.state:8s} {s.stage:18s} {s.version}{why}")
    print(lineage.status_summary(statuses))
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


def param_rows(task) -> list[dict]:
    """Each tunable parameter of a stage task: flag, effective value, where it came from
    (command line, luigi.cfg, profile, default; "unset" when nothing sets it) and help."""
    from luigi.cmdline_parser import CmdlineParser
    from luigi.parameter import _no_value
    parser = CmdlineParser.get_instance()
    defaults = task.profile_defaults()
    family = task.get_task_family()
    params = dict(task.get_params())
    empty_means = getattr(task, "display_empty", {}) or {}
    try:
        resolved = task.stage_params
    except ValueError:  # unset or invalid: the caller prints the error
        resolved = {}
    rows = []
    for name in task.tunable_param_names():
        p, raw = params[name], getattr(task, name)
        given = getattr(parser.known_args, f"{family}_{name}", None) if parser else None
        if raw is None:
            source = f"profile {task.profile}" if name in defaults else "unset"
        elif given not in (None, False):  # False: a boolean flag's argparse default
            source = "command line"
        elif p._get_value_from_config(family, name) is not _no_value:
            source = "luigi.cfg"
        else:
            source = "default"
        value = resolved.get(name)  # a dict option merged into the profile's
        shown = empty_means[name] if name in empty_means and value in (0, [], (), "") else value
        if source == "command line" and isinstance(raw, Mapping) and isinstance(value, dict):
            shown = f"{json.dumps(dict(raw), default=dict)} (other fields: profile)"
        rows.append({"name": name, "flag": f"--{family}-{name.replace('_', '-')}",
                     "value": shown if isinstance(shown, str) else json.dumps(shown, default=dict),
                     "source": source, "help": p.description or ""})
    return rows


def cmd_params(store, args):
    """Every stage of ROOT with its effective parameters, their sources and help."""
    with root_task(args) as root:
        tasks = lineage.stage_tasks(root)
        print(f"{args.root}, profile {args.profile}: each stage's parameters (set one with its "
              "flag on `luigi` or `deeprecipe status`; sources: command line > luigi.cfg > "
              "profile > default)")
        for t in tasks:
            if args.stage and t.stage not in args.stage:
                continue
            rows = param_rows(t)
            print(f"\n{t.stage} ({t.get_task_family()}, code_version {t.code_version})")
            try:
                t.stage_params
            except ValueError as e:
                print(f"  error: {e}")
            if not rows:
                print("  (no parameters)")
            width = max((len(r["flag"]) for r in rows), default=0)
            for r in rows:
                value = r["value"] if len(r["value"]) <= 60 else r["value"][:57] + "..."
                help_ = f"  # {r['help']}" if r["help"] else ""
                print(f"  {r['flag']:<{width}}  {value:<14} [{r['source']}]{help_}")


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
    p.add_argument("--store", help="store URL (default: $DEEPRECIPE_STORE, luigi.cfg, the checkout's artifacts/)")
    sub = p.add_subparsers(dest="command", required=True)

    def root_args(sp):
        sp.add_argument("root", help="root task, e.g. RunDataPipeline")
        sp.add_argument("--module", default="deeprecipe.workflows")
        sp.add_argument("--profile", default="tiny")
        sp.add_argument("--source", default="")
        sp.add_argument("--rerun", default="")

    sp = sub.add_parser("ls", help="stages in pipeline order: versions, created, rows, size, "
                        "key metrics, params")
    sp.add_argument("stage", nargs="?")
    sp.set_defaults(fn=cmd_ls)
    sp = sub.add_parser("path", help="folder/URI of a stage's version: the one ROOT's "
                        "configuration resolves to with --root (and --profile, --Task-param ...), "
                        "else the newest committed")
    sp.add_argument("ref", help="STAGE, STAGE/VERSION or VERSION")
    sp.add_argument("--root", help="root task whose configuration picks the version, e.g. RunR1Pipeline")
    sp.add_argument("--module", default="workflows")
    sp.add_argument("--profile", default="tiny")
    sp.add_argument("--source", default="")
    sp.add_argument("--rerun", default="")
    sp.set_defaults(fn=cmd_path)
    sp = sub.add_parser("params", help="every stage of ROOT: effective parameters, their source "
                        "(command line, luigi.cfg, profile, default), flag and help")
    root_args(sp)
    sp.add_argument("--stage", action="append", help="only this stage (repeatable)")
    sp.set_defaults(fn=cmd_params)
    sp = sub.add_parser("status", help="each stage of ROOT before a run: fresh / stale / missing / "
                        "cutoff? (runs only if an upstream that re-runs first changes its files), "
                        "why, and a summary line (extra luigi-style --Task-param value overrides "
                        "are applied)")
    root_args(sp)
    sp.add_argument("--check", action="store_true", help="exit 3 unless every stage is fresh")
    sp.set_defaults(fn=cmd_status)
    sp = sub.add_parser("lineage", help="the artifacts an artifact was built from (or "
                        "--downstream: built from it), each once with version, params, sources")
    sp.add_argument("ref", help="STAGE, STAGE/VERSION, VERSION or a version folder path")
    sp.add_argument("--downstream", action="store_true", help="what was built from it")
    sp.add_argument("--tree", action="store_true", help="the full tree: a shared upstream is "
                    "repeated under every branch that uses it")
    sp.add_argument("--depth", type=int, default=None, metavar="N",
                    help="only artifacts at most N steps away")
    sp.add_argument("--all-params", action="store_true", help="every param, not only those "
                    "that differ from the profile")
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
    sp = sub.add_parser("compare", help="two artifacts' metrics side by side (evaluate: pass@1 "
                        "± s.e., format rate, response length per model; other stages: every "
                        "scalar metric), with B - A")
    sp.add_argument("a", help="STAGE, STAGE/VERSION, VERSION or a version folder path")
    sp.add_argument("b", help="the same, for the other run")
    sp.set_defaults(fn=cmd_compare)
    sp = sub.add_parser("verify", help="recorded digests still match the files")
    sp.set_defaults(fn=cmd_verify)
    sp = sub.add_parser("export", help="a model stage's artifact as a transformers folder")
    sp.add_argument("stage", help="model stage, e.g. grpo, pretrain_student")
    sp.add_argument("--version", help="a committed version (default: the newest)")
    sp.add_argument("-o", "--output", required=True, help="folder to write")
    sp.set_defaults(fn=cmd_export)
    sp = sub.add_parser("gc", help="remove uncommitted version folders and scratch")
    sp.add_argument("--dry-run", action="store_true")
    sp.set_defaults(fn=cmd_gc)
    return p


ROOT_COMMANDS = ("status", "graph", "params", "path")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    for action in parser._subparsers._group_actions[0].choices.values():  # --store after the command too
        action.add_argument("--store", default=argparse.SUPPRESS, help="store URL (as before the command)")
    args, extra = parser.parse_known_args(argv)
    if args.command in ROOT_COMMANDS and (args.command != "path" or args.root):
        args.overrides = [a for a in extra if a != "--"]  # luigi-style --Task-param value
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        store = ArtifactStore(args.store)
        return args.fn(store, args) or 0
    except (lineage.RefError, StoreError) as e:
        print(f"deeprecipe: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`deeprecipe params ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except ValueError as e:  # a configuration error (unknown profile, unset parameters): no traceback
        if args.command not in ROOT_COMMANDS:
            raise
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
