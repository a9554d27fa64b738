"""Exact URL deduplication: URL normalisation and a map -> reduce -> filter over shards.

``normalize_url`` maps every spelling of a page's address to one key. Dedup across shards never
holds all rows in one process:

* map    ``url_keys(table, shard)``      -> (url_key, bucket, shard, row) per document with a URL;
                                            the caller writes one file per bucket (``split_by_bucket``);
* reduce ``duplicate_rows(keys)``        -> (shard, row) to drop, for one bucket's keys from all
                                            shards; the survivor of each url_key is its smallest
                                            (shard, row), so the result does not depend on the order
                                            in which key files arrive;
* filter ``drop_rows(table, shard, drops)`` -> the shard without its dropped rows.

Documents without a URL (null or empty) get no key and always survive.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote_to_bytes, urlencode, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.compute as pc

from deeprecipe.pipeline.config import option

# Query parameters that only track the visitor and never select content.
TRACKING_PARAMS: frozenset[str] = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "igshid",
    "mc_cid", "mc_eid", "_ga", "_gl", "_hsenc", "_hsmi", "mkt_tok", "ref_src", "ref_url",
    "spm", "vero_id", "oly_anon_id", "oly_enc_id", "rb_clickid", "s_cid", "wickedid",
})
TRACKING_PREFIXES: tuple[str, ...] = ("utm_",)

DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters left unescaped in a path: RFC 3986 unreserved plus sub-delims, ':' '@' and '/'.
_PATH_SAFE = "/:@!$&'()*+,;=~"

KEYS_SCHEMA = pa.schema([("url_key", pa.string()), ("bucket", pa.int32()),
                         ("shard", pa.int32()), ("row", pa.int64())])
DROPS_SCHEMA = pa.schema([("shard", pa.int32()), ("row", pa.int64())])


@dataclass(frozen=True)
class UrlDedupConfig:
    num_buckets: int = option("hash buckets of the URL-key reduce (speed only: the output does "
                              "not change)")


def _is_tracking(name: str, params: frozenset[str], prefixes: tuple[str, ...]) -> bool:
    lowered = name.lower()
    return lowered in params or lowered.startswith(prefixes)


def _normalize_host(host: str) -> str:
    host = host.lower().rstrip(".")
    if host.isascii():
        return host
    try:  # internationalised domain -> its ASCII (punycode) form, so both spellings match
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def normalize_url(url: str, tracking_params: Iterable[str] = TRACKING_PARAMS,
                  tracking_prefixes: tuple[str, ...] = TRACKING_PREFIXES) -> str:
    """The dedup key of ``url``: one string per page, whatever the spelling.

    * scheme and host lower-cased; ``http`` and ``https`` are folded to ``https`` (the same page
      served on both is one page); other schemes are kept;
    * default ports (80 for http, 443 for https) dropped, other ports kept;
    * fragment dropped; tracking parameters (``tracking_params`` exact names, case-insensitive,
      and names starting with ``tracking_prefixes``) dropped; remaining (name, value) pairs sorted
      and re-encoded (``+`` and ``%20`` become ``%20``; blank values kept);
    * path percent-encoding normalised: escapes decoded and re-encoded with upper-case hex, raw
      non-ASCII encoded as UTF-8; an empty path becomes ``/``, a trailing slash on a non-root path is
      removed. (A ``%2F`` in a path is decoded to ``/``: accepted, it is rare in practice.)

    Never raises: a URL that cannot be parsed (no scheme/host, bad port, bad IPv6 literal) comes
    back stripped of surrounding white space, so it still dedups against identical strings.
    """
    stripped = url.strip()
    try:
        parts = urlsplit(stripped)
        scheme = parts.scheme.lower()
        if not scheme or not parts.netloc or parts.hostname is None:
            return stripped
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
        host = _normalize_host(parts.hostname)
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        if port is not None and port != DEFAULT_PORTS.get(scheme):
            host = f"{host}:{port}"
        userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
        netloc = f"{userinfo}@{host}" if userinfo else host
        if scheme == "http":
            scheme = "https"

        path = quote(unquote_to_bytes(parts.path), safe=_PATH_SAFE)
        if not path:
            path = "/"
        elif len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"

        names = frozenset(p.lower() for p in tracking_params)
        pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if not _is_tracking(k, names, tracking_prefixes)]
        query = urlencode(sorted(pairs), quote_via=quote)
        return urlunsplit((scheme, netloc, path, query, ""))
    except (ValueError, UnicodeError):
        return stripped


def url_bucket(url_key: str, num_buckets: int) -> int:
    """Stable bucket in ``[0, num_buckets)`` of a key (blake2b, not Python's salted ``hash``)."""
    digest = hashlib.blake2b(url_key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % num_buckets


def url_keys(table: pa.Table, shard: int, num_buckets: int = 64, url_column: str = "url",
             **normalize_kwargs) -> pa.Table:
    """Map step: one row per document of ``table`` that has a URL, as ``KEYS_SCHEMA``
    (``url_key``, ``bucket`` in [0, num_buckets), ``shard``, ``row`` = row index in ``table``)."""
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
    urls = table.column(url_column).to_pylist() if table.num_rows else []
    keys, buckets, rows = [], [], []
    for row, url in enumerate(urls):
        if not url:
            continue
        key = normalize_url(url, **normalize_kwargs)
        keys.append(key)
        buckets.append(url_bucket(key, num_buckets))
        rows.append(row)
    return pa.table({"url_key": pa.array(keys, pa.string()), "bucket": pa.array(buckets, pa.int32()),
                     "shard": pa.array([shard] * len(rows), pa.int32()),
                     "row": pa.array(rows, pa.int64())}, schema=KEYS_SCHEMA)


def split_by_bucket(keys: pa.Table) -> dict[int, pa.Table]:
    """Map-side partition: ``{bucket: rows of keys in that bucket}`` (only non-empty buckets)."""
    out = {}
    for bucket in sorted(set(keys.column("bucket").to_pylist())):
        out[bucket] = keys.filter(pc.equal(keys.column("bucket"), bucket))
    return out


def duplicate_rows(keys: pa.Table) -> pa.Table:
    """Reduce step for one bucket (keys from every shard, any order): the ``(shard, row)`` of every
    document whose url_key also belongs to a smaller ``(shard, row)``; sorted, ``DROPS_SCHEMA``."""
    if keys.num_rows == 0:
        return DROPS_SCHEMA.empty_table()
    ordered = keys.select(["url_key", "shard", "row"]).sort_by(
        [("url_key", "ascending"), ("shard", "ascending"), ("row", "ascending")])
    url_key = ordered.column("url_key")
    same_as_previous = pc.equal(url_key.slice(1), url_key.slice(0, len(url_key) - 1))
    is_duplicate = pa.concat_arrays([pa.array([False]), same_as_previous.combine_chunks()])
    drops = ordered.filter(is_duplicate).select(["shard", "row"]).cast(DROPS_SCHEMA)
    return drops.sort_by([("shard", "ascending"), ("row", "ascending")])


def drop_rows(table: pa.Table, shard: int, drops: pa.Table) -> pa.Table:
    """Filter step: ``table`` (shard ``shard``) without the rows that ``drops`` lists for it.
    ``drops`` may hold rows of other shards (e.g. the concatenated reduce output)."""
    mine = drops.filter(pc.equal(drops.column("shard"), shard)).column("row")
    if len(mine) == 0:
        return table
    row_index = pa.array(range(table.num_rows), pa.int64())
    return table.filter(pc.invert(pc.is_in(row_index, value_set=mine.combine_chunks())))


def dedup_stats(docs_in: int, docs_out: int) -> dict:
    """Counters for the manifest: docs in/out, duplicates removed and their share of docs in."""
    removed = docs_in - docs_out
    return {"docs_in": docs_in, "docs_out": docs_out, "duplicates_removed": removed,
            "removed_fraction": removed / docs_in if docs_in else 0.0}


def merge_stats(stats: Iterable[dict]) -> dict:
    """Sum per-shard ``dedup_stats`` into one."""
    stats = list(stats)
    return dedup_stats(sum(s["docs_in"] for s in stats), sum(s["docs_out"] for s in stats))


def dedup_shards(tables: list[pa.Table], num_buckets: int = 16) -> tuple[list[pa.Table], dict]:
    """In-process composition of map -> reduce -> filter over ``tables`` (shard i = tables[i]);
    for tests and the tiny profile. Returns (deduplicated tables, merged stats)."""
    keys = [url_keys(t, i, num_buckets) for i, t in enumerate(tables)]
    by_bucket: dict[int, list[pa.Table]] = {}
    for k in keys:
        for bucket, part in split_by_bucket(k).items():
            by_bucket.setdefault(bucket, []).append(part)
    drops = [duplicate_rows(pa.concat_tables(parts)) for _, parts in sorted(by_bucket.items())]
    all_drops = pa.concat_tables(drops) if drops else DROPS_SCHEMA.empty_table()
    out = [drop_rows(t, i, all_drops) for i, t in enumerate(tables)]
    return out, merge_stats(dedup_stats(t.num_rows, o.num_rows) for t, o in zip(tables, out))
