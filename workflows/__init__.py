"""Luigi workflows: ``luigi --module workflows RunDataPipeline --local-scheduler``."""
from .data import CrawlIngest, CrawlIngestShard, SyntheticCrawl, UrlDedup  # noqa: F401
from .curation import (Decontaminate, MinhashDedup, PiiRedact, QualityClassifier, QualityFilter,  # noqa: F401
                       ReferenceLm, SimhashDedup)
from .pretrain import TokenizePack, TokenizerTrain  # noqa: F401
from .train import PretrainMoe  # noqa: F401
from .roots import RunDataPipeline, RunPretrainPipeline  # noqa: F401

ROOTS = {"RunDataPipeline": RunDataPipeline, "RunPretrainPipeline": RunPretrainPipeline}
