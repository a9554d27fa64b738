"""The workflow-side base: stages take their parameter defaults from the chosen profile."""
from __future__ import annotations

from pipeline.task import StageWork, VersionedTask, work_of  # noqa: F401  (re-exported)

from .profiles import profile_params


class StageTask(VersionedTask):
    def profile_defaults(self) -> dict:
        return profile_params(self.profile, self.stage)
