"""Integrity under concurrency and tampering (issue 19): two runs of one version on one store
(lock off, local and s3://) never interleave; downstream reads check upstream bytes."""
from __future__ import annotations

import json
import os
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deeprecipe.pipeline.store import ArtifactStore, Lease, lease_stale_seconds, live_leases
from tests.conftest import REPO, base_env, deeprecipe, luigi_cmd, run

TOY = ["--module", "tests.toyflow"]
SLOW = ["--Numbers-sleep-s", "0.4", "--no-lock"]


def digests(url: str, env: dict | None = None) -> dict[tuple[str, str], dict[str, str]]:
    """{(stage, version): {file name: sha256}} of every committed version."""
    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        s = ArtifactStore(url)
        return {(m["stage"], m["version"]): {f["name"]: f["sha256"] for f in m["outputs"]["files"]}
                for m in s.all_manifests()}
    finally:
        os.environ.clear()
        os.environ.update(old)


def start_together(cmds: list[list[str]], env: dict | None = None) -> list[tuple[int, str]]:
    procs = [subprocess.Popen(c, cwd=REPO, env=base_env(env), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for c in cmds]
    return [(p.wait(timeout=240), p.stdout.read()) for p in procs]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """Digests of one single run of each command line used below."""
    url = str(tmp_path_factory.mktemp("ref") / "store")
    run(luigi_cmd(*TOY, "RunToy", "--store", url))
    run(luigi_cmd(*TOY, "Squares", "--Squares-offset", "3", "--store", url))
    return digests(url)


def check_against(reference: dict, url: str, env: dict | None = None) -> None:
    got = digests(url, env)
    assert got, "nothing committed"
    for key, files in got.items():
        assert key in reference, f"{key} was committed but no single run makes it"
        assert files == reference[key], f"{key}: files differ from a single run's"
    out = deeprecipe("--store", url, "verify", env=env).stdout
    assert out.strip().endswith(" 0 problem(s)"), out
    for stage, version in got:  # nothing left behind in committed folders
        s = ArtifactStore(url) if env is None else None
        if s is not None and s.is_local:
            left = sorted(os.listdir(s.version_dir(stage, version)))
            assert all(not n.startswith((".tmp-", "_work")) for n in left), left


@pytest.mark.parametrize("different", [False, True], ids=["same", "different"])
def test_two_runs_on_one_local_store_without_lock(reference, store, different):
    a = luigi_cmd(*TOY, "RunToy", "--store", store, *SLOW)
    b = (luigi_cmd(*TOY, "Squares", "--Squares-offset", "3", "--store", store, "--workers", "2", *SLOW)
         if different else a)
    results = start_together([a, b])
    assert all(rc == 0 for rc, _ in results), results[0][1][-3000:] + results[1][1][-3000:]
    check_against(reference, store)
    # both ran the shared stage's units, but each unit was done by one of them: 4 markers' worth
    assert len(ArtifactStore(store).committed("numbers")) == 1


def test_two_runs_on_one_s3_store(reference, moto_server, s3_bucket):
    url = f"s3://{s3_bucket}/store"
    a = luigi_cmd(*TOY, "RunToy", "--store", url, *SLOW)
    b = luigi_cmd(*TOY, "Squares", "--Squares-offset", "3", "--store", url, "--workers", "2", *SLOW)
    results = start_together([a, a, b], env=moto_server)
    assert all(rc == 0 for rc, _ in results), "\n".join(o[-2500:] for _, o in results)
    check_against(reference, url, env=moto_server)
    for _, out in results:
        assert "testing-secret-never-logged" not in out


def test_lease_excludes_and_stale_lease_is_taken_over(store, monkeypatch):
    s = ArtifactStore(store)
    first = Lease(s, "st", "v1", "commit", attempt="a")
    assert first.try_acquire()
    second = Lease(s, "st", "v1", "commit", attempt="b")
    assert not second.try_acquire()  # held by a live process (this one)
    assert live_leases(s, "st", "v1")
    gc = deeprecipe("--store", store, "gc", "--dry-run").stdout
    assert "v1" not in gc  # gc never touches a leased folder
    # a holder on this host whose pid is gone: taken over at once
    owner = json.loads(open(first.path).read())
    with open(first.path, "w") as f:
        json.dump({**owner, "pid": 2 ** 22 + 12345}, f)
    assert second.try_acquire()
    first.release()  # not first's lease any more: left alone
    assert os.path.exists(second.path)
    # a holder on another host: taken over only after the timeout
    with open(second.path, "w") as f:
        json.dump({**owner, "host": "elsewhere", "token": "x"}, f)
    third = Lease(s, "st", "v1", "commit", attempt="c")
    assert not third.try_acquire()
    monkeypatch.setenv("DEEPRECIPE_LEASE_STALE_S", "0")
    assert lease_stale_seconds() == 0
    assert third.try_acquire()
    with pytest.raises(RuntimeError, match="lost the lease"):
        second.check()
    third.release()
    assert not os.path.exists(third.path)


def _committed_squares(store: str) -> tuple[ArtifactStore, str]:
    run(luigi_cmd(*TOY, "Squares", "--store", store))
    s = ArtifactStore(store)
    m = s.newest("squares")
    return s, s.path("squares", m["version"], "part-00000.parquet")


def test_edited_but_valid_upstream_file_fails_downstream(store):
    s, path = _committed_squares(store)
    table = pq.read_table(path)
    pq.write_table(pa.table({"y": [v + 1 for v in table["y"].to_pylist()]}), path, compression="zstd")
    r = run(luigi_cmd(*TOY, "RunToy", "--store", store), check=False)
    assert r.returncode == 30
    assert "part-00000.parquet" in r.stderr and "deeprecipe verify" in r.stderr
    assert s.committed("total") == []
    r = deeprecipe("--store", store, "status", "RunToy", "--module", "tests.toyflow", "--check", check=False)
    assert r.returncode == 3  # total missing


def test_corrupted_upstream_file_fails_naming_it(store):
    s, path = _committed_squares(store)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the sha256 tells
    open(path, "wb").write(bytes(data))
    r = run(luigi_cmd(*TOY, "RunToy", "--store", store), check=False)
    assert r.returncode == 30
    assert "part-00000.parquet" in r.stderr and "sha256" in r.stderr and "deeprecipe verify" in r.stderr
    assert "ZSTD" not in r.stderr


def test_truncated_upstream_file_fails_status_check(store):
    s, path = _committed_squares(store)
    open(path, "r+b").truncate(10)
    r = deeprecipe("--store", store, "status", "Squares", "--module", "tests.toyflow", "--check", check=False)
    assert r.returncode == 3 and "part-00000.parquet" in r.stdout, r.stdout + r.stderr


def test_manifest_names_confined_to_the_store(store):
    s, path = _committed_squares(store)
    m = s.newest("squares")
    mp = s.manifest_path("squares", m["version"])
    m["outputs"]["files"][0]["name"] = "../../../../etc/hostname"
    os.chmod(mp, 0o644)
    open(mp, "w").write(json.dumps(m))
    out = deeprecipe("--store", store, "verify", check=False)
    assert out.returncode == 1 and "leaves the store folder" in out.stdout
    r = run(luigi_cmd(*TOY, "RunToy", "--store", store), check=False)
    assert r.returncode == 30 and "leaves the store folder" in r.stderr


def test_files_follow_the_umask(store):
    _committed_squares(store)
    s = ArtifactStore(store)
    m = s.newest("squares")
    mode = os.stat(s.manifest_path("squares", m["version"])).st_mode & 0o777
    assert mode == 0o666 & ~_umask(), oct(mode)


def _umask() -> int:
    u = os.umask(0)
    os.umask(u)
    return u


# -- empty inputs: one clear error, no downstream traceback ---------------------------------
DATA = ["--module", "workflows", "RunDataPipeline", "--scheduler-retry-count", "1"]


def _all_bad_sources(root) -> dict[str, str]:
    """{format: folder} each holding only files of that format whose every record is bad."""
    import gzip as gz
    out = {}
    d = root / "jsonl"
    d.mkdir()
    (d / "x.jsonl").write_text("not json\n" + json.dumps({"text": 5}) + "\n[1, 2]\n")
    out["jsonl"] = d
    d = root / "parquet"
    d.mkdir()
    pq.write_table(pa.table({"text": pa.array([None] * 200, pa.string())}), d / "x.parquet")
    out["parquet"] = d
    d = root / "warc"
    d.mkdir()
    (d / "x.warc.gz").write_bytes(gz.compress(b"WARC/1.0\r\nWARC-Type: warcinfo\r\nContent-Length: 0\r\n\r\n\r\n\r\n"))
    out["warc"] = d
    d = root / "empty"
    d.mkdir()
    (d / "x.jsonl").write_bytes(b"")
    out["empty"] = d
    return out


def test_all_bad_inputs_stop_the_dag_with_one_clear_error(store, tmp_path):
    expected = {"jsonl": "bad_json in x.jsonl", "parquet": "200 missing_text in x.parquet",
                "warc": "non_response in x.warc.gz", "empty": "1 empty_file in x.jsonl"}
    for fmt, folder in _all_bad_sources(tmp_path).items():
        r = run(luigi_cmd(*DATA, "--store", store, "--source", str(folder)), check=False)
        assert r.returncode == 30, r.stderr[-3000:]
        assert "0 documents:" in r.stderr and expected[fmt] in r.stderr, (fmt, r.stderr[-3000:])
        assert "Traceback" not in r.stderr, (fmt, r.stderr[-3000:])
        s = ArtifactStore(store)
        assert s.committed("crawl_ingest") == [] and s.committed("url_dedup") == []


def test_parquet_text_as_binary_is_decoded_and_other_types_are_a_schema_error(tmp_path):
    import io
    from deeprecipe.stages.crawl_ingest import SourceFileError, ingest_file
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": pa.array(["héllo wörld " * 5, "zweite Zeile " * 5], pa.binary())}), buf)
    table, stats = ingest_file(io.BytesIO(buf.getvalue()), "b.parquet")
    assert table.column("text").to_pylist()[0].startswith("héllo wörld")
    assert stats.docs_out == 2
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": pa.array([1, 2], pa.int64())}), buf)
    with pytest.raises(SourceFileError, match=r"i\.parquet: Parquet column 'text' has type int64"):
        ingest_file(io.BytesIO(buf.getvalue()), "i.parquet")


def test_minhash_band_reduce_of_no_rows():
    from deeprecipe.stages import minhash_dedup as m
    sig = m.signatures(pa.table({"text": pa.array([], pa.string())}), 112, 5, 1, method="word_combine")
    buckets = m.band_bucket_rows(sig, 0, None, 14, 8)
    assert buckets.num_rows == 0
    assert m.duplicate_pairs(buckets).num_rows == 0  # was: non-broadcastable output operand


def test_stages_after_a_filter_that_keeps_nothing_commit_zero_rows(store, tmp_path):
    src = tmp_path / "junk"
    src.mkdir()
    (src / "j.jsonl").write_text(json.dumps({"id": "a", "url": "http://x.org/a", "text": "buy buy buy"}) + "\n")
    run(luigi_cmd("--module", "workflows", "RunDataPipeline", "--store", store, "--source", str(src)))
    s = ArtifactStore(store)
    assert s.newest("quality_filter")["outputs"]["rows"] == 0
    assert s.newest("decontaminate")["outputs"]["rows"] == 0


# -- bounded memory on gzip bombs (scaled: 256 MiB expanded, caps scaled down with it) -------
def _bomb(path, lines) -> None:
    import zlib
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    with open(path, "wb") as f:
        for piece in lines:
            f.write(c.compress(piece))
        f.write(c.flush())


def _ingest_rss(path, *args) -> dict:
    import sys
    r = subprocess.run([sys.executable, str(REPO / "bench" / "ingest_rss.py"), str(path), *args],
                       capture_output=True, text=True, timeout=300, env=base_env())
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def _small_peak(tmp_path) -> float:
    """Peak RSS of the same reading path on a tiny file: imports, models and pools warmed."""
    path = tmp_path / "small.jsonl.gz"
    _bomb(path, [json.dumps({"text": ("word " * 2000).strip()}).encode() + b"\n"] * 10)
    return _ingest_rss(path)["peak_mib"]


def test_gzip_bomb_one_huge_line_is_counted_without_being_read_whole(tmp_path):
    path = tmp_path / "bomb.jsonl.gz"
    head = b'{"text": "'
    _bomb(path, [head] + [b"a" * (1 << 20)] * 256 + [b'"}\n', json.dumps({"text": "kept " * 20}).encode() + b"\n"])
    out = _ingest_rss(path, "--max-line-bytes", str(4 << 20))
    assert out["skipped"] == {"too_large": 1} and out["rows"] == 1
    assert out["peak_mib"] - _small_peak(tmp_path) < 48, out  # the line is 256 MiB


def test_gzip_bomb_many_short_lines_is_read_in_batches(tmp_path):
    path = tmp_path / "many.jsonl.gz"
    line = json.dumps({"text": ("word " * 2000).strip()}).encode() + b"\n"  # ~10 KB
    _bomb(path, [line] * (256 * 100))  # ~256 MiB expanded
    out = _ingest_rss(path, "--batch-chars", str(8 << 20))
    assert out["rows"] == 25600
    assert out["peak_mib"] - _small_peak(tmp_path) < 100, out


# -- the small items: each a clear message naming the option or file ----------------------
def test_bad_options_are_named_without_traceback(store):
    r = run(luigi_cmd("--module", "workflows", "RunDataPipeline", "--store", store,
                      "--UrlDedup-num-buckets", "0"), check=False)
    assert r.returncode != 0 and "--UrlDedup-num-buckets must be at least 1, got 0" in r.stderr
    assert "Traceback" not in r.stderr
    r = run(luigi_cmd(*TOY, "RunToy", "--store", "foo://x"), check=False)
    assert r.returncode != 0 and "--store 'foo://x': unknown protocol 'foo'" in r.stderr
    assert "Traceback" not in r.stderr
    r = deeprecipe("--store", "foo://x", "ls", check=False)
    assert r.returncode == 2 and "--store 'foo://x'" in r.stderr and "Traceback" not in r.stderr
    no_creds = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"}
    r = deeprecipe("--store", "s3://no-such-bucket-x/p", "ls", env=no_creds, check=False)
    assert r.returncode == 2 and "s3://no-such-bucket-x/p" in r.stderr and "Traceback" not in r.stderr
    r = run(luigi_cmd(*TOY, "RunToy", "--store", "s3://no-such-bucket-x/p"), env=no_creds, check=False)
    assert r.returncode != 0 and "--store 's3://no-such-bucket-x/p': no S3 credentials found" in r.stderr
    assert "Traceback" not in r.stderr
    r = run(luigi_cmd("--module", "workflows", "RunDataPipeline", "--store", store,
                      "--source", "s3://no-such-bucket-x/*.jsonl"), env=no_creds, check=False)
    assert r.returncode != 0 and "no S3 credentials found" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def test_tmp_file_left_in_a_committed_folder_is_debris(store):
    s, path = _committed_squares(store)
    stray = os.path.join(os.path.dirname(path), ".tmp-abc123")
    open(stray, "wb").write(b"x")  # what a kill between the manifest's link and unlink leaves
    dry = deeprecipe("--store", store, "gc", "--dry-run").stdout
    assert ".tmp-abc123" in dry
    assert deeprecipe("--store", store, "verify").stdout.strip().endswith(" 0 problem(s)")
    deeprecipe("--store", store, "gc")
    assert not os.path.exists(stray) and os.path.exists(path)


@pytest.fixture
def http_source(tmp_path):
    """A local HTTP server over a folder holding one JSONL (two rows share an id)."""
    import functools
    import http.server
    import threading
    folder = tmp_path / "www"
    folder.mkdir()
    rows = [{"id": "same", "url": f"http://site{i}.org/a", "text": f"Document {i} on the weather "
             f"in the mountains and the valleys, with enough words to be kept. " * 4} for i in range(3)]
    rows[2]["id"] = "other"
    (folder / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://user:pw-s3cr3t@127.0.0.1:{server.server_address[1]}/docs.jsonl"
    server.shutdown()


def test_password_in_a_source_url_never_reaches_manifests_or_logs(store, http_source):
    r = run(luigi_cmd("--module", "workflows", "RunDataPipeline", "--store", store, "--source", http_source))
    assert "pw-s3cr3t" not in r.stdout + r.stderr and "***@127.0.0.1" in r.stderr
    for dirpath, _, names in os.walk(store):
        for n in names:
            assert b"pw-s3cr3t" not in open(os.path.join(dirpath, n), "rb").read(), n
    m = ArtifactStore(store).newest("crawl_ingest")
    assert m["outputs"]["metrics"]["duplicate_ids"] == 1 and m["outputs"]["rows"] == 3


def test_manifest_naming_another_stage_or_version_is_refused(store):
    from deeprecipe.pipeline.store import IntegrityError, StoreError
    from deeprecipe.pipeline.task import Artifact
    s, _ = _committed_squares(store)
    m = s.newest("squares")
    with pytest.raises(IntegrityError, match="edited manifest"):
        Artifact(s, {**m, "stage": "numbers"}, "squares", m["version"])
    with pytest.raises(StoreError, match="leaves the store folder"):
        Artifact(s, {**m, "stage": "../../etc"})


def test_gc_keeps_a_version_a_run_is_between_tasks_of(store):
    s = ArtifactStore(store)
    marker = s.path("st", "v1", "_work", "markers", "shard-000000.json")
    os.makedirs(os.path.dirname(marker))
    open(marker, "w").write("{}")  # fresh, no lease: a run between two tasks
    assert "v1" not in deeprecipe("--store", store, "gc", "--dry-run").stdout
    old = __import__("time").time() - 3600
    os.utime(marker, (old, old))
    assert "v1" in deeprecipe("--store", store, "gc", "--dry-run").stdout


def test_permanent_error_is_not_redone_on_retry(store, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "broken.parquet").write_bytes(b"PAR1 this is not parquet at all PAR1")
    r = run(luigi_cmd("--module", "workflows", "RunDataPipeline", "--store", store, "--source", str(src),
                      "--scheduler-retry-delay", "0.1", "--scheduler-retry-count", "3"), check=False)
    assert r.returncode == 30
    assert r.stderr.count("broken.parquet: not a readable Parquet file") >= 2  # first failure + retries
    assert "not retried" in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
