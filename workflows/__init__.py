"""Luigi workflows: ``luigi --module workflows RunDataPipeline --local-scheduler``."""
from .data import CrawlIngest, CrawlIngestShard, SyntheticCrawl, UrlDedup  # noqa: F401
from .curation import (Decontaminate, MinhashDedup, PiiRedact, QualityClassifier, QualityFilter,  # noqa: F401
                       ReferenceLm, SimhashDedup)
from .pretrain import TokenizePack, TokenizerTrain  # noqa: F401
from .train import PretrainMoe  # noqa: F401
from .reasoning import ReasoningCorpus, ReasoningData  # noqa: F401
from .post_train import (ColdStartSft, Distill, Evaluate, FinalRl, FinalSft, Grpo, GrpoZero,  # noqa: F401
                         RejectionSample, RewardModel)
from .roots import RunDataPipeline, RunPretrainPipeline, RunR1Pipeline  # noqa: F401

ROOTS = {"RunDataPipeline": RunDataPipeline, "RunPretrainPipeline": RunPretrainPipeline,
         "RunR1Pipeline": RunR1Pipeline}
