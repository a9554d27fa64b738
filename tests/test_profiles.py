"""Every stage of each profile's pipelines gets a value for every parameter; where a profile
has none, the stage says which, before any work."""
import dataclasses

import pytest

from deeprecipe import workflows
from deeprecipe.pipeline.lineage import stage_tasks


@pytest.mark.parametrize("profile,root", [("tiny", "RunR1Pipeline"), ("small", "RunR1Pipeline"),
                                          ("cluster", "RunR1Pipeline")])
def test_profiles_set_every_stage_parameter(profile, root, tmp_path):
    stages = stage_tasks(getattr(workflows, root)(profile=profile, store=str(tmp_path)))
    assert any(t.stage == "reasoning_data" for t in stages)
    for t in stages:
        assert None not in t.stage_params.values(), t.stage


def test_a_stage_without_profile_values_names_its_unset_parameters(tmp_path):
    from deeprecipe import profiles
    profiles.register("no-grpo", lambda: dataclasses.replace(profiles.tiny(), grpo=None))
    try:
        task = workflows.Grpo(profile="no-grpo", store=str(tmp_path))
        with pytest.raises(ValueError, match=r"grpo: parameters \[.*'grpo', 'weights'\] are unset"
                                             r".*--Grpo-"):
            task.stage_params
    finally:
        del profiles.PROFILES["no-grpo"]
        profiles.profile.cache_clear()


def test_bench_phases_name_stages_of_the_r1_pipeline(tmp_path):
    """bench/r1_small.py's phases (data, base, rl, teacher) target tasks that RunR1Pipeline
    runs, so a renamed stage fails here rather than on the GPU machine."""
    from bench import r1_small
    names = {type(t).__name__ for t in stage_tasks(workflows.RunR1Pipeline(profile="tiny",
                                                                           store=str(tmp_path)))}
    for phase, (root, targets, _) in r1_small.PHASES.items():
        assert root == "RunR1Pipeline" or (targets and set(targets) <= names), phase
