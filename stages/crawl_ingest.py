"""Crawl ingest: one source file (WARC, WET, JSONL, Parquet) -> documents with main text and language.

Formats are recognised by content (magic bytes, looking through gzip) and, failing that, by
extension:

* WARC / WARC.gz (``warcio``): ``response`` records with a 2xx status and an HTML content type
  become documents (HTML -> main text by ``extractor``, ``stages/html_extract.py``: resiliparse
  with boilerplate-line rules by default); other records are counted by reason.
* WET (a WARC of ``conversion`` records): the text is taken as it is.
* JSONL / JSONL.gz: one JSON object per line, ``text`` required, ``id`` and ``url`` kept.
* Parquet: columns as for JSONL (``text`` required).

Bad input: corrupt records are counted and skipped (see ``SKIP_REASONS``); a file that is no known
format, or that cannot be opened at all, raises ``SourceFileError`` naming the file and the fix.

Text longer than ``max_chars`` characters is cut to ``max_chars`` (at the last line break in its
second half, if any) and counted in ``IngestStats.truncated_docs``: the document is kept, because
its head is usually fine and later quality filters judge it. A WARC payload larger than
``max_record_bytes`` is skipped as ``too_large`` without being parsed (HTML parsing cost grows
with size; Common Crawl already truncates payloads at 1 MiB).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
from resiliparse.parse.encoding import bytes_to_str, detect_encoding, detect_mime, map_encoding_to_html5
from resiliparse.parse.lang import detect_fast
from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.statusandheaders import StatusAndHeadersParserException

from deeprecipe.pipeline.config import option
from deeprecipe.stages import warc_frames
from deeprecipe.stages.warc_frames import SourceFileError
from deeprecipe.stages.html_extract import DEFAULT_EXTRACTOR, EXTRACTORS, html_main_text

DOC_SCHEMA = pa.schema([
    ("id", pa.string()),             # from the input when present, else sha1(source_name:offset)[:16]
    ("url", pa.string()),            # null when the input has none
    ("domain", pa.string()),         # lower-case host without port and leading 'www.'
    ("lang", pa.string()),           # ISO 639-1 code from resiliparse detect_fast, or 'unknown'
    ("text", pa.string()),
    ("source_file", pa.string()),    # source_name as given to ingest
    ("source_offset", pa.int64()),   # WARC: byte offset of the record; JSONL: line index; Parquet: row index (0-based)
])

SKIP_REASONS = {
    "non_response": "WARC record that is not a response/conversion (warcinfo, request, metadata, ...)",
    "http_status": "HTTP status outside 2xx (404, redirects, ...)",
    "non_html": "response whose content type is not HTML",
    "empty_text": "no text left after extraction (or an empty 'text' field)",
    "decode_error": "bytes that do not decode to text",
    "html_parse_error": "HTML the parser rejects",
    "too_large": "WARC payload over max_record_bytes, or JSONL line over max_line_bytes (never read whole)",
    "bad_json": "JSONL line that is not a JSON object",
    "missing_text": "JSONL/Parquet row without a string 'text'",
    "truncated": "file ends (or breaks) inside a record; counted once per file, reading stops there",
    "bad_framing": "WARC record whose Content-Length does not end at its closing CRLF CRLF (or whose "
                   "gzip member is corrupt); reading resumes at the next WARC/1. header or member",
    "empty_file": "file without any record; counted once per file",
}
HTML_MIME_TYPES = frozenset({"text/html", "application/xhtml+xml"})
DEFAULT_MAX_CHARS = 1_000_000
DEFAULT_MAX_RECORD_BYTES = 16 * 2 ** 20
LANG_SAMPLE_CHARS = 10_000      # language id looks at the first 10k characters
MAX_CONTROL_CHAR_FRACTION = 0.05  # decoded HTML with more C0 controls than this is binary junk
_JUNK_CHARS = re.compile("[\x00-\x08\x0b\x0e-\x1f\ufffd]")  # C0 controls but tab/LF/FF/CR; U+FFFD

_WARC_EXTENSIONS = (".warc", ".warc.gz", ".wet", ".wet.gz", ".warc.wet", ".warc.wet.gz")
_JSONL_EXTENSIONS = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".json.gz")
_PARQUET_EXTENSIONS = (".parquet", ".pq")


@dataclass(frozen=True)
class CrawlIngestConfig:
    files_per_shard: int = option("source files per ingest work unit (a Luigi task each)")
    max_chars: int = option("characters kept per document; longer text is cut there and counted")
    extractor: str = option("HTML main-text extractor, one of stages/html_extract.py's "
                            "EXTRACTORS", DEFAULT_EXTRACTOR)

    def __post_init__(self):
        if self.extractor not in EXTRACTORS:
            raise ValueError(f"--CrawlIngest-extractor must be one of {', '.join(EXTRACTORS)}, "
                             f"got {self.extractor!r}")


class EmptyCorpusError(ValueError):
    """No document survived ingest: nothing downstream can run."""
    permanent = True


DEFAULT_MAX_LINE_BYTES = 64 * 2 ** 20  # a JSONL line longer than this is skipped as too_large
BATCH_ROWS = 2048
BATCH_CHARS = 64 * 2 ** 20


@dataclass
class IngestStats:
    """Counters of one or more ingested files. ``records_read`` counts WARC records / non-blank
    JSONL lines / Parquet rows; ``skipped`` maps a ``SKIP_REASONS`` key to a count;
    ``truncated_docs`` counts kept documents whose text was cut to ``max_chars``."""
    records_read: int = 0
    docs_out: int = 0
    truncated_docs: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    bad_framing_at: list[str] = field(default_factory=list)  # "file@offset" of each bad_framing

    def skip(self, reason: str, count: int = 1) -> None:
        if reason not in SKIP_REASONS:
            raise KeyError(f"unknown skip reason {reason!r}")
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def merge(self, other: "IngestStats") -> "IngestStats":
        """A new IngestStats holding the sums of ``self`` and ``other``."""
        skipped = dict(self.skipped)
        for reason, count in other.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + count
        return IngestStats(self.records_read + other.records_read, self.docs_out + other.docs_out,
                           self.truncated_docs + other.truncated_docs, skipped,
                           self.bad_framing_at + other.bad_framing_at)

    def as_dict(self) -> dict:
        out = {"records_read": self.records_read, "docs_out": self.docs_out,
               "truncated_docs": self.truncated_docs, "skipped": dict(sorted(self.skipped.items()))}
        if self.bad_framing_at:
            out["bad_framing_at"] = self.bad_framing_at[:100]
        return out


# ------------------------------------------------------------------------------ small helpers

def document_id(source_name: str, offset: int) -> str:
    """Deterministic id of the record at ``offset`` of ``source_name``: 16 hex digits of sha1.
    Pass a location-independent ``source_name`` (e.g. the path relative to the source root)."""
    return hashlib.sha1(f"{source_name}:{offset}".encode("utf-8", "surrogatepass")).hexdigest()[:16]


def url_domain(url: str | None) -> str | None:
    """Lower-case host of ``url`` without port and leading ``www.``; None if it has none."""
    if not url:
        return None
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    if not host:
        return None
    host = host.rstrip(".")
    return host[4:] if host.startswith("www.") else host


def detect_language(text: str) -> str:
    """ISO 639-1 code of ``text`` (first ``LANG_SAMPLE_CHARS`` characters, NFC) by resiliparse's
    ``detect_fast``; 'unknown' when no profile is within its default rank cutoff."""
    lang, _rank = detect_fast(unicodedata.normalize("NFC", text[:LANG_SAMPLE_CHARS]))
    return lang


def cap_text(text: str, max_chars: int) -> tuple[str, bool]:
    """(text cut to at most ``max_chars`` characters, whether it was cut). Cuts at the last line
    break in the second half of the limit when there is one, so lines stay whole."""
    if len(text) <= max_chars:
        return text, False
    head = text[:max_chars]
    newline = head.rfind("\n")
    return (head[:newline] if newline >= max_chars // 2 else head).rstrip(), True


def _clean_str(value: str) -> str:
    """``value`` made encodable as UTF-8 (lone surrogates from JSON escapes become U+FFFD)."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def decode_html(body: bytes, http_charset: str | None) -> str | None:
    """HTML bytes -> str: the HTTP charset if it names a known encoding, else the ``<meta>``
    charset, else uchardet's guess (resiliparse), with UTF-8 / windows-1252 fallbacks. None when
    the result is binary junk (over ``MAX_CONTROL_CHAR_FRACTION`` C0 control or replacement
    characters in its first 64 Ki characters)."""
    encoding = map_encoding_to_html5(http_charset, fallback_utf8=False) if http_charset else None
    if not encoding:
        encoding = detect_encoding(body, from_html_meta=True)
    text = bytes_to_str(body, encoding, errors="replace")
    sample = text[:65536]
    if sample and len(_JUNK_CHARS.findall(sample)) > MAX_CONTROL_CHAR_FRACTION * len(sample):
        return None
    return text


_HTML_SNIFF_PREFIXES = (b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<title",
                        b"<div", b"<p", b"<!--")  # a subset of the WHATWG MIME-sniffing HTML patterns


def _sniffs_as_html(body: bytes) -> bool:
    """Whether a payload without Content-Type is HTML (resiliparse ``detect_mime``, which knows
    only a doctype start, or a leading HTML tag)."""
    return (detect_mime(body) == "text/html"
            or body[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith(_HTML_SNIFF_PREFIXES))


def _content_type(http_headers) -> tuple[str, str | None]:
    """(mime type, charset or None) from an HTTP Content-Type header value."""
    value = http_headers.get_header("Content-Type") or ""
    mime, *params = [p.strip() for p in value.split(";")]
    charset = None
    for param in params:
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset":
            charset = val.strip().strip("\"'") or None
    return mime.lower(), charset


def _document(source_name: str, offset: int, url: str | None, text: str, doc_id: str | None,
              max_chars: int, stats: IngestStats) -> dict:
    text, was_cut = cap_text(text, max_chars)
    stats.truncated_docs += was_cut
    stats.docs_out += 1
    url = _clean_str(url) if url else None
    return {"id": doc_id if doc_id is not None else document_id(source_name, offset), "url": url,
            "domain": url_domain(url), "lang": detect_language(text), "text": text,
            "source_file": source_name, "source_offset": offset}


# -------------------------------------------------------------------------- format detection

def _peek(fileobj: BinaryIO, size: int) -> bytes:
    position = fileobj.tell()
    try:
        return fileobj.read(size)
    finally:
        fileobj.seek(position)


def _sniff(head: bytes) -> str | None:
    if head.startswith(b"WARC/"):
        return "warc"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return "jsonl"
    return None


def detect_format(fileobj: BinaryIO, source_name: str) -> str:
    """'warc' | 'jsonl' | 'parquet' | 'empty' for a seekable binary file. Content (magic bytes,
    looking inside gzip) decides; the extension only rescues a ``.jsonl`` whose first line is bad.
    Raises ``SourceFileError`` otherwise."""
    head = _peek(fileobj, 4096)
    if not head:
        return "empty"
    gzipped = head.startswith(b"\x1f\x8b")
    if gzipped:
        decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:  # partial output is fine: a truncated file is still recognised
            head = decompressor.decompress(_peek(fileobj, 1 << 16), 4096)
        except zlib.error as e:
            raise SourceFileError(f"{source_name}: gzip data is corrupt from the start ({e}). "
                                  "Re-download or re-compress the file, or remove it from --source.") from e
        if not head and decompressor.eof:
            return "empty"
    found = _sniff(head)
    if found == "parquet" and gzipped:
        found = None
    if found:
        return found
    name = source_name.lower()
    if name.endswith(_JSONL_EXTENSIONS):
        return "jsonl"
    if gzipped and not head and name.endswith(_WARC_EXTENSIONS):
        return "warc"  # cut inside its first gzip member: the reader counts it as truncated
    expected = ("WARC" if name.endswith(_WARC_EXTENSIONS) else "Parquet" if name.endswith(_PARQUET_EXTENSIONS)
                else None)
    what = f"is named like a {expected} file but its content is not" if expected else "is not a known format"
    raise SourceFileError(
        f"{source_name}: {what} (first bytes {head[:16]!r}). Supported: WARC/WET (.warc, .warc.gz, "
        ".wet.gz), JSONL with a 'text' field (.jsonl, .jsonl.gz) and Parquet with a 'text' column "
        "(.parquet). Convert the file or remove it from --source.")


# ------------------------------------------------------------------------------------ readers

def _warc_record_text(record, max_record_bytes: int,
                      extractor: str = DEFAULT_EXTRACTOR) -> tuple[str | None, str | None]:
    """(text, None) for a record that is a document, else (None, skip reason). Reads the payload
    (at most ``max_record_bytes`` + 1 bytes) only for HTML responses and conversion records."""
    if record.rec_type not in ("response", "conversion"):
        return None, "non_response"
    charset = mime = None
    if record.rec_type == "response":
        if record.http_headers is None:
            return None, "non_html"  # e.g. a DNS or other non-HTTP response
        status = record.http_headers.get_statuscode() or ""
        if not (len(status) == 3 and status.startswith("2")):
            return None, "http_status"
        mime, charset = _content_type(record.http_headers)
        if mime and mime not in HTML_MIME_TYPES:
            return None, "non_html"
    body = record.content_stream().read(max_record_bytes + 1)
    if len(body) > max_record_bytes:
        return None, "too_large"
    if record.rec_type == "conversion":
        text = bytes_to_str(body, "utf-8", errors="replace")
    else:
        if not mime and not _sniffs_as_html(body):
            return None, "non_html"
        html = decode_html(body, charset)
        if html is None:
            return None, "decode_error"
        try:
            text = html_main_text(html, extractor)
        except Exception:  # noqa: BLE001 - resiliparse's HTMLParserException and friends
            return None, "html_parse_error"
    return (text, None) if text.strip() else (None, "empty_text")


def iter_warc_documents(fileobj: BinaryIO, source_name: str, stats: IngestStats,
                        max_chars: int = DEFAULT_MAX_CHARS,
                        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                        extractor: str = DEFAULT_EXTRACTOR) -> Iterator[dict]:
    """Documents of a WARC / WARC.gz / WET file; ``source_offset`` is the record's byte offset
    (of its gzip member for .gz). Every record's framing is checked (its Content-Length must
    end exactly at the closing CRLF CRLF, before the next header or gzip member): a record
    framed badly is counted as ``bad_framing`` (its file and offset kept in
    ``stats.bad_framing_at``) and reading resumes at the next ``WARC/1.`` header or gzip
    member, so every good record is kept. A file that ends inside a record counts
    ``truncated`` once; documents before it are kept."""
    fileobj.seek(0)
    gzipped = fileobj.read(2) == b"\x1f\x8b"
    max_block = max_record_bytes + warc_frames.HEADER_LIMIT  # the block holds the HTTP headers too
    frames = (warc_frames.gzip_frames(fileobj, max_block, source_name) if gzipped
              else warc_frames.plain_frames(fileobj, max_block))
    records_seen = False
    for frame in frames:
        stats.records_read += 1
        if frame.problem == "truncated":
            stats.records_read -= 1
            stats.skip("truncated")
            return
        if frame.problem == "bad_framing":
            stats.skip("bad_framing")
            stats.bad_framing_at.append(f"{source_name}@{frame.offset}")
            continue
        records_seen = True
        if frame.problem == "too_large":
            stats.skip("too_large")
            continue
        try:
            record = next(iter(ArchiveIterator(io.BytesIO(frame.data))))
            text, reason = _warc_record_text(record, max_record_bytes, extractor)
        except (StopIteration, ArchiveLoadFailed, EOFError, zlib.error, OSError, ValueError,
                AttributeError, StatusAndHeadersParserException):
            stats.skip("bad_framing")
            stats.bad_framing_at.append(f"{source_name}@{frame.offset}")
            continue
        if reason:
            stats.skip(reason)
            continue
        url = record.rec_headers.get_header("WARC-Target-URI")
        yield _document(source_name, frame.offset, url, text, None, max_chars, stats)
    if not records_seen and not stats.skipped.get("bad_framing"):
        stats.skip("truncated")  # non-empty (see detect_format) yet not one complete record


def _bounded_lines(stream, max_line_bytes: int, stats: IngestStats,
                   chunk_size: int = 1 << 20) -> Iterator[bytes | None]:
    """Lines of a binary stream (read in ``chunk_size`` pieces), none longer than
    ``max_line_bytes``: a longer line is read past without being held (its pieces are only
    searched for the newline) and yielded as None."""
    buf = bytearray()
    skipping = False
    read = getattr(stream, "read1", stream.read)  # gzip: what one step decompressed, so the
    while True:                                    # lines before a truncation still come out
        chunk = read(chunk_size)
        if not chunk:
            if skipping:
                yield None
            elif buf:
                yield bytes(buf)
            return
        if skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                continue
            skipping = False
            yield None
            chunk = chunk[nl + 1:]
        buf += chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            yield None if nl + 1 - start > max_line_bytes else bytes(buf[start:nl + 1])
            start = nl + 1
        del buf[:start]
        if len(buf) > max_line_bytes:  # inside an over-long line: drop what is read so far
            skipping = True
            buf = bytearray()


def iter_jsonl_documents(fileobj: BinaryIO, source_name: str, stats: IngestStats,
                         max_chars: int = DEFAULT_MAX_CHARS,
                         max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[dict]:
    """Documents of a JSONL / JSONL.gz file; ``source_offset`` is the 0-based line index.
    Decompression is streamed and a line over ``max_line_bytes`` is counted ``too_large``
    without being held in memory."""
    stream = gzip.GzipFile(fileobj=fileobj) if _peek(fileobj, 2) == b"\x1f\x8b" else fileobj
    line_index = -1
    lines = _bounded_lines(stream, max_line_bytes, stats)
    while True:
        try:
            raw = next(lines)
        except StopIteration:
            break
        except (EOFError, zlib.error, OSError):
            stats.skip("truncated")
            return
        line_index += 1
        if raw is None:
            stats.records_read += 1
            stats.skip("too_large")
            continue
        if not raw.strip():
            continue
        stats.records_read += 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            stats.skip("decode_error")
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            stats.skip("bad_json")
            continue
        if not isinstance(obj, dict):
            stats.skip("bad_json")
            continue
        doc = _row_document(obj, source_name, line_index, stats, max_chars)
        if doc is not None:
            yield doc


def iter_parquet_documents(fileobj: BinaryIO, source_name: str, stats: IngestStats,
                           max_chars: int = DEFAULT_MAX_CHARS, batch_size: int = 4096) -> Iterator[dict]:
    """Documents of a Parquet file with a ``text`` column (``id``, ``url`` optional);
    ``source_offset`` is the 0-based row index."""
    try:
        parquet = pq.ParquetFile(fileobj)
    except (pa.ArrowException, OSError) as e:
        raise SourceFileError(f"{source_name}: not a readable Parquet file ({e}). Re-export it, or "
                              "remove it from --source.") from e
    names = parquet.schema_arrow.names
    if "text" not in names:
        raise SourceFileError(f"{source_name}: Parquet file has no 'text' column (columns: {names}). "
                              "Rename the text column to 'text' or remove the file from --source.")
    columns = [c for c in ("id", "url", "text") if c in names]
    text_type = parquet.schema_arrow.field("text").type
    as_binary = pa.types.is_binary(text_type) or pa.types.is_large_binary(text_type)
    if not (as_binary or pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
        raise SourceFileError(f"{source_name}: Parquet column 'text' has type {text_type}, not "
                              "string (or UTF-8 binary). Cast it to string or remove the file "
                              "from --source.")
    row_index = 0
    try:
        for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
            for obj in batch.to_pylist():
                stats.records_read += 1
                if as_binary and isinstance(obj.get("text"), bytes):
                    try:
                        obj["text"] = obj["text"].decode("utf-8")
                    except UnicodeDecodeError:
                        stats.skip("decode_error")
                        row_index += 1
                        continue
                doc = _row_document(obj, source_name, row_index, stats, max_chars)
                row_index += 1
                if doc is not None:
                    yield doc
    except (pa.ArrowException, OSError) as e:
        raise SourceFileError(f"{source_name}: Parquet data is corrupt after row {row_index} ({e}). "
                              "Re-export the file or remove it from --source.") from e


def _row_document(obj: dict, source_name: str, offset: int, stats: IngestStats, max_chars: int) -> dict | None:
    """A document from a JSONL object / Parquet row, or None (counted) when it has no usable text."""
    text = obj.get("text")
    if not isinstance(text, str):
        stats.skip("missing_text")
        return None
    if not text.strip():
        stats.skip("empty_text")
        return None
    doc_id = obj.get("id")
    url = obj.get("url")
    return _document(source_name, offset, url if isinstance(url, str) else None, _clean_str(text),
                     None if doc_id is None else _clean_str(str(doc_id)), max_chars, stats)


def iter_documents(fileobj: BinaryIO, source_name: str, stats: IngestStats,
                   max_chars: int = DEFAULT_MAX_CHARS,
                   max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                   max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
                   extractor: str = DEFAULT_EXTRACTOR) -> Iterator[dict]:
    """Documents (dicts with the ``DOC_SCHEMA`` fields) of one seekable binary source file, in
    file order; ``stats`` is updated as they are read. HTML goes through ``extractor`` (a key of
    ``EXTRACTORS``). Raises ``SourceFileError`` for a file of no known format; counts an empty
    file as ``empty_file``."""
    if extractor not in EXTRACTORS:
        raise ValueError(f"unknown extractor {extractor!r}; choose one of {sorted(EXTRACTORS)}")
    fmt = detect_format(fileobj, source_name)
    if fmt == "empty":
        stats.skip("empty_file")
        return iter(())
    if fmt == "warc":
        return iter_warc_documents(fileobj, source_name, stats, max_chars, max_record_bytes, extractor)
    if fmt == "jsonl":
        return iter_jsonl_documents(fileobj, source_name, stats, max_chars, max_line_bytes)
    return iter_parquet_documents(fileobj, source_name, stats, max_chars)


def ingest_file(fileobj: BinaryIO, source_name: str, max_chars: int = DEFAULT_MAX_CHARS,
                max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                extractor: str = DEFAULT_EXTRACTOR) -> tuple[pa.Table, IngestStats]:
    """All documents of one source file as a ``DOC_SCHEMA`` table, with its counters.
    ``fileobj`` must be binary and seekable (local files, fsspec files, BytesIO)."""
    if not fileobj.seekable():
        fileobj = io.BytesIO(fileobj.read())
    stats = IngestStats()
    rows = list(iter_documents(fileobj, source_name, stats, max_chars, max_record_bytes,
                               extractor=extractor))
    return pa.Table.from_pylist(rows, schema=DOC_SCHEMA), stats


def iter_batches(fileobj: BinaryIO, source_name: str, stats: IngestStats,
                 max_chars: int = DEFAULT_MAX_CHARS,
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                 max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
                 batch_rows: int = BATCH_ROWS, batch_chars: int = BATCH_CHARS,
                 extractor: str = DEFAULT_EXTRACTOR) -> Iterator[pa.Table]:
    """The documents of one seekable source file as ``DOC_SCHEMA`` tables of at most
    ``batch_rows`` rows / about ``batch_chars`` characters of text, so memory stays bounded
    by a batch whatever the file's size."""
    rows, chars = [], 0
    for doc in iter_documents(fileobj, source_name, stats, max_chars, max_record_bytes, max_line_bytes,
                              extractor):
        rows.append(doc)
        chars += len(doc["text"])
        if len(rows) >= batch_rows or chars >= batch_chars:
            yield pa.Table.from_pylist(rows, schema=DOC_SCHEMA)
            rows, chars = [], 0
    if rows:
        yield pa.Table.from_pylist(rows, schema=DOC_SCHEMA)


def describe_skips(per_file: dict[str, dict]) -> str:
    """'200 missing_text in x.parquet; 1 empty_file in y.jsonl' (largest first, at most 5)."""
    items = sorted(((n, reason, name) for name, d in per_file.items()
                    for reason, n in d.items() if reason != "docs_out" and n),
                   key=lambda t: (-t[0], t[2], t[1]))
    text = "; ".join(f"{n} {reason} in {name}" for n, reason, name in items[:5])
    more = len(items) - 5
    return (text + (f"; and {more} more" if more > 0 else "")) or "no records in any file"
