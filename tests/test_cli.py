"""The `deeprecipe` CLI's read-only commands as a user runs them on tiny: what they import,
what they print."""
from __future__ import annotations

import subprocess
import sys

from deeprecipe.pipeline.store import ArtifactStore
from tests.conftest import REPO, base_env, deeprecipe, luigi_cmd, run


def test_status_imports_no_torch(store):
    """`deeprecipe status` reads the DAG only: the workflow modules import their torch-using
    stage modules lazily, and the stage source hashes are read from the files."""
    code = ("import sys; from deeprecipe.pipeline.cli import main; "
            f"rc = main(['--store', {store!r}, 'status', 'RunR1Pipeline']); "
            "print('TORCH', 'torch' in sys.modules, rc)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=base_env(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[-1] == "TORCH False 0"
    assert "evaluate" in r.stdout and "grpo_zero" in r.stdout
    assert lines[-2].endswith("stages would run, 0 fresh")


TOY = ["--module", "tests.toyflow"]


def test_params_lists_values_sources_and_help(store):
    out = deeprecipe("params", "RunDataPipeline", "--store", store, "--UrlDedup-num-buckets", "8").stdout
    lines = out.splitlines()
    assert lines[0].startswith("RunDataPipeline, profile tiny")
    blocks = [line.split()[0] for line in lines if line and not line.startswith(" ")][1:]
    assert blocks[:3] == ["synthetic_crawl", "crawl_ingest", "url_dedup"]  # pipeline order
    flag = lambda f: next(line for line in lines if line.split()[:1] == [f])  # noqa: E731
    assert flag("--UrlDedup-num-buckets").split()[1:3] == ["8", "[command"]
    assert "[profile tiny]" in flag("--SyntheticCrawl-num-files")
    bands = flag("--MinhashDedup-bands")
    assert bands.split()[1] == "auto" and "# LSH bands; 0: chosen for the threshold" in bands
    small = deeprecipe("params", "RunDataPipeline", "--profile", "small", "--stage", "url_dedup").stdout
    assert "--UrlDedup-num-buckets  32" in small and "crawl_ingest" not in small


def test_bad_profile_is_one_clear_line(store):
    for cmd in ("status", "params", "graph"):
        r = deeprecipe(cmd, "RunDataPipeline", "--store", store, "--profile", "huge", check=False)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip() == "deeprecipe: unknown profile 'huge'; choose one of ['cluster', 'small', 'tiny']"


def test_ls_path_and_store_after_the_command(store):
    empty = deeprecipe("ls", "--store", store).stdout
    assert empty.startswith(f"{store} holds no artifacts yet")
    run(luigi_cmd(*TOY, "RunToy", "--store", store))
    run(luigi_cmd(*TOY, "RunToy", "--store", store, "--Squares-offset", "2"))
    s = ArtifactStore(store)
    configured = next(m["version"] for m in s.committed("squares") if m["params"]["offset"] == 0)
    newest = s.newest("squares")["version"]
    assert configured != newest
    out = deeprecipe("ls", "--store", store).stdout.splitlines()
    assert out[0].split()[:4] == ["STAGE", "/", "VERSION", "CREATED"]
    assert [line for line in out[1:] if not line.startswith(" ")] == ["numbers", "squares", "total"]
    sq = next(line for line in out if line.strip().startswith(newest))
    size = sum(f["bytes"] for f in s.newest("squares")["outputs"]["files"])
    assert sq.split()[3:6] == ["40", str(size), "B"] and "offset=2" in sq
    # path: newest without a root; the configuration's version with --root and its options
    assert deeprecipe("path", "squares", "--store", store).stdout.strip().endswith(f"squares/{newest}")
    p = deeprecipe("path", "squares", "--store", store, "--root", "RunToy", *TOY).stdout.strip()
    assert p.endswith(f"squares/{configured}")
    p = deeprecipe("path", "squares", "--store", store, "--root", "RunToy", *TOY, "--Squares-offset", "2")
    assert p.stdout.strip().endswith(f"squares/{newest}")
    r = deeprecipe("path", "total", "--store", store, "--root", "RunToy", *TOY, "--Squares-offset", "5",
                   check=False)
    assert r.returncode == 1 and "not known until squares is built" in r.stderr


def test_ls_orders_stages_as_the_pipeline_runs(store):
    """Upstream first, by the manifests' links, not by name."""
    s = ArtifactStore(store)
    for stage, ups in (("zeta", {}), ("alpha", {"z": "zeta"}), ("beta", {"a": "alpha", "z": "zeta"})):
        s.commit_manifest(stage, "v1", {
            "stage": stage, "version": "v1", "params": {}, "run": {"end": "2026-12-01T00:00:00"},
            "upstream": {k: {"stage": u, "version": "v1"} for k, u in ups.items()},
            "outputs": {"files": [], "rows": None, "metrics": {}}})
    out = deeprecipe("--store", store, "ls").stdout.splitlines()
    assert [line for line in out[1:] if not line.startswith(" ")] == ["zeta", "alpha", "beta"]


def test_every_task_parameter_has_help_text():
    """`deeprecipe params` and `luigi --help-all` show each parameter's description: none of
    the pipeline's task parameters may be without one."""
    import luigi.task_register

    from deeprecipe import workflows  # noqa: F401  (registers every task class)
    missing = sorted(f"{name}.{param}" for name, cls in luigi.task_register.Register._get_reg().items()
                     if isinstance(cls, type) and cls.__module__.startswith("deeprecipe.")
                     for param, p in cls.get_params() if not (p.description or "").strip())
    assert not missing, f"parameters without description: {missing}"
