"""Generated data (``deeprecipe.stages.generators``): the built-in crawl written as WARC, the
labelled text corpus behind it and the curation tests, the verifiable reasoning problems and
the reasoning text mixed into pretraining. Deterministic from a seed; no Luigi."""
