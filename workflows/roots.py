"""Root tasks: take the user-facing options once and pass them to every upstream task."""
from __future__ import annotations

import luigi

from deeprecipe.pipeline.task import PipelineTask

from .curation import Decontaminate as CuratedDocs
from .train import PretrainMoe


class RunDataPipeline(PipelineTask, luigi.WrapperTask):
    """Every data-curation stage, crawl to curated documents."""

    def requires(self):
        return self.clone(CuratedDocs)


class RunPretrainPipeline(PipelineTask, luigi.WrapperTask):
    """Data stages, tokenizer, packed token shards and the pretrained MoE."""

    def requires(self):
        return self.clone(PretrainMoe)


from .post_train import Evaluate  # noqa: E402


class RunR1Pipeline(PipelineTask, luigi.WrapperTask):
    """The whole recipe: data, pretraining, R1 post-training, distillation and the evaluation."""

    def requires(self):
        return self.clone(Evaluate)
