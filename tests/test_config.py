"""Typed stage configs: the command line changes single fields of the profile's config, an
unknown field is an error, and changing one stage's field re-keys exactly that stage and its
downstream."""
import ast
import dataclasses
from pathlib import Path

import pytest
from luigi.cmdline_parser import CmdlineParser
from luigi.task_register import Register

from deeprecipe import profiles, workflows
from deeprecipe.pipeline.config import ConfigError, merge, plain
from deeprecipe.pipeline.lineage import stage_tasks

GRPO_DOWNSTREAM = {"grpo", "rejection_sample", "final_sft", "final_rl", "distill",
                   "student_grpo", "evaluate"}


def test_merge_changes_one_nested_field_and_keeps_the_rest():
    base = profiles.tiny().grpo
    changed = merge(base, {"grpo": {"lr": 3e-6}})
    assert changed.grpo.lr == 3e-6
    assert dataclasses.replace(changed.grpo, lr=base.grpo.lr) == base.grpo
    assert changed.weights == base.weights and changed.max_seq_len == base.max_seq_len


def test_unknown_fields_fail_and_name_the_valid_ones():
    with pytest.raises(ConfigError, match=r"grpo.grpo: unknown field\(s\) \['lrr'\].*'lr'"):
        merge(profiles.tiny().grpo, {"grpo": {"lrr": 1.0}}, "grpo")
    with pytest.raises(ConfigError, match="unknown field"):
        merge(profiles.tiny(), {"url_dedupp": {"num_buckets": 2}})
    with pytest.raises(ConfigError, match="expected int"):
        merge(profiles.tiny(), {"url_dedup": {"num_buckets": "many"}})


def test_profiles_derive_by_changing_fields():
    tiny, small = profiles.tiny(), profiles.small()
    assert small.url_dedup.num_buckets == 32 and tiny.url_dedup.num_buckets == 4
    assert small.grpo.grpo.lr == 3e-6 and small.grpo.grpo.group_size == 16
    # fields small does not change are tiny's
    assert small.minhash_dedup == tiny.minhash_dedup
    assert small.grpo.weights == tiny.grpo.weights
    assert plain(profiles.cluster().grpo)["grpo"]["steps"] == 800


def _task(argv):
    """The root task of a `luigi` command line (each call a fresh command)."""
    Register.clear_instance_cache()
    with CmdlineParser.global_instance(argv) as cp:
        return cp.get_task_obj()


def _versions(argv) -> dict[str, str]:
    """Each stage's version under a `luigi` command line (computed while its options apply)."""
    Register.clear_instance_cache()
    with CmdlineParser.global_instance(argv) as cp:
        return {t.stage: t.version for t in stage_tasks(cp.get_task_obj())}


def test_a_dict_option_on_the_command_line_changes_one_field(tmp_path):
    store = str(tmp_path)
    task = _task(["Grpo", "--store", store, "--Grpo-grpo", '{"lr": 3e-6}'])
    profile_grpo = profiles.tiny().grpo
    assert task.config.grpo.lr == 3e-6
    assert task.config.grpo.steps == profile_grpo.grpo.steps
    assert task.stage_params["weights"] == plain(profile_grpo.weights)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['lrr'\]"):
        _task(["Grpo", "--store", store, "--Grpo-grpo", '{"lrr": 3e-6}']).stage_params


def test_changing_grpo_lr_rekeys_exactly_grpo_and_its_downstream(tmp_path):
    store = str(tmp_path)
    before = _versions(["RunR1Pipeline", "--store", store])
    after = _versions(["RunR1Pipeline", "--store", store, "--Grpo-grpo", '{"lr": 3e-6}'])
    assert set(before) == set(after)
    rekeyed = {s for s in before if before[s] != after[s]}
    assert rekeyed == GRPO_DOWNSTREAM


def test_no_luigi_parameter_is_declared_in_more_than_one_task_class():
    """Stage parameters are config fields (declared once, in a dataclass); the few Luigi
    parameters left are declared by one class each."""
    seen: dict[str, str] = {}
    root = Path(workflows.__file__).parent
    for path in sorted(root.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.ClassDef):
                continue
            for st in node.body:
                if (isinstance(st, ast.Assign) and isinstance(st.value, ast.Call)
                        and "Parameter" in ast.unparse(st.value.func)):
                    name = st.targets[0].id
                    assert name not in seen, f"{name}: {seen.get(name)} and {node.name}"
                    seen[name] = node.name


def test_params_shows_the_fields_given_and_names_an_unknown_one(tmp_path, capsys):
    from deeprecipe.pipeline import cli
    Register.clear_instance_cache()
    cli.main(["--store", str(tmp_path), "params", "RunR1Pipeline", "--stage", "grpo",
              "--Grpo-grpo", '{"lr": 3e-6}'])
    out = capsys.readouterr().out
    assert '{"lr": 3e-06} (other fields: profile) [command line]' in out
    Register.clear_instance_cache()
    cli.main(["--store", str(tmp_path), "params", "RunR1Pipeline", "--stage", "grpo",
              "--Grpo-grpo", '{"lrr": 3e-6}'])
    assert "error: grpo.grpo: unknown field(s) ['lrr']" in capsys.readouterr().out
