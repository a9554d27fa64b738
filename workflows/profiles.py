"""Profiles: each stage's parameter values at one scale. A command-line value
(``--UrlDedup-num-buckets 8``) overrides the profile's; the resolved values form the key."""
from __future__ import annotations

PROFILES: dict[str, dict[str, dict]] = {
    "tiny": {  # 2-core CPU, minutes: README default and CI
        "synthetic_crawl": {"seed": 0, "num_files": 4, "pages_per_file": 400},
        "crawl_ingest": {"files_per_shard": 1, "max_chars": 1_000_000},
        "url_dedup": {"num_buckets": 4},
    },
    "small": {  # one H100/H200 host
        "synthetic_crawl": {"seed": 0, "num_files": 32, "pages_per_file": 4000},
        "crawl_ingest": {"files_per_shard": 1, "max_chars": 1_000_000},
        "url_dedup": {"num_buckets": 32},
    },
    "cluster": {  # many hosts sharing luigid; give --source s3://... and --store s3://...
        "synthetic_crawl": {"seed": 0, "num_files": 256, "pages_per_file": 4000},
        "crawl_ingest": {"files_per_shard": 1, "max_chars": 1_000_000},
        "url_dedup": {"num_buckets": 256},
    },
}


class ProfileError(ValueError):
    pass


def profile_params(profile: str, stage: str) -> dict:
    if profile not in PROFILES:
        raise ProfileError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    return dict(PROFILES[profile].get(stage, {}))
