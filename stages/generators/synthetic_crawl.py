"""A generated web crawl written as real WARC.gz: the built-in default source, and a labelled
benchmark for the data-curation stages.

Every page is a pure function of ``(config, page_id)`` and is assembled from parts (one function
each: article, navigation, cookie banner, sidebar, footer, HTML shell, encoding). Each WARC file
holds ``pages_per_file`` HTML page responses, of which some are exact duplicates (the same bytes
under another URL of the same site) or URL variants (the same page under a URL that
``url_dedup.normalize_url`` folds to the canonical one), plus records that ingest must skip: a
``warcinfo`` record first, ``request`` and ``metadata`` records, a 404, a 301 redirect, a PNG
image and a CSS stylesheet. Output is byte-identical for the same config (no wall clock, no
random UUIDs: dates and record ids derive from the seed).

This module plans each file's slots into WARC records and writes them; the pages come from
``crawl_pages`` (slot roles, role contents, ``render_page``), built from ``crawl_page_parts``
(one function per page part) and ``crawl_languages`` (the language packs); ``crawl_spec``
holds the sites, ``SyntheticCrawlConfig`` and the label columns.

Labelled pages. A share of the original page slots of every file carries a labelled document
from the ``stages.generators.labelled_*`` generators as its article body (counts per file =
``rate * pages_per_file``, rounded; see ``SyntheticCrawlConfig``):

* ``near_dup`` / ``far_pair``: pairs of pages at a measured word-5-gram Jaccard of their article
  text (J >= 0.9, 0.6-0.9, and <= 0.5). The first page of a pair lives in file f, the second in
  file f+1 (mod ``num_files``) on another site of the same language: dedup has to be global.
* ``spam:<kind>``: the ``labelled_pages.SPAM_GENERATORS`` kinds in turn, on spam sites.
* ``pii``: news articles with planted PII and PII look-alikes (each in parentheses in a natural
  sentence of the site).
* ``code`` (on code sites, in ``<pre><code>``) and ``math`` (on ``math_domains`` dedicated math
  sites, one URL section each, so a URL-prefix loop can find them).
* ``boilerplate``: news articles carrying 1-2 of ``boilerplate_pool`` cross-site notices (in the
  site's language).
* ``contaminated``: English news articles with one of ``eval_items(seed, eval_pool)`` as a paragraph.

Every labelled page but spam, code and math is a news article of its site written with the
site's language pack and sentence generator (as natural pages are), plus its planted items, so
a stage sees realistic input (e.g. the reference LM's perplexity of a PII page differs from a
natural page's only through the planted strings).

All other pages are ``natural`` news articles (>= 60 % of the documents). Duplicates and URL
variants only copy natural pages, so every labelled document occurs exactly once. Ground truth:
``write_warc_file`` returns one row per record with the labels (``GROUND_TRUTH_SCHEMA``);
``ground_truth_table(config)`` collects them for the whole crawl.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import uuid
from datetime import datetime, timedelta, timezone
from io import BytesIO
from typing import BinaryIO

import pyarrow as pa
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from deeprecipe.stages.generators.crawl_pages import (encode_page, render_page, slot_kind, slot_page_id,
                                                      source_page_id)
from deeprecipe.stages.generators.crawl_spec import (LABEL_DEFAULTS, NON_DOCUMENT_KINDS, SITES, URL_VARIANT_KINDS,
                                                     SyntheticCrawlConfig, seeded_rng)

# A valid 1x1 transparent PNG (the bytes of a real image response).
_PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63600000000200015e2d2a2a0000000049454e44ae426082")


# ------------------------------------------------------------------------------- URL variants

def exact_duplicate_url(url: str, rng: random.Random) -> str:
    """Another URL of the same site serving the same bytes (AMP / print mirror): a distinct page key."""
    scheme, rest = url.split("://", 1)
    host, _, path = rest.partition("/")
    if rng.random() < 0.5:
        return f"{scheme}://{host}/amp/{path}"
    return url + ("&" if "?" in url else "?") + "output=print"


def url_variant(url: str, kind: str, rng: random.Random) -> str:
    """A URL that names the same page as ``url`` (see ``URL_VARIANT_KINDS``)."""
    scheme, rest = url.split("://", 1)
    host, slash, path_query = rest.partition("/")
    path_query = slash + path_query
    path, qmark, query = path_query.partition("?")
    if kind == "scheme":
        scheme = "http" if scheme == "https" else "https"
    elif kind == "host_case":
        mixed = "".join(c.upper() if rng.random() < 0.5 else c for c in host)
        host = mixed if mixed != host else host.upper()
    elif kind == "default_port":
        host += ":443" if scheme == "https" else ":80"
    elif kind == "trailing_slash":
        path = path[:-1] if path.endswith("/") and len(path) > 1 else path + "/"
    elif kind == "fragment":
        query += "#" + rng.choice(("comments", "section-2", "top", "share"))
    elif kind == "tracking_params":
        tracking = rng.choice(("utm_source=newsletter&utm_medium=email&utm_campaign=weekly",
                               f"fbclid=IwAR{rng.getrandbits(48):012x}",
                               f"gclid=Cj0K{rng.getrandbits(40):010x}",
                               "utm_source=twitter", f"_ga=2.{rng.getrandbits(24)}.{rng.getrandbits(24)}"))
        query = f"{tracking}&{query}" if query and rng.random() < 0.5 else (
            f"{query}&{tracking}" if query else tracking)
    elif kind == "param_order":
        params = query.split("&") if query else []
        if len(params) < 2:
            return url_variant(url, "tracking_params", rng)
        query = "&".join(reversed(params))
    elif kind == "percent_encoding":
        # encode unreserved '-' as %2D and lower-case existing escapes: same resource per RFC 3986
        path = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), path)
        path = path.replace("-", "%2D", 1) if "-" in path else path.replace(".", "%2E", 1)
    elif kind == "combined":
        # scheme before default_port (the port must be the final scheme's default); fragment last
        order = ("scheme", "host_case", "default_port", "tracking_params", "fragment")
        out = url
        for sub in sorted(rng.sample(order, 3), key=order.index):
            out = url_variant(out, sub, rng)
        return out
    else:
        raise ValueError(f"unknown URL variant kind {kind!r}")
    return f"{scheme}://{host}{path}" + (f"?{query}" if query and not query.startswith("#") else query)



# ---------------------------------------------------------------------------------- writing

class _CountingWriter:
    """Wraps a binary file object and counts bytes written (for record offsets)."""

    def __init__(self, out: BinaryIO):
        self.out, self.position = out, 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.position += len(data)
        return len(data)

    def flush(self):
        self.out.flush()


def _warc_date(config: SyntheticCrawlConfig, file_index: int, record_index: int) -> str:
    base = datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(days=config.seed % 365)
    return (base + timedelta(hours=file_index, seconds=record_index)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record_id(config: SyntheticCrawlConfig, file_index: int, record_index: int) -> str:
    digest = hashlib.sha1(f"{config.seed}/{file_index}/{record_index}".encode()).digest()[:16]
    return f"<urn:uuid:{uuid.UUID(bytes=digest, version=4)}>"


def warc_file_name(config: SyntheticCrawlConfig, file_index: int) -> str:
    return f"synthetic-crawl-s{config.seed}-{file_index:05d}.warc.gz"


def write_warc_file(fileobj: BinaryIO, config: SyntheticCrawlConfig, file_index: int) -> list[dict]:
    """Write WARC file ``file_index`` (gzip per record) to ``fileobj``; return one ground-truth row
    per record (columns and types: ``GROUND_TRUTH_SCHEMA``): ``record_index, record_offset``
    (bytes into the file), ``record_type, url, canonical_url, site, lang, kind`` ('original' |
    'exact_dup' | 'url_variant' | a key of ``NON_DOCUMENT_KINDS``), ``variant`` (URL variant kind
    or ''), ``page_id`` (-1 if none), ``is_document``, ``skip_reason`` ('' for documents),
    ``charset``, ``file_index``, and the label columns of ``LABEL_DEFAULTS`` (a duplicate or URL
    variant carries the labels of the natural page it copies)."""
    if not 0 <= file_index < config.num_files:
        raise ValueError(f"file_index {file_index} outside 0..{config.num_files - 1}")
    out = _CountingWriter(fileobj)
    writer = WARCWriter(out, gzip=True)
    rows: list[dict] = []
    plan_rng = seeded_rng(config, "file", file_index)
    extra_at = {}
    for kind in config.non_document_records:
        extra_at.setdefault(plan_rng.randrange(config.pages_per_file), []).append(kind)

    def emit(record, row):
        row.update(record_index=len(rows), record_offset=out.position)
        writer.write_record(record)
        rows.append(row)

    def headers(extra=None):
        index = len(rows)
        h = {"WARC-Record-ID": _record_id(config, file_index, index),
             "WARC-Date": _warc_date(config, file_index, index)}
        h.update(extra or {})
        return h

    def http_response(status: str, content_type: str, body: bytes, extra=()):
        date = _warc_date(config, file_index, len(rows))
        return StatusAndHeaders(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                                         ("Date", date), ("Server", "nginx"), *extra], protocol="HTTP/1.1")

    # the module's name before it moved into stages/generators/: kept, so the files keep their bytes
    # the module's name before it moved into stages/generators/: kept, so the files keep their bytes
    info = (f"software: deeprecipe.stages.synthetic_crawl\r\nformat: WARC File Format 1.1\r\n"
            f"seed: {config.seed}\r\nfile_index: {file_index}\r\n").encode()
    emit(writer.create_warc_record("", "warcinfo", payload=BytesIO(info), length=len(info),
                                   warc_content_type="application/warc-fields",
                                   warc_headers_dict=headers({"WARC-Filename": warc_file_name(config, file_index)})),
         _ground_row(kind="warcinfo", record_type="warcinfo", file_index=file_index))

    for slot in range(config.pages_per_file):
        for kind in extra_at.get(slot, ()):
            record, row = _non_document_record(writer, kind, config, file_index, slot, headers, http_response)
            emit(record, {**row, "file_index": file_index})
        kind = slot_kind(config, file_index, slot)
        rng = seeded_rng(config, "url", file_index, slot)
        variant = ""
        if kind == "original":
            page = render_page(config, slot_page_id(config, file_index, slot))
            url = canon = page.url
        else:
            page = render_page(config, source_page_id(config, file_index, slot))
            if kind == "exact_dup":
                url = canon = exact_duplicate_url(page.url, rng)
            else:
                choices = [k for k in URL_VARIANT_KINDS if k != "param_order" or "&" in page.url]
                variant = rng.choice(choices)
                url, canon = url_variant(page.url, variant, rng), page.url
        if rng.random() < config.request_record_rate:
            emit(_request_record(writer, url, headers), _ground_row(kind="request", record_type="request",
                                                                    url=url, file_index=file_index))
        body, content_type = encode_page(page)
        record = writer.create_warc_record(url, "response", payload=BytesIO(body), length=len(body),
                                           warc_headers_dict=headers(),
                                           http_headers=http_response("200 OK", content_type, body))
        emit(record, _ground_row(kind=kind, record_type="response", url=url, canonical_url=canon,
                                 site=page.site.host, lang=page.site.lang, variant=variant,
                                 page_id=page.page_id, charset=page.charset, file_index=file_index,
                                 labels=page.labels))
    return rows


def _ground_row(kind: str, record_type: str, url: str = "", canonical_url: str = "", site: str = "",
                lang: str = "", variant: str = "", page_id: int = -1, charset: str = "",
                file_index: int = -1, labels: dict | None = None) -> dict:
    is_document = kind in ("original", "exact_dup", "url_variant")
    return {"record_type": record_type, "url": url, "canonical_url": canonical_url, "site": site,
            "lang": lang, "kind": kind, "variant": variant, "page_id": page_id,
            "is_document": is_document, "skip_reason": "" if is_document else NON_DOCUMENT_KINDS[kind],
            "charset": charset, "file_index": file_index, **(labels or LABEL_DEFAULTS)}


def _request_record(writer: WARCWriter, url: str, headers) -> object:
    path = "/" + url.split("://", 1)[1].partition("/")[2]
    host = url.split("://", 1)[1].partition("/")[0]
    http = StatusAndHeaders(f"GET {path} HTTP/1.1", [("Host", host), ("User-Agent", "deeprecipe-synthetic/1.0"),
                                                     ("Accept", "text/html")], is_http_request=True)
    return writer.create_warc_record(url, "request", warc_headers_dict=headers(), http_headers=http)


def _non_document_record(writer, kind, config, file_index, slot, headers, http_response):
    site = SITES[seeded_rng(config, "extra", file_index, slot, kind).randrange(config.num_sites)]
    base = f"{site.scheme}://{site.host}"
    if kind == "request":
        url = f"{base}/"
        return _request_record(writer, url, headers), _ground_row(kind, "request", url=url)
    if kind == "metadata":
        url = f"{base}/"
        payload = b"fetchTimeMs: 112\r\noutlinks: 24\r\n"
        rec = writer.create_warc_record(url, "metadata", payload=BytesIO(payload), length=len(payload),
                                        warc_content_type="application/warc-fields",
                                        warc_headers_dict=headers())
        return rec, _ground_row(kind, "metadata", url=url)
    if kind == "http_404":
        url, status, ctype = f"{base}/missing-page-{file_index}-{slot}", "404 Not Found", "text/html; charset=UTF-8"
        body, extra = b"<html><body><h1>404 Not Found</h1><p>The page does not exist.</p></body></html>", ()
    elif kind == "redirect":
        url, status, ctype = f"{base}/old/{file_index}-{slot}", "301 Moved Permanently", "text/html"
        body, extra = b"", (("Location", f"{base}/"),)
    elif kind == "image":
        url, status, ctype, body, extra = f"{base}/img/logo-{file_index}.png", "200 OK", "image/png", _PNG_1X1, ()
    elif kind == "stylesheet":
        url, status, ctype = f"{base}/css/site-{file_index}.css", "200 OK", "text/css"
        body, extra = b"body{margin:0;font-family:sans-serif}nav ul{list-style:none}", ()
    else:
        raise ValueError(kind)
    rec = writer.create_warc_record(url, "response", payload=BytesIO(body), length=len(body),
                                    warc_headers_dict=headers(),
                                    http_headers=http_response(status, ctype, body, extra))
    return rec, _ground_row(kind, "response", url=url)


def write_crawl(folder: str, config: SyntheticCrawlConfig) -> list[str]:
    """Write all ``config.num_files`` WARC files into a local folder; return their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(config.num_files):
        path = os.path.join(folder, warc_file_name(config, i))
        with open(path, "wb") as f:
            write_warc_file(f, config, i)
        paths.append(path)
    return paths


GROUND_TRUTH_SCHEMA = pa.schema([
    ("record_type", pa.string()), ("url", pa.string()), ("canonical_url", pa.string()),
    ("site", pa.string()), ("lang", pa.string()), ("kind", pa.string()), ("variant", pa.string()),
    ("page_id", pa.int64()), ("is_document", pa.bool_()), ("skip_reason", pa.string()),
    ("charset", pa.string()), ("file_index", pa.int64()),
    ("label", pa.string()), ("pair_id", pa.int64()), ("pair_member", pa.int64()),
    ("jaccard", pa.float64()), ("pii_items", pa.string()), ("lookalikes", pa.string()),
    ("eval_item", pa.int64()), ("boilerplate_items", pa.string()),
    ("record_index", pa.int64()), ("record_offset", pa.int64()),
])


class _NullSink:
    """A binary sink that only counts bytes (ground truth without keeping the WARC bytes)."""

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self):
        pass


def ground_truth_table(config: SyntheticCrawlConfig) -> pa.Table:
    """Ground-truth rows of every file of the crawl (``GROUND_TRUTH_SCHEMA``), file by file;
    regenerates the pages, so it costs as much as writing the files (not their storage)."""
    rows = [row for i in range(config.num_files) for row in write_warc_file(_NullSink(), config, i)]
    return pa.Table.from_pylist(rows, schema=GROUND_TRUTH_SCHEMA)


def ground_truth(config: SyntheticCrawlConfig):
    """``ground_truth_table`` as a pandas DataFrame, plus ``file_name`` (``warc_file_name``)."""
    frame = ground_truth_table(config).to_pandas()
    return frame.assign(file_name=[warc_file_name(config, i) for i in frame.file_index])
