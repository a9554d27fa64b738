"""RunDataPipeline end to end, as the README runs it: default generated crawl, local and s3://
stores, the user's own files with bad records, lineage of the result."""
from __future__ import annotations

import gzip
import json

import pyarrow.parquet as pq
import pytest

from deeprecipe.pipeline.store import AlreadyCommitted, ArtifactStore
from tests.conftest import deeprecipe, luigi_cmd, run

DATA = ["--module", "workflows", "RunDataPipeline"]
DATA_STAGES = ("synthetic_crawl", "crawl_ingest", "url_dedup", "minhash_dedup", "simhash_dedup",
               "reference_lm", "quality_classifier", "quality_filter", "pii_redact", "decontaminate")
DOWNSTREAM_OF_URL_DEDUP = ("url_dedup", "minhash_dedup", "simhash_dedup", "quality_classifier",
                           "quality_filter", "pii_redact", "decontaminate")
SMALL_CRAWL = ["--SyntheticCrawl-pages-per-file", "60"]  # re-run checks on a smaller crawl


def versions(store: str, env=None) -> dict[str, set[str]]:
    s = ArtifactStore(store)
    return {stage: {m["version"] for m in s.committed(stage)} for stage in s.stages()}


def check_data_flow(store: str, env: dict | None = None, workers: str = "2", extra=()):
    run(luigi_cmd(*DATA, "--store", store, "--workers", workers, *extra), env=env)
    first = versions(store)
    assert {k: len(v) for k, v in first.items()} == {s: 1 for s in DATA_STAGES}
    r = run(luigi_cmd(*DATA, "--store", store, *extra), env=env)
    assert "Did not run any tasks" in r.stderr
    # num_buckets only changes how the work is split: url_dedup re-runs into byte-identical
    # files, so its downstream is cut off (not executed, versions unchanged)
    st = deeprecipe("--store", store, "status", *DATA[2:], "--UrlDedup-num-buckets", "3", *extra, env=env).stdout
    lines = {line.split()[1]: line for line in st.splitlines()[:-1]}
    assert lines["url_dedup"].startswith("missing") and "param num_buckets" in lines["url_dedup"]
    for stage in DOWNSTREAM_OF_URL_DEDUP[1:]:
        assert lines[stage].startswith("cutoff?"), lines[stage]
    r = run(luigi_cmd(*DATA, "--store", store, "--UrlDedup-num-buckets", "3", *extra), env=env)
    after = versions(store)
    for stage in DATA_STAGES:
        assert len(after[stage]) == (2 if stage == "url_dedup" else 1), stage
        assert stage == "url_dedup" or after[stage] == first[stage]
    for stage in DOWNSTREAM_OF_URL_DEDUP[1:]:
        assert f"{stage} {next(iter(first[stage]))}: already committed" in r.stderr, stage
        assert ArtifactStore(store).versions(stage) == sorted(first[stage])  # no attempt folder
    # lineage names the parameter that differs from the profile, and only that one
    (new_dedup,) = after["url_dedup"] - first["url_dedup"]
    lin = deeprecipe("--store", store, "lineage", f"url_dedup/{new_dedup}", env=env).stdout.splitlines()
    assert lin[1].strip() == "params: num_buckets=3 (others as profile tiny)", lin[:3]
    assert lin[4].strip() == "params: as profile tiny", lin[:6]  # crawl_ingest
    full = deeprecipe("--store", store, "lineage", f"url_dedup/{new_dedup}", "--all-params",
                      env=env).stdout.splitlines()
    assert full[1].strip() == "params: num_buckets=3"
    # a fresh attempt of crawl_ingest writes the same bytes: cut off at url_dedup again
    run(luigi_cmd(*DATA, "--store", store, "--rerun", "crawl_ingest", *extra), env=env)
    again = versions(store)
    assert len(again["crawl_ingest"]) == 2
    assert all(again[s] == after[s] for s in DATA_STAGES if s != "crawl_ingest")
    # a parameter that changes simhash_dedup's outputs re-runs its downstream
    run(luigi_cmd(*DATA, "--store", store, "--SimhashDedup-min-doc-words", "80", *extra), env=env)
    changed = versions(store)
    for stage in DATA_STAGES:
        rekeyed = stage in ("simhash_dedup", "quality_classifier", "quality_filter", "pii_redact",
                            "decontaminate")
        assert len(changed[stage]) == len(again[stage]) + rekeyed, stage
    return first


def test_data_pipeline_default_source(store):
    run(luigi_cmd(*DATA, "--store", store, "--workers", "2"))
    first = versions(store)
    assert {k: len(v) for k, v in first.items()} == {s: 1 for s in DATA_STAGES}
    s = ArtifactStore(store)
    ingest = next(m for m in s.committed("crawl_ingest") if m["version"] in first["crawl_ingest"])
    dedup = next(m for m in s.committed("url_dedup") if m["version"] in first["url_dedup"])
    truth = pq.read_table(s.path("synthetic_crawl", next(iter(first["synthetic_crawl"])),
                                 "ground_truth.parquet")).to_pandas()
    docs_in = ingest["outputs"]["rows"]
    # every HTML 2xx response becomes a document; the other records are counted skips
    assert docs_in > 1000
    m = dedup["outputs"]["metrics"]
    assert m["docs_in"] == docs_in and m["docs_out"] + m["duplicates_removed"] == docs_in
    assert 0 < m["duplicates_removed"] < docs_in
    assert sum(ingest["outputs"]["metrics"]["skipped"].values()) > 0
    # the survivors are unique by normalised URL
    from deeprecipe.stages.url_dedup import normalize_url
    urls = [normalize_url(u) for p in sorted(f["name"] for f in dedup["outputs"]["files"])
            for u in pq.read_table(s.path("url_dedup", dedup["version"], p), columns=["url"])["url"].to_pylist()]
    assert len(urls) == len(set(urls)) == m["docs_out"]
    assert len(truth) > 0

    lin = deeprecipe("--store", store, "lineage", f"url_dedup/{dedup['version']}").stdout
    assert ingest["version"] in lin and "crawl-00000.warc.gz" in lin
    assert next(iter(first["synthetic_crawl"])) in lin
    mer = deeprecipe("--store", store, "graph", "RunDataPipeline").stdout
    for edge in ("synthetic_crawl --> crawl_ingest", "crawl_ingest --> url_dedup", "url_dedup --> minhash_dedup",
                 "reference_lm --> quality_filter", "quality_classifier --> quality_filter",
                 "pii_redact --> decontaminate"):
        assert edge in mer, edge
    assert "0 problem(s)" in deeprecipe("--store", store, "verify").stdout


def test_data_pipeline_on_s3(moto_server, s3_bucket, monkeypatch):
    for k, v in moto_server.items():  # for this process's ArtifactStore; subprocesses get env=
        monkeypatch.setenv(k, v)
    store = f"s3://{s3_bucket}/artifacts"
    # the same flow as on a local store (kept to the cheap re-keys: moto is slow per request)
    run(luigi_cmd(*DATA, "--store", store, "--workers", "2", *SMALL_CRAWL))
    first = versions(store)
    assert {k: len(v) for k, v in first.items()} == {s: 1 for s in DATA_STAGES}
    assert "Did not run any tasks" in run(luigi_cmd(*DATA, "--store", store, *SMALL_CRAWL)).stderr
    run(luigi_cmd(*DATA, "--store", store, "--Decontaminate-ngram", "12", *SMALL_CRAWL))
    run(luigi_cmd(*DATA, "--store", store, "--rerun", "pii_redact", *SMALL_CRAWL))
    after = versions(store)  # pii_redact's fresh attempt wrote the same bytes: decontaminate cut off
    assert len(after["decontaminate"]) == 2 and len(after["pii_redact"]) == 2
    assert all(after[s] == first[s] for s in DATA_STAGES if s not in ("pii_redact", "decontaminate"))
    lin = deeprecipe("--store", store, "lineage", "url_dedup", env=moto_server).stdout
    assert "crawl_ingest" in lin and "crawl-00000.warc.gz" in lin
    path = deeprecipe("--store", store, "path", "url_dedup", env=moto_server).stdout.strip()
    assert path.startswith(f"s3://{s3_bucket}/artifacts/url_dedup/")
    assert "0 problem(s)" in deeprecipe("--store", store, "verify", env=moto_server).stdout
    # the manifest is an exclusive create on S3 too, and holds no secret
    s = ArtifactStore(store)
    m = s.newest("url_dedup")
    with pytest.raises(AlreadyCommitted):
        s.commit_manifest("url_dedup", m["version"], {"forged": True})
    assert s.read_manifest("url_dedup", m["version"])["version"] == m["version"]
    raw = json.dumps([x for x in s.all_manifests()])
    assert moto_server["AWS_SECRET_ACCESS_KEY"] not in raw


def write_bad_inputs(folder):
    from deeprecipe.stages.generators.crawl_spec import SyntheticCrawlConfig
    from deeprecipe.stages.generators.synthetic_crawl import write_warc_file
    import io
    buf = io.BytesIO()
    write_warc_file(buf, SyntheticCrawlConfig(seed=3, num_files=1, pages_per_file=40), 0)
    data = buf.getvalue()
    (folder / "a-truncated.warc.gz").write_bytes(data[: len(data) * 2 // 3])
    (folder / "b-empty.jsonl").write_bytes(b"")
    lines = [json.dumps({"id": "doc-1", "url": "https://x.example/1", "text": "Hello world. " * 20}).encode(),
             b"{this is not json",
             json.dumps({"id": "doc-2", "url": "https://x.example/2", "text": "Bonjour le monde. " * 20}).encode(),
             b'{"id": "doc-3", "text": "caf\xe9 latin-1 bytes"}']
    (folder / "c-mixed.jsonl.gz").write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))


def test_users_own_files_with_bad_records(store, tmp_path):
    src = tmp_path / "crawl"
    src.mkdir()
    write_bad_inputs(src)
    run(luigi_cmd(*DATA, "--store", store, "--source", str(src)))
    s = ArtifactStore(store)
    assert "synthetic_crawl" not in s.stages()  # no generated crawl when --source is given
    ingest = s.newest("crawl_ingest")
    skipped = ingest["outputs"]["metrics"]["skipped"]
    assert skipped.get("truncated", 0) >= 1 and skipped.get("bad_json", 0) == 1
    assert skipped.get("decode_error", 0) == 1 and skipped.get("empty_file", 0) == 1
    ids = [i for f in ingest["outputs"]["files"] if f["name"].startswith("part-")
           for i in pq.read_table(s.path("crawl_ingest", ingest["version"], f["name"]))["id"].to_pylist()]
    assert "doc-1" in ids and "doc-2" in ids and len(ids) > 2
    assert {f["uri"].rsplit("/", 1)[-1] for f in ingest["outputs"]["metrics"]["source_files"]} == {
        "a-truncated.warc.gz", "b-empty.jsonl", "c-mixed.jsonl.gz"}
    # a changed source file re-keys ingest
    (src / "b-empty.jsonl").write_text(json.dumps({"text": "new words here " * 10}) + "\n")
    run(luigi_cmd(*DATA, "--store", store, "--source", str(src)))
    assert len(s.committed("crawl_ingest")) == 2


def test_unreadable_source_file_fails_clearly(store, tmp_path):
    src = tmp_path / "crawl"
    src.mkdir()
    (src / "broken.parquet").write_bytes(b"this is not parquet at all")
    r = run(luigi_cmd(*DATA, "--store", store, "--source", str(src), "--scheduler-retry-count", "1"),
            check=False)
    assert r.returncode == 30
    assert "broken.parquet" in r.stderr
    assert ArtifactStore(store).committed("crawl_ingest") == []


def test_source_matching_nothing_is_a_clear_error(store, tmp_path):
    r = run(luigi_cmd(*DATA, "--store", store, "--source", str(tmp_path / "nothing-*.warc.gz")), check=False)
    assert r.returncode != 0 and "matches no files" in r.stderr


def test_profiles_rekey_and_unknown_profile_is_clear(store):
    import argparse
    from deeprecipe.pipeline.cli import root_task
    from deeprecipe.pipeline.lineage import stage_tasks

    def keys(profile):  # versions downstream of an unbuilt stage are not known yet: compare keys
        args = argparse.Namespace(module="workflows", root="RunDataPipeline", profile=profile,
                                  store=store, source="", rerun="", overrides=[])
        with root_task(args) as root:
            return {t.stage: t.key["digest"] for t in stage_tasks(root)}
    tiny, small = keys("tiny"), keys("small")
    assert set(tiny) == set(DATA_STAGES)
    assert all(tiny[s] != small[s] for s in DATA_STAGES)
    st = deeprecipe("--store", store, "status", "RunDataPipeline").stdout
    assert st.splitlines()[-1] == f"{len(DATA_STAGES)} stages would run, 0 fresh"
    r = run(luigi_cmd(*DATA, "--store", store, "--profile", "huge"), check=False)
    assert r.returncode != 0 and "unknown profile 'huge'" in r.stderr
    assert "Traceback" not in r.stderr  # one line, not a traceback before the message


def test_rerun_and_rekey_local(store):
    check_data_flow(store, extra=SMALL_CRAWL)
