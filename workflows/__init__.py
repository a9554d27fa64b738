"""Luigi workflows: ``luigi --module workflows RunDataPipeline --local-scheduler``.

The package is ``deeprecipe.workflows``. Luigi's ``--module workflows`` may find this file
under the short name ``workflows`` too (the folder sits at the checkout's root, and wheels
install that one alias): then it hands over ``deeprecipe.workflows`` itself, so every task
class is defined once. ``luigi --module deeprecipe.workflows`` is the same and cannot collide
with another package called ``workflows``.
"""
if __name__ != "deeprecipe.workflows":
    import importlib
    import sys

    sys.modules[__name__] = importlib.import_module("deeprecipe.workflows")
else:
    from .data import CrawlIngest, CrawlIngestShard, SyntheticCrawl, UrlDedup  # noqa: F401
    from .curation import (Decontaminate, MinhashDedup, PiiRedact, QualityClassifier,  # noqa: F401
                           QualityFilter, ReferenceLm, SimhashDedup)
    from .pretrain import TokenizePack, TokenizerTrain  # noqa: F401
    from .train import PretrainMoe  # noqa: F401
    from .reasoning import ReasoningCorpus, ReasoningData  # noqa: F401
    from .post_train import (ColdStartSft, Distill, Evaluate, FinalRl, FinalSft, Grpo,  # noqa: F401
                             GrpoZero, RejectionSample, RewardModel)
    from .roots import RunDataPipeline, RunPretrainPipeline, RunR1Pipeline

    ROOTS = {"RunDataPipeline": RunDataPipeline, "RunPretrainPipeline": RunPretrainPipeline,
             "RunR1Pipeline": RunR1Pipeline}
