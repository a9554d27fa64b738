"""Crawl ingest: every format, main-text extraction, language id, and each bad-input rule."""
from __future__ import annotations

import gzip
import io
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from deeprecipe.stages.crawl_ingest import (DOC_SCHEMA, IngestStats, SourceFileError, cap_text, detect_format,
                                 document_id, ingest_file, iter_documents, url_domain)
from deeprecipe.stages.generators.crawl_pages import render_page
from deeprecipe.stages.generators.crawl_spec import SyntheticCrawlConfig
from deeprecipe.stages.generators.synthetic_crawl import warc_file_name, write_warc_file

CONFIG = SyntheticCrawlConfig(seed=11, num_files=3, pages_per_file=120)


@pytest.fixture(scope="module")
def crawl():
    """[(file name, bytes, ground-truth rows, table, stats)] for the generated crawl."""
    out = []
    for i in range(CONFIG.num_files):
        buffer = io.BytesIO()
        rows = write_warc_file(buffer, CONFIG, i)
        data = buffer.getvalue()
        table, stats = ingest_file(io.BytesIO(data), warc_file_name(CONFIG, i))
        out.append((warc_file_name(CONFIG, i), data, rows, table, stats))
    return out


def joined(crawl):
    """(document row, ground-truth row) pairs, matched on (file, record offset)."""
    pairs = []
    for name, _, rows, table, _ in crawl:
        truth = {r["record_offset"]: r for r in rows}
        pairs += [(doc, truth[doc["source_offset"]]) for doc in table.to_pylist()]
    return pairs


# ------------------------------------------------------------------------------ generated crawl

def test_generated_crawl_gives_one_document_per_html_page_and_counts_the_rest(crawl):
    for name, _, rows, table, stats in crawl:
        assert table.schema == DOC_SCHEMA
        assert table.num_rows == stats.docs_out == sum(r["is_document"] for r in rows)
        expected_skips = {}
        for r in rows:
            if not r["is_document"]:
                expected_skips[r["skip_reason"]] = expected_skips.get(r["skip_reason"], 0) + 1
        assert stats.skipped == expected_skips
        assert stats.records_read == len(rows)
        assert set(table.column("source_file").to_pylist()) == {name}


def test_documents_line_up_with_the_ground_truth(crawl):
    pairs = joined(crawl)
    assert all(truth["is_document"] and doc["url"] == truth["url"] for doc, truth in pairs)
    ids = [doc["id"] for doc, _ in pairs]
    assert len(set(ids)) == len(ids) and all(len(i) == 16 for i in ids)
    assert ids[0] == document_id(pairs[0][0]["source_file"], pairs[0][0]["source_offset"])
    for doc, truth in pairs:
        expected = truth["site"].lower()
        assert doc["domain"] == (expected[4:] if expected.startswith("www.") else expected)


def test_main_text_keeps_the_article_and_drops_the_boilerplate(crawl):
    leaked = shown = found = sentences = 0
    for doc, truth in joined(crawl):
        page = render_page(CONFIG, truth["page_id"])
        long_boilerplate = [line for line in page.boilerplate_lines if len(line) > 25]
        leaked += sum(line in doc["text"] for line in long_boilerplate)
        shown += len(long_boilerplate)
        found += sum(s in doc["text"] for s in page.article_sentences)
        sentences += len(page.article_sentences)
        assert "dataLayer" not in doc["text"] and "font-family" not in doc["text"]  # no script/style
    assert leaked / shown < 0.05
    assert found / sentences > 0.98


def test_language_is_detected_for_at_least_90_percent_of_pages(crawl):
    pairs = joined(crawl)
    correct = sum(doc["lang"] == truth["lang"] for doc, truth in pairs)
    assert correct / len(pairs) >= 0.9
    assert {truth["lang"] for _, truth in pairs} >= {"en", "de", "fr", "es"}


def test_windows_1252_pages_are_decoded_by_charset_detection(crawl):
    legacy = [(doc, truth) for doc, truth in joined(crawl) if truth["charset"].startswith("windows-1252")]
    assert {t["charset"] for _, t in legacy} == {"windows-1252-header", "windows-1252-meta",
                                                  "windows-1252-none"}
    non_ascii = 0
    for doc, truth in legacy:
        page = render_page(CONFIG, truth["page_id"])
        for sentence in page.article_sentences:
            if not sentence.isascii():
                non_ascii += 1
                assert sentence in doc["text"]
        assert "\ufffd" not in doc["text"] and "Ã" not in doc["text"]
    assert non_ascii > 20


def test_ingest_is_deterministic(crawl):
    name, data, _, table, stats = crawl[0]
    again, stats_again = ingest_file(io.BytesIO(data), name)
    assert again.equals(table) and stats_again == stats


# ------------------------------------------------------------------------------ WARC bad input

def test_truncated_warc_gz_keeps_the_documents_before_the_break(crawl):
    name, data, rows, table, _ = crawl[0]
    doc_rows = [r for r in rows if r["is_document"]]
    broken = doc_rows[len(doc_rows) // 2]
    record_end = next((r["record_offset"] for r in rows if r["record_offset"] > broken["record_offset"]),
                      len(data))
    cut = (broken["record_offset"] + record_end) // 2  # the middle of a page record
    partial, stats = ingest_file(io.BytesIO(data[:cut]), name)
    expected_offsets = [r["record_offset"] for r in doc_rows if r["record_offset"] < broken["record_offset"]]
    assert partial.column("source_offset").to_pylist() == expected_offsets
    assert stats.skipped.get("truncated") == 1
    assert partial.slice(0, 5).equals(table.slice(0, 5))


def test_truncation_anywhere_keeps_exactly_the_complete_documents_and_counts_it_once():
    config = SyntheticCrawlConfig(seed=12, num_files=1, pages_per_file=30)
    buffer = io.BytesIO()
    rows = write_warc_file(buffer, config, 0)
    data = buffer.getvalue()
    starts = [r["record_offset"] for r in rows]
    ends = starts[1:] + [len(data)]
    cuts = [c for c in range(37, len(data), len(data) // 60)
            if not any(e - 12 <= c <= e for e in ends)]  # not inside a gzip member's trailer
    assert len(cuts) > 40
    for cut in cuts:
        table, stats = ingest_file(io.BytesIO(data[:cut]), "cut.warc.gz")
        complete = [s for s, e, r in zip(starts, ends, rows) if e <= cut and r["is_document"]]
        assert table.column("source_offset").to_pylist() == complete, cut
        assert stats.skipped.get("truncated") == 1, cut
    raw = gzip.decompress(data)
    for cut in range(101, len(raw), len(raw) // 40):
        table, stats = ingest_file(io.BytesIO(raw[:cut]), "cut.warc")
        assert table.num_rows <= len(rows) and stats.skipped.get("truncated", 0) <= 1
        if not raw[:cut].endswith(b"\r\n"):  # not at a record's closing blank lines
            assert stats.skipped.get("truncated") == 1, cut


def make_warc(records: list[tuple[str, str, bytes]], gzip_records: bool = True) -> bytes:
    """A WARC of HTTP 200 responses: (url, Content-Type, body) each."""
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=gzip_records)
    for url, content_type, body in records:
        http = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body),
                                                      length=len(body), http_headers=http))
    return buffer.getvalue()


ARTICLE_DE = ("<html><body><nav><a href='/'>Startseite</a></nav><article><h1>Die Brücke</h1>"
              "<p>Der Stadtrat präsentiert die Ergebnisse der Studie über die alte Brücke am Fluss, "
              "und die Anwohner begrüßen die schnelle Entscheidung für eine gründliche Renovierung.</p>"
              "<p>Während des Sommers bleibt die Straße gesperrt, teilte die Behörde am Montag mit.</p>"
              "</article><footer>Impressum</footer></body></html>")


def test_non_utf8_html_without_any_charset_label_is_decoded():
    data = make_warc([("http://www.zeitung.de/a", "text/html", ARTICLE_DE.encode("iso-8859-1"))],
                     gzip_records=False)
    table, stats = ingest_file(io.BytesIO(data), "plain.warc")
    assert stats.docs_out == 1
    text = table.column("text")[0].as_py()
    assert "präsentiert" in text and "begrüßen" in text
    assert table.column("lang")[0].as_py() == "de"
    assert table.column("domain")[0].as_py() == "zeitung.de"


def test_binary_junk_served_as_html_is_a_decode_error_and_empty_pages_are_counted():
    junk = bytes(range(256)) * 40
    data = make_warc([("http://a.com/junk", "text/html", junk),
                      ("http://a.com/empty", "text/html; charset=utf-8", b"<html><body>  </body></html>"),
                      ("http://a.com/ok", "text/html", ARTICLE_DE.encode("utf-8")),
                      ("http://a.com/sniffed", "", ARTICLE_DE.encode("utf-8")),
                      ("http://a.com/data.bin", "", b"\x00\x01\x02\x03" * 100)])
    table, stats = ingest_file(io.BytesIO(data), "mixed.warc.gz")
    assert table.column("url").to_pylist() == ["http://a.com/ok", "http://a.com/sniffed"]
    assert stats.skipped == {"decode_error": 1, "empty_text": 1, "non_html": 1}


def test_wet_conversion_records_keep_their_text_as_is():
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True)
    text = "Ceci est un texte extrait.\nIl garde ses lignes telles quelles, avec des accents : é, à, ç."
    writer.write_record(writer.create_warc_record("", "warcinfo", payload=io.BytesIO(b"x: y\r\n"), length=6))
    writer.write_record(writer.create_warc_record(
        "https://www.exemple.fr/page", "conversion", payload=io.BytesIO(text.encode()),
        length=len(text.encode()), warc_content_type="text/plain"))
    table, stats = ingest_file(io.BytesIO(buffer.getvalue()), "CC-MAIN-x.warc.wet.gz")
    assert table.column("text").to_pylist() == [text]
    assert table.column("lang").to_pylist() == ["fr"]
    assert stats.skipped == {"non_response": 1}


def test_single_gzip_member_warc_asks_for_recompression():
    data = make_warc([(f"http://a.com/{i}", "text/html", ARTICLE_DE.encode()) for i in range(3)],
                     gzip_records=False)
    with pytest.raises(SourceFileError, match="warcio recompress"):
        ingest_file(io.BytesIO(gzip.compress(data)), "whole.warc.gz")


def test_oversized_records_are_skipped_and_long_text_is_capped():
    big = ("<html><body><article>" + "<p>" + "Lorem ipsum dolor sit amet. " * 400 + "</p>" * 1
           + "</article></body></html>").encode()
    data = make_warc([("http://a.com/big", "text/html", big)])
    _, stats = ingest_file(io.BytesIO(data), "big.warc.gz", max_record_bytes=1000)
    assert stats.skipped == {"too_large": 1}
    table, stats = ingest_file(io.BytesIO(data), "big.warc.gz", max_chars=500)
    assert stats.truncated_docs == 1 and len(table.column("text")[0].as_py()) <= 500
    assert cap_text("abc\ndef\nghi", 9) == ("abc\ndef", True)
    assert cap_text("short", 9) == ("short", False)


# ----------------------------------------------------------------------------- JSONL / Parquet

JSONL_LINES = [
    json.dumps({"id": "doc-a", "url": "https://WWW.Example.com:8080/x", "text": "The city council approved the budget on Monday evening after a long meeting."}).encode(),
    b"",                                                             # blank: not a record
    json.dumps({"text": "Der Stadtrat genehmigt den Haushalt nach einer langen Sitzung im Rathaus."}).encode(),
    b"{not json",                                                    # bad_json
    b"[1, 2, 3]",                                                    # bad_json (not an object)
    b'{"text": "caf\xe9 au lait sans utf-8"}',                      # decode_error
    json.dumps({"id": 17, "body": "no text field"}).encode(),       # missing_text
    json.dumps({"text": None}).encode(),                             # missing_text
    json.dumps({"text": "   "}).encode(),                            # empty_text
    b'{"id": 5, "text": "El ayuntamiento aprueba el presupuesto en la plaza mayor \\ud800 hoy."}',
]
JSONL_SKIPS = {"bad_json": 2, "decode_error": 1, "missing_text": 2, "empty_text": 1}


@pytest.mark.parametrize("name,compress", [("docs.jsonl", False), ("docs.jsonl.gz", True),
                                           ("no-extension", False)])
def test_jsonl_rows_and_counted_skips(name, compress):
    data = b"\n".join(JSONL_LINES) + b"\n"
    table, stats = ingest_file(io.BytesIO(gzip.compress(data) if compress else data), name)
    rows = table.to_pylist()
    assert [r["source_offset"] for r in rows] == [0, 2, 9]
    assert rows[0]["id"] == "doc-a" and rows[0]["domain"] == "example.com"
    assert rows[1]["id"] == document_id(name, 2) and rows[1]["url"] is None and rows[1]["domain"] is None
    assert rows[2]["id"] == "5" and "\ufffd" in rows[2]["text"]       # lone surrogate made encodable
    assert [r["lang"] for r in rows] == ["en", "de", "es"]
    assert stats.skipped == JSONL_SKIPS
    assert stats.records_read == 9 and stats.docs_out == 3


def test_truncated_jsonl_gz_keeps_the_lines_before_the_break():
    lines = [json.dumps({"text": f"Line number {i} of a long file about the harbour festival."}) for i in range(2000)]
    data = gzip.compress("\n".join(lines).encode())
    table, stats = ingest_file(io.BytesIO(data[: len(data) // 2]), "cut.jsonl.gz")
    assert 0 < table.num_rows < 2000
    assert table.column("source_offset").to_pylist() == list(range(table.num_rows))
    assert stats.skipped == {"truncated": 1}


def test_parquet_rows_with_and_without_optional_columns(tmp_path):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "text": ["The museum presented the exhibition.", None, ""],
                             "extra": ["a", "b", "c"]}), path)
    with open(path, "rb") as f:
        table, stats = ingest_file(f, "docs.parquet")
    assert table.to_pylist()[0]["id"] == "1" and table.column("source_offset").to_pylist() == [0]
    assert table.column("url").to_pylist() == [None]
    assert stats.skipped == {"missing_text": 1, "empty_text": 1} and stats.records_read == 3


def test_parquet_without_text_column_is_a_source_error(tmp_path):
    path = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"content": ["x"]}), path)
    with open(path, "rb") as f, pytest.raises(SourceFileError, match="wrong.parquet.*'text'"):
        ingest_file(f, "wrong.parquet")


@pytest.mark.parametrize("name", ["random.parquet", "random.warc.gz", "random.bin"])
def test_random_bytes_raise_a_source_error_naming_the_file(name):
    data = os.urandom(3000)
    data = b"\x00" + data[1:]  # never a gzip / WARC / PAR1 / JSON start by accident
    with pytest.raises(SourceFileError) as error:
        ingest_file(io.BytesIO(data), name)
    assert name in str(error.value) and "--source" in str(error.value)
    assert isinstance(error.value, ValueError)


def test_corrupt_parquet_with_valid_magic_is_a_source_error():
    with pytest.raises(SourceFileError, match="broken.parquet"):
        ingest_file(io.BytesIO(b"PAR1" + b"\x00" * 100 + b"PAR1"), "broken.parquet")


@pytest.mark.parametrize("name,data", [("empty.warc.gz", b""), ("empty.jsonl", b""),
                                       ("empty.jsonl.gz", gzip.compress(b"")), ("empty.parquet", b"")])
def test_empty_file_gives_zero_rows_with_the_full_schema(name, data):
    table, stats = ingest_file(io.BytesIO(data), name)
    assert table.num_rows == 0 and table.schema == DOC_SCHEMA
    assert stats.skipped == {"empty_file": 1}


def test_format_detection_and_stats_helpers():
    assert detect_format(io.BytesIO(b"WARC/1.1\r\n"), "x.bin") == "warc"
    assert detect_format(io.BytesIO(b'{"text": "a"}\n'), "x.txt") == "jsonl"
    assert detect_format(io.BytesIO(gzip.compress(b"WARC/1.0\r\n")), "x") == "warc"
    assert url_domain("https://WWW.Example.COM:443/a") == "example.com"
    assert url_domain("http://[::1") is None and url_domain(None) is None
    a = IngestStats(records_read=3, docs_out=2, skipped={"bad_json": 1})
    b = IngestStats(records_read=2, docs_out=1, truncated_docs=1, skipped={"bad_json": 1, "truncated": 1})
    assert a.merge(b).as_dict() == {"records_read": 5, "docs_out": 3, "truncated_docs": 1,
                                    "skipped": {"bad_json": 2, "truncated": 1}}
    with pytest.raises(KeyError):
        a.skip("no_such_reason")
    stats = IngestStats()
    assert list(iter_documents(io.BytesIO(b""), "e.jsonl", stats)) == [] and stats.skipped == {"empty_file": 1}


# ------------------------------------------------------------------ WARC framing (issue 19)

def _records(n: int = 10) -> list[bytes]:
    """n uncompressed WARC response records (one article each), as separate byte strings."""
    out = []
    for i in range(n):
        body = ARTICLE_DE.replace("Die Brücke", f"Die Brücke Nummer {i}").encode()
        out.append(make_warc([(f"http://zeitung.de/{i}", "text/html; charset=utf-8", body)],
                             gzip_records=False))
    return out


def _with_length_delta(record: bytes, delta: int) -> bytes:
    head, sep, rest = record.partition(b"\r\n\r\n")
    lines = [(b"Content-Length: %d" % (int(l.split(b":")[1]) + delta)) if l.lower().startswith(b"content-length")
             else l for l in head.split(b"\r\n")]
    return b"\r\n".join(lines) + sep + rest


@pytest.mark.parametrize("compress", [False, True], ids=["warc", "warc.gz"])
@pytest.mark.parametrize("delta", [5000, 40, -300, -1])
def test_bad_content_length_mid_file_is_counted_and_every_other_record_kept(compress, delta):
    records = _records(10)
    good, _ = ingest_file(io.BytesIO(b"".join(records)), "good.warc")
    assert good.num_rows == 10
    records[3] = _with_length_delta(records[3], delta)
    pack = (lambda r: gzip.compress(r, mtime=0)) if compress else (lambda r: r)
    data = b"".join(pack(r) for r in records)
    table, stats = ingest_file(io.BytesIO(data), "bad.warc.gz" if compress else "bad.warc")
    assert stats.skipped == {"bad_framing": 1}, stats
    assert stats.bad_framing_at == [f"{'bad.warc.gz' if compress else 'bad.warc'}@{len(b''.join(pack(r) for r in records[:3]))}"]
    texts = table.column("text").to_pylist()
    assert len(texts) == 9
    assert [t for t in good.column("text").to_pylist() if "Nummer 3" not in t] == texts
    assert not any("WARC/1." in t or "WARC-Type" in t for t in texts)


def test_bad_content_length_on_the_last_record_of_a_plain_warc():
    records = _records(4)
    records[-1] = _with_length_delta(records[-1], -50)
    table, stats = ingest_file(io.BytesIO(b"".join(records)), "last.warc")
    assert table.num_rows == 3 and stats.skipped == {"bad_framing": 1}


def test_corrupt_gzip_member_mid_file_resumes_at_the_next_member():
    members = [gzip.compress(r, mtime=0) for r in _records(6)]
    broken = bytearray(members[2])
    broken[len(broken) // 2] ^= 0xFF
    members[2] = bytes(broken)
    table, stats = ingest_file(io.BytesIO(b"".join(members)), "c.warc.gz")
    assert table.num_rows == 5 and stats.skipped == {"bad_framing": 1}, stats


# ------------------------------------------------------------------ extractor choice (issue 21)

def test_extractor_is_chosen_per_ingest_and_an_unknown_one_is_a_clear_error():
    page = ("<html><body><article><h1>Die Brücke</h1><p>Der Stadtrat präsentiert die Ergebnisse "
            "der Studie über die alte Brücke am Fluss, und die Anwohner begrüßen die Entscheidung.</p>"
            "<p>Während des Sommers bleibt die Straße gesperrt, teilte die Behörde am Montag mit.</p>"
            "<p>Die Arbeiten beginnen im Frühjahr und sollen nach achtzehn Monaten abgeschlossen "
            "sein, sagte die Bürgermeisterin bei der Vorstellung der Pläne im Rathaus.</p>"
            "<h3>Mehr zum Thema</h3><p>Zehn Ausflugsziele für das Wochenende rund um die Stadt, die "
            "Sie kennen sollten …</p></article></body></html>").encode()
    data = make_warc([("http://zeitung.de/a", "text/html; charset=utf-8", page)], gzip_records=False)
    texts = {name: ingest_file(io.BytesIO(data), "a.warc", extractor=name)[0].column("text")[0].as_py()
             for name in ("hybrid", "resiliparse")}
    assert "Mehr zum Thema" in texts["resiliparse"] and "Mehr zum Thema" not in texts["hybrid"]
    assert texts["hybrid"].split() == texts["resiliparse"].split()[:len(texts["hybrid"].split())]
    with pytest.raises(ValueError, match="unknown extractor 'nope'"):
        ingest_file(io.BytesIO(data), "a.warc", extractor="nope")
    from deeprecipe.pipeline.task import ParameterError
    from deeprecipe.workflows.data import CrawlIngest
    with pytest.raises(ParameterError, match="--CrawlIngest-extractor must be one of hybrid"):
        CrawlIngest(extractor="nope").stage_params
    assert CrawlIngest().stage_params["extractor"] == "hybrid"  # the profile's value
