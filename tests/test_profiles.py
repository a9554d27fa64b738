"""Every stage of each profile's pipelines gets a value for every parameter; where a profile
has none, the stage says which, before any work."""
import pytest

import workflows
from pipeline.lineage import stage_tasks


@pytest.mark.parametrize("profile,root", [("tiny", "RunR1Pipeline"), ("small", "RunR1Pipeline"),
                                          ("cluster", "RunR1Pipeline")])
def test_profiles_set_every_stage_parameter(profile, root, tmp_path):
    stages = stage_tasks(getattr(workflows, root)(profile=profile, store=str(tmp_path)))
    assert any(t.stage == "reasoning_data" for t in stages)
    for t in stages:
        assert None not in t.stage_params.values(), t.stage


def test_a_stage_without_profile_values_names_its_unset_parameters(tmp_path, monkeypatch):
    from workflows.profiles import PROFILES
    monkeypatch.setitem(PROFILES, "no-grpo",
                        {k: v for k, v in PROFILES["tiny"].items() if k != "grpo"})
    task = workflows.Grpo(profile="no-grpo", store=str(tmp_path))
    with pytest.raises(ValueError, match=r"grpo: parameters \['grpo', 'weights'.*--Grpo-grpo"):
        task.stage_params
