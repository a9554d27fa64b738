"""The README's commands as a user runs them: the installed `luigi` and `deeprecipe` console
scripts, from a directory outside the checkout, with no PYTHONPATH; and our import names
resolving to our folders even when packages of the same bare names come first on sys.path
(transformers >= 5 installs a top-level `kernels`; `pipeline`, `stages` are common names)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BIN, REPO

OUR_PACKAGES = ("pipeline", "stages", "kernels", "workflows")


def user_env(**extra: str) -> dict:
    """The environment of a user's shell: no PYTHONPATH, no test or deeprecipe variables."""
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and not k.startswith(("DEEPRECIPE_", "TOYFLOW_", "LUIGI_"))}
    env.update(extra)
    return env


def user_run(cmd: list[str], cwd: Path, timeout: float = 300, **env: str):
    return subprocess.run(cmd, cwd=cwd, env=user_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def installed_checkout(cwd: Path) -> Path | None:
    """The checkout the venv's `deeprecipe` is installed from, as a fresh process sees it."""
    r = user_run([sys.executable, "-c", "import deeprecipe; print(deeprecipe.PACKAGE_ROOT)"], cwd)
    return Path(r.stdout.strip()).resolve() if r.returncode == 0 else None


@pytest.fixture
def outside(tmp_path) -> Path:
    """A working directory outside the checkout, holding no luigi.cfg."""
    d = tmp_path / "elsewhere"
    d.mkdir()
    root = installed_checkout(d)
    if root is None:
        pytest.fail("`import deeprecipe` fails in a fresh process without PYTHONPATH: the "
                    "package is not installed (README: pip install -e '.[test]')")
    if root != REPO.resolve():
        pytest.skip(f"this venv's deeprecipe is installed from {root}, not from {REPO}")
    return d


def test_readme_commands_from_outside_the_checkout(outside, tmp_path):
    store = str(tmp_path / "store")
    small = ["--SyntheticCrawl-num-files", "2", "--SyntheticCrawl-pages-per-file", "60"]
    luigi = [str(BIN / "luigi"), "--module", "workflows", "RunDataPipeline", "--local-scheduler",
             "--store", store, *small]
    first = user_run(luigi, outside)
    assert first.returncode == 0, first.stderr[-4000:]
    assert "ran successfully" in first.stdout + first.stderr
    second = user_run(luigi, outside)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "Did not run any tasks" in second.stdout + second.stderr
    # Luigi's UnconsumedParameterWarning would mean our defaults set options Luigi ignores
    assert "UnconsumedParameterWarning" not in first.stderr

    dr = str(BIN / "deeprecipe")
    ls = user_run([dr, "--store", store, "ls"], outside)
    assert ls.returncode == 0, ls.stderr
    assert "url_dedup" in ls.stdout and "decontaminate" in ls.stdout
    status = user_run([dr, "--store", store, "status", "RunDataPipeline", *small], outside)
    assert status.returncode == 0, status.stderr
    assert "fresh" in status.stdout and "missing" not in status.stdout
    lineage = user_run([dr, "--store", store, "lineage", "url_dedup"], outside)
    assert lineage.returncode == 0 and "crawl_ingest" in lineage.stdout, lineage.stderr
    graph = user_run([dr, "--store", store, "graph", "RunDataPipeline", "--format", "mermaid"],
                     outside)
    assert graph.returncode == 0 and "url_dedup" in graph.stdout, graph.stderr
    assert not (outside / "artifacts").exists()  # everything went to --store


def test_failed_run_exits_nonzero_from_any_directory(outside, tmp_path):
    """Luigi exits 0 when tasks fail or cannot be scheduled unless [retcode] is configured;
    our defaults apply wherever the command runs, not only beside a luigi.cfg. (A --source
    that names nothing fails while the DAG is built: a scheduling error, 35.)"""
    r = user_run([str(BIN / "luigi"), "--module", "workflows", "RunDataPipeline",
                  "--local-scheduler", "--store", str(tmp_path / "store"),
                  "--source", str(tmp_path / "no-such-crawl")], outside)
    assert r.returncode == 35, (r.returncode, r.stderr[-3000:])
    assert "no-such-crawl" in r.stdout + r.stderr


def test_a_users_luigi_cfg_still_overrides_our_defaults(outside, tmp_path):
    (outside / "luigi.cfg").write_text("[retcode]\nscheduling_error = 7\n")
    r = user_run([str(BIN / "luigi"), "--module", "workflows", "RunDataPipeline",
                  "--local-scheduler", "--store", str(tmp_path / "store"),
                  "--source", str(tmp_path / "no-such-crawl")], outside)
    assert r.returncode == 7, (r.returncode, r.stderr[-3000:])


def make_impostors(root: Path, names=OUR_PACKAGES) -> Path:
    """Top-level packages named like our folders, each importable and obviously not ours
    (``OWNER = 'theirs'``)."""
    for name in names:
        pkg = root / name
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("OWNER = 'theirs'\n")
    return root


def run_probe(code: str, cwd: Path, *path: Path) -> str:
    """Run ``code`` in a fresh interpreter with ``path`` as PYTHONPATH; its last output line."""
    r = user_run([sys.executable, "-c", code], cwd, PYTHONPATH=os.pathsep.join(map(str, path)))
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()[-1]


def test_import_names_resolve_to_our_folders_behind_impostors(tmp_path):
    impostors = make_impostors(tmp_path / "impostors")
    probe = ("import json, deeprecipe\n"
             "from deeprecipe import kernels, pipeline, stages, workflows\n"
             "from deeprecipe.kernels import moe_experts\n"
             "from deeprecipe.pipeline.cli import main\n"
             "import kernels as bare\n"
             "print(json.dumps({'ours': [m.__file__ for m in (pipeline, stages, kernels, workflows)],"
             " 'roots': sorted(workflows.ROOTS), 'bare_kernels': bare.__file__}))\n")
    # impostors first on sys.path; REPO after them so this runs in an uninstalled checkout too
    out = json.loads(run_probe(probe, tmp_path, impostors, REPO))
    for name, path in zip(OUR_PACKAGES, out["ours"]):
        assert Path(path).resolve() == (REPO / name / "__init__.py").resolve(), (name, path)
    assert out["roots"] == ["RunDataPipeline", "RunPretrainPipeline", "RunR1Pipeline"]
    assert Path(out["bare_kernels"]).resolve().parent.parent == impostors.resolve()


def test_luigi_module_workflows_behind_impostors(tmp_path):
    """`luigi --module workflows` still finds our tasks with a foreign `kernels`, `pipeline`
    and `stages` first on sys.path (each task class defined once, under deeprecipe.workflows)."""
    impostors = make_impostors(tmp_path / "impostors", ("kernels", "pipeline", "stages"))
    probe = ("import luigi.task_register as r, sys\n"
             "import workflows\n"
             "import deeprecipe.workflows as dw\n"
             "assert workflows is dw, workflows\n"
             "cls = r.Register.get_task_cls('UrlDedup')\n"
             "print(cls.__module__)\n")
    assert run_probe(probe, tmp_path, impostors, REPO) == "deeprecipe.workflows.data"


def test_bare_names_from_the_checkout_root_belong_to_other_packages(tmp_path):
    """With the checkout's root first on sys.path (a shell there, pytest, PYTHONPATH=.), our
    folders hand their bare names to the packages that own them (transformers 5 imports the
    `kernels` distribution for its models); a name nobody else owns says where ours is."""
    impostors = make_impostors(tmp_path / "impostors", ("kernels", "pipeline"))
    probe = ("import json, sys\n"
             "import kernels, pipeline\n"
             "import deeprecipe.kernels as ours\n"
             "try:\n"
             "    import stages\n"
             "    stages_error = None\n"
             "except ModuleNotFoundError as e:\n"
             "    stages_error = str(e)\n"
             "print(json.dumps({'kernels': getattr(kernels, 'OWNER', None),"
             " 'pipeline': getattr(pipeline, 'OWNER', None), 'ours': ours.__file__,"
             " 'has_moe': hasattr(ours, 'moe_experts'), 'stages_error': stages_error}))\n")
    # cwd = the checkout's root: python puts it first on sys.path, the impostors after it
    out = json.loads(run_probe(probe, REPO, impostors))
    assert out["kernels"] == "theirs" and out["pipeline"] == "theirs", out
    assert Path(out["ours"]).resolve() == (REPO / "kernels" / "__init__.py").resolve()
    assert out["has_moe"]
    assert out["stages_error"] and "deeprecipe.stages" in out["stages_error"], out


def test_transformers_loads_its_kernels_from_the_checkout_root():
    pytest.importorskip("transformers")
    probe = ("import kernels, transformers\n"
             "from transformers import AutoConfig\n"
             "print(kernels.__file__)\n")
    r = user_run([sys.executable, "-c", probe], REPO)
    if r.returncode != 0 and "No module named 'kernels'" in r.stderr:
        pytest.skip("no `kernels` distribution installed beside transformers")
    assert r.returncode == 0, r.stderr[-3000:]
    assert Path(r.stdout.strip().splitlines()[-1]).resolve().parent != (REPO / "kernels").resolve()
