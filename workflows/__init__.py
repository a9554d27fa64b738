"""Luigi workflows: ``luigi --module workflows RunDataPipeline --local-scheduler``."""
from .data import CrawlIngest, CrawlIngestShard, SyntheticCrawl, UrlDedup  # noqa: F401
from .roots import RunDataPipeline  # noqa: F401

ROOTS = {"RunDataPipeline": RunDataPipeline}
