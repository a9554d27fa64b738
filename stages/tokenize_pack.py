"""Tokenize documents and pack them into fixed-length training sequences (DeepSeek-V3 style).

Per input shard (a pyarrow table with a text and a source column), ``pack_table`` does:

1. **document key** = blake2b-128 of the UTF-8 text. Every random choice below is a hash of
   (seed, purpose, key[, copy]) so results do not depend on row order or on how rows are sharded;
   exact duplicate texts always go the same way.
2. **validation split** (``validation_split``): a document is held out when its hash uniform is
   below ``val_fraction``. Validation keeps the natural mixture and gets no FIM.
3. **mixture** (train only): ``mixture_weights`` gives target token shares ``w_i ∝ n_i^(1/T)``
   (T = 1: proportional, T -> ∞: uniform); ``sampling_rates`` turns them into copies per
   document ``r_i = w_i · target / n_i``; ``document_repeats`` gives each document
   ``floor(r_i)`` copies plus one more with probability ``frac(r_i)`` (down-sampling when r < 1).
   The copies are put in a hash order (a deterministic shuffle).
4. **FIM** (train only, rate ``fim_rate``, per copy): character-level split into prefix / middle /
   suffix, PSM order ``<|fim_prefix|>prefix<|fim_suffix|>suffix<|fim_middle|>middle``. The three
   parts are encoded separately and joined with the sentinel ids (text that merely looks like a
   sentinel never becomes one, see below).
5. **encode** with ``Tokenizer.encode_batch_fast`` (multi-threaded in Rust) in chunks of
   ``batch_size`` documents, special-token matching off: corpus text is plain text, a literal
   ``"<|eos|>"`` in a page becomes ordinary tokens.
6. **pack**: each document is followed by ``<|eos|>``; the stream is cut into rows of
   ``seq_len + 1`` tokens (inputs ``row[:-1]``, targets ``row[1:]``), no cross-document mask,
   rows never overlap, so every token is in exactly one row. The tail shorter than a row is
   **dropped and counted** (``PackStats.dropped_tail_tokens``); ``SequencePacker`` can carry
   it across shards instead.

Shards are written through file objects (``write_npy_shard`` / ``write_parquet_shard``, and an
index JSON from ``build_index``), so the caller can open them on any fsspec filesystem.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import IO, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from deeprecipe.stages.tokenizer_train import EOS, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

from deeprecipe.pipeline.config import option

TOKEN_DTYPE = np.uint32
SOURCE_DTYPE = np.int32
_HASH_SCALE = float(1 << 53)

# ---------------------------------------------------------------------------------------------
# deterministic per-document randomness
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenizePackConfig:
    seq_len: int = option("tokens per packed row (rows hold seq_len + 1 for the shifted target)")
    val_fraction: float = option("share of documents (by content hash) held out for validation")
    temperature: float = option("mixture temperature over sources: 1 = natural shares, higher "
                                "flattens")
    fim_rate: float = option("share of documents turned into fill-in-the-middle (PSM) examples")
    source_column: str = option("document column that names the mixture source (e.g. domain)")
    seed: int = option("seed of the mixture sampling and FIM")
    reasoning_share: float = option("share of training tokens from reasoning_corpus (0: none)")


def document_key(text: str) -> bytes:
    """16-byte blake2b digest of the document's UTF-8 text."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def hash_uniform(key: bytes | str | int, seed: int, purpose: str) -> float:
    """A uniform in [0, 1) fixed by (seed, purpose, key); independent across purposes."""
    raw = key if isinstance(key, bytes) else str(key).encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(raw, digest_size=8, key=f"{seed}:{purpose}".encode()[:64]).digest()
    return (int.from_bytes(digest, "little") >> 11) / _HASH_SCALE


def document_rng(key: bytes | str | int, seed: int, purpose: str) -> np.random.Generator:
    """A numpy Generator seeded by (seed, purpose, key)."""
    return np.random.default_rng(int(hash_uniform(key, seed, purpose) * _HASH_SCALE))


def validation_split(ids: Sequence[bytes | str | int], fraction: float, seed: int) -> np.ndarray:
    """``mask_N`` bool, True = validation: hash uniform of (seed, id) below ``fraction``.

    A given id always lands on the same side whatever the order or batch it comes in.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"validation fraction {fraction} is outside [0, 1]")
    return np.fromiter((hash_uniform(i, seed, "validation") < fraction for i in ids),
                       dtype=bool, count=len(ids))


# ---------------------------------------------------------------------------------------------
# mixture over sources
# ---------------------------------------------------------------------------------------------


def mixture_weights(token_counts: Mapping[str, int], temperature: float) -> dict[str, float]:
    """Target token shares ``w_i ∝ n_i^(1/T)`` summing to 1 (sources with 0 tokens get 0).

    ``temperature`` 1 keeps natural shares, larger flattens, ``math.inf`` is uniform.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (got {temperature}); use math.inf for uniform")
    live = {s: n for s, n in token_counts.items() if n > 0}
    if not live:
        raise ValueError("mixture over no tokens: every source count is 0")
    logs = {s: math.log(n) / temperature for s, n in live.items()}
    top = max(logs.values())
    raw = {s: math.exp(v - top) for s, v in logs.items()}
    total = sum(raw.values())
    return {s: raw.get(s, 0.0) / total for s in token_counts}


def sampling_rates(token_counts: Mapping[str, int], temperature: float,
                   target_tokens: int | None = None,
                   fixed_shares: Mapping[str, float] | None = None) -> dict[str, float]:
    """Expected copies per document of each source, ``r_i = w_i · target / n_i``, so that the
    sampled corpus has ``target_tokens`` (default: as many as the input) in the target shares.

    ``fixed_shares`` pins some sources' shares (e.g. ``{"<reasoning>": 0.3}``: 30 % of the
    sampled tokens, repeating its documents as often as that takes); the other sources split
    the rest by temperature. With pinned sources the default target is the other sources'
    tokens divided by their share (they keep about one copy per document at T = 1)."""
    fixed = {s: float(w) for s, w in (fixed_shares or {}).items()}
    if any(not 0.0 <= w < 1.0 for w in fixed.values()) or sum(fixed.values()) >= 1.0:
        raise ValueError(f"fixed shares {fixed} must each be in [0, 1) and sum to < 1")
    missing = [s for s, w in fixed.items() if w > 0 and token_counts.get(s, 0) <= 0]
    if missing:
        raise ValueError(f"fixed-share sources {missing} have no tokens to sample")
    rest = {s: n for s, n in token_counts.items() if s not in fixed}
    free = 1.0 - sum(fixed.values())
    weights = {**{s: w * free for s, w in mixture_weights(rest, temperature).items()}, **fixed}
    if target_tokens is not None:
        target = target_tokens
    else:
        target = sum(rest.values()) / free if fixed else sum(token_counts.values())
    return {s: (weights[s] * target / n if n > 0 else 0.0) for s, n in token_counts.items()}


def document_repeats(keys: Sequence[bytes | str | int], rate: float, seed: int) -> np.ndarray:
    """``copies_N`` int64: ``floor(rate)`` + 1 if the document's hash uniform < ``frac(rate)``."""
    if rate < 0:
        raise ValueError(f"sampling rate {rate} < 0")
    whole, frac = int(math.floor(rate)), rate - math.floor(rate)
    extra = np.fromiter((hash_uniform(k, seed, "mixture") < frac for k in keys),
                        dtype=bool, count=len(keys))
    return whole + extra.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# fill-in-the-middle
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FimSplit:
    """A document cut at two character positions; ``prefix + middle + suffix`` is the text."""
    prefix: str
    middle: str
    suffix: str

    def psm(self) -> str:
        """``<|fim_prefix|>prefix<|fim_suffix|>suffix<|fim_middle|>middle``."""
        return f"{FIM_PREFIX}{self.prefix}{FIM_SUFFIX}{self.suffix}{FIM_MIDDLE}{self.middle}"


def fim_split(text: str, rng: np.random.Generator, rate: float) -> FimSplit | None:
    """With probability ``rate``, cut ``text`` at two uniform character positions (0..len);
    otherwise None. Always draws 3 numbers from ``rng``, so later draws do not depend on it."""
    draw = rng.random()
    lo, hi = np.sort(rng.integers(0, len(text) + 1, size=2))
    if draw >= rate:
        return None
    return FimSplit(text[:lo], text[lo:hi], text[hi:])


def apply_fim(text: str, rng: np.random.Generator, rate: float) -> str:
    """The PSM-formatted document with probability ``rate``, else ``text`` unchanged."""
    split = fim_split(text, rng, rate)
    return text if split is None else split.psm()


# ---------------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------------


def plain_text_tokenizer(tok: Tokenizer) -> Tokenizer:
    """A copy of ``tok`` that encodes special-token strings as ordinary text."""
    plain = Tokenizer.from_str(tok.to_str())
    plain.encode_special_tokens = True
    return plain


def encode_documents(tok: Tokenizer, texts: Sequence[str], batch_size: int = 1024,
                     parse_special: bool = False) -> list[np.ndarray]:
    """One uint32 token array per text (no EOS, nothing added), via ``encode_batch_fast`` in
    chunks of ``batch_size``. ``parse_special=False``: literal ``"<|eos|>"`` is plain text."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
    enc = tok if parse_special else plain_text_tokenizer(tok)
    encode = getattr(enc, "encode_batch_fast", enc.encode_batch)
    out: list[np.ndarray] = []
    for start in range(0, len(texts), batch_size):
        for e in encode(list(texts[start:start + batch_size]), add_special_tokens=False):
            out.append(np.asarray(e.ids, dtype=TOKEN_DTYPE))
    return out


def encode_with_fim(tok: Tokenizer, texts: Sequence[str], splits: Sequence[FimSplit | None],
                    batch_size: int = 1024, parse_special: bool = False) -> list[np.ndarray]:
    """Like ``encode_documents``; a document with a ``FimSplit`` becomes
    ``[fim_prefix] prefix [fim_suffix] suffix [fim_middle] middle``, each part encoded alone."""
    pieces: list[str] = []
    for text, split in zip(texts, splits, strict=True):
        pieces.extend([text] if split is None else [split.prefix, split.suffix, split.middle])
    encoded = iter(encode_documents(tok, pieces, batch_size, parse_special))
    ids = [np.array([tok.token_to_id(t)], dtype=TOKEN_DTYPE) for t in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE)]
    out = []
    for split in splits:
        if split is None:
            out.append(next(encoded))
        else:
            prefix, suffix, middle = next(encoded), next(encoded), next(encoded)
            out.append(np.concatenate([ids[0], prefix, ids[1], suffix, ids[2], middle]))
    return out


# ---------------------------------------------------------------------------------------------
# packing
# ---------------------------------------------------------------------------------------------


@dataclass
class PackStats:
    """Counts for one split of one shard (or the sum of several, see ``merge``).

    ``docs``/``tokens`` count emitted documents (copies included) and their tokens including the
    appended EOS; ``input_docs`` the rows read for this split before re-sampling.
    """
    input_docs: int = 0
    docs: int = 0
    tokens: int = 0
    sequences: int = 0
    dropped_tail_tokens: int = 0
    fim_applied: int = 0
    docs_per_source: Counter = field(default_factory=Counter)
    tokens_per_source: Counter = field(default_factory=Counter)

    def merge(self, other: PackStats) -> PackStats:
        return PackStats(
            self.input_docs + other.input_docs, self.docs + other.docs, self.tokens + other.tokens,
            self.sequences + other.sequences, self.dropped_tail_tokens + other.dropped_tail_tokens,
            self.fim_applied + other.fim_applied, self.docs_per_source + other.docs_per_source,
            self.tokens_per_source + other.tokens_per_source)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["docs_per_source"] = dict(sorted(self.docs_per_source.items()))
        d["tokens_per_source"] = dict(sorted(self.tokens_per_source.items()))
        return d


class SequencePacker:
    """Streams documents (each followed by EOS) into rows of ``seq_len + 1`` tokens.

    ``add`` buffers; ``take_rows`` returns every full row so far (``tokens_NL`` uint32 and
    ``sources_NL`` int32 indices into ``source_names``) and keeps the remainder for the next
    call; ``finish`` drops the remainder and returns how many tokens it held.
    """

    def __init__(self, seq_len: int, eos_id: int):
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1 (got {seq_len})")
        self.row_len = seq_len + 1
        self.eos_id = eos_id
        self.source_names: list[str] = []
        self._source_index: dict[str, int] = {}
        self._tokens: list[np.ndarray] = []
        self._sources: list[np.ndarray] = []
        self.pending = 0

    def add(self, tokens: np.ndarray, source: str = "") -> int:
        """Buffer one document plus EOS; returns its length including EOS."""
        idx = self._source_index.setdefault(source, len(self.source_names))
        if idx == len(self.source_names):
            self.source_names.append(source)
        doc = np.empty(len(tokens) + 1, dtype=TOKEN_DTYPE)
        doc[:-1] = tokens
        doc[-1] = self.eos_id
        self._tokens.append(doc)
        self._sources.append(np.full(len(doc), idx, dtype=SOURCE_DTYPE))
        self.pending += len(doc)
        return len(doc)

    def take_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(``tokens_NL`` uint32, ``sources_NL`` int32), N = full rows buffered, L = seq_len+1."""
        n_rows = self.pending // self.row_len
        if n_rows == 0:
            return (np.empty((0, self.row_len), TOKEN_DTYPE), np.empty((0, self.row_len), SOURCE_DTYPE))
        flat_tokens, flat_sources = np.concatenate(self._tokens), np.concatenate(self._sources)
        cut = n_rows * self.row_len
        self._tokens = [flat_tokens[cut:]] if cut < len(flat_tokens) else []
        self._sources = [flat_sources[cut:]] if cut < len(flat_sources) else []
        self.pending -= cut
        return flat_tokens[:cut].reshape(n_rows, self.row_len), flat_sources[:cut].reshape(n_rows, self.row_len)

    def finish(self) -> int:
        """Drop the partial row still buffered; returns its token count (< seq_len + 1)."""
        if self.pending >= self.row_len:
            raise RuntimeError("finish() with full rows still buffered; call take_rows() first")
        dropped, self.pending, self._tokens, self._sources = self.pending, 0, [], []
        return dropped


def pack_sequences(token_arrays: Iterable[np.ndarray], seq_len: int, eos_id: int) -> tuple[np.ndarray, int]:
    """(``tokens_NL`` uint32 with L = seq_len + 1, dropped tail token count): the documents, each
    followed by ``eos_id``, laid end to end and cut into rows; the last partial row is dropped."""
    packer = SequencePacker(seq_len, eos_id)
    for arr in token_arrays:
        packer.add(arr)
    rows, _ = packer.take_rows()
    return rows, packer.finish()


def source_token_counts(sources_NL: np.ndarray, source_names: Sequence[str]) -> dict[str, int]:
    """``{source: tokens}`` in a block of rows (sources absent from the block omitted)."""
    counts = np.bincount(sources_NL.ravel(), minlength=len(source_names))
    return {source_names[i]: int(c) for i, c in enumerate(counts) if c}


# ---------------------------------------------------------------------------------------------
# one input shard -> packed rows
# ---------------------------------------------------------------------------------------------


@dataclass
class PackedShard:
    tokens_NL: np.ndarray          # uint32 (N, seq_len + 1)
    sources_NL: np.ndarray         # int32 (N, seq_len + 1), indices into source_names
    source_names: list[str]
    stats: PackStats


UNKNOWN_SOURCE = "unknown"      # the source of a row whose source column is null


def _column(table: pa.Table, name: str) -> list:
    if name not in table.column_names:
        raise KeyError(f"input table has no column {name!r} (columns: {table.column_names}); "
                       "set text_column / source_column")
    return table.column(name).to_pylist()


def _sources(table: pa.Table, name: str) -> list[str]:
    return [UNKNOWN_SOURCE if s is None else str(s) for s in _column(table, name)]


def count_source_tokens(tok: Tokenizer, table: pa.Table, *, val_fraction: float, seed: int,
                        text_column: str = "text", source_column: str = "source",
                        batch_size: int = 1024, parse_special: bool = False) -> dict[str, int]:
    """Training-split tokens per source (EOS included) of one shard: the ``n_i`` for
    ``sampling_rates``; sum the dicts over shards first."""
    texts, sources = _column(table, text_column), _sources(table, source_column)
    keep = ~validation_split([document_key(t or "") for t in texts], val_fraction, seed)
    counts: Counter = Counter()
    kept = [i for i in range(len(texts)) if keep[i] and texts[i]]
    for i, arr in zip(kept, encode_documents(tok, [texts[i] for i in kept], batch_size,
                                             parse_special)):
        counts[sources[i]] += len(arr) + 1
    return dict(counts)


def pack_table(tok: Tokenizer, table: pa.Table, *, seq_len: int,
               split: Literal["train", "validation"], val_fraction: float, seed: int,
               source_rates: Mapping[str, float] | None = None, fim_rate: float = 0.0,
               text_column: str = "text", source_column: str = "source",
               batch_size: int = 1024, packer: SequencePacker | None = None,
               parse_special: bool = False) -> PackedShard:
    """Rows of one split of one input shard (steps 1-6 of the module doc).

    ``parse_special=True`` (trusted, generated text only, e.g. ``stages.generators.reasoning_corpus``):
    special-token strings such as ``"<think>"`` in the text become their special ids.

    ``source_rates`` (train only) from ``sampling_rates``; None: every document once.
    Null/empty texts are skipped; a null source is ``UNKNOWN_SOURCE``. Pass a ``packer`` to carry the partial row on to the next
    shard (then call ``packer.finish()`` after the last one); without one the tail is dropped.
    """
    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train' or 'validation' (got {split!r})")
    texts, sources = _column(table, text_column), _sources(table, source_column)
    docs = [(t, s, document_key(t)) for t, s in zip(texts, sources) if t]
    is_val = validation_split([k for _, _, k in docs], val_fraction, seed)
    docs = [d for d, v in zip(docs, is_val) if v == (split == "validation")]
    stats = PackStats(input_docs=len(docs))

    copies: list[tuple[str, str, bytes, int]] = []   # (text, source, key, copy index)
    if split == "train":
        for (text, source, key) in docs:
            if source_rates is not None and source not in source_rates:
                raise KeyError(f"source {source!r} has no sampling rate; compute the rates from "
                               "count_source_tokens over all input shards")
            rate = 1.0 if source_rates is None else source_rates[source]
            n = int(document_repeats([key], rate, seed)[0])
            copies.extend((text, source, key, c) for c in range(n))
        copies.sort(key=lambda d: hash_uniform(d[2] + d[3].to_bytes(4, "little"), seed, "order"))
    else:
        copies = [(text, source, key, 0) for text, source, key in docs]

    fim = fim_rate if split == "train" else 0.0
    splits = [fim_split(text, document_rng(key + c.to_bytes(4, "little"), seed, "fim"), fim)
              for text, _, key, c in copies]
    stats.fim_applied = sum(s is not None for s in splits)
    encoded = encode_with_fim(tok, [d[0] for d in copies], splits, batch_size, parse_special)

    carry_tail = packer is not None
    if packer is None:
        packer = SequencePacker(seq_len, tok.token_to_id(EOS))
    elif packer.row_len != seq_len + 1:
        raise ValueError(f"packer rows hold {packer.row_len} tokens, seq_len + 1 is {seq_len + 1}")
    for (_, source, _, _), arr in zip(copies, encoded):
        n = packer.add(arr, source)
        stats.docs += 1
        stats.tokens += n
        stats.docs_per_source[source] += 1
        stats.tokens_per_source[source] += n
    tokens_NL, sources_NL = packer.take_rows()
    stats.sequences = len(tokens_NL)
    if not carry_tail:
        stats.dropped_tail_tokens = packer.finish()
    return PackedShard(tokens_NL, sources_NL, list(packer.source_names), stats)


# ---------------------------------------------------------------------------------------------
# shard files and index (through file objects: local, fsspec, BytesIO)
# ---------------------------------------------------------------------------------------------

ShardFormat = Literal["npy", "parquet"]


def write_npy_shard(tokens_NL: np.ndarray, f: IO[bytes]) -> None:
    """``np.save`` of the rows as uint32 (N, seq_len + 1)."""
    np.save(f, np.ascontiguousarray(tokens_NL, dtype=TOKEN_DTYPE), allow_pickle=False)


def read_npy_shard(f: IO[bytes]) -> np.ndarray:
    return np.load(f, allow_pickle=False)


def write_parquet_shard(tokens_NL: np.ndarray, f: IO[bytes]) -> None:
    """One row per sequence, column ``tokens``: fixed_size_list<uint32>[seq_len + 1]."""
    n_rows, row_len = tokens_NL.shape
    flat = pa.array(np.ascontiguousarray(tokens_NL, dtype=TOKEN_DTYPE).ravel())
    column = pa.FixedSizeListArray.from_arrays(flat, row_len)
    pq.write_table(pa.table({"tokens": column}), f)


def read_parquet_shard(f: IO[bytes]) -> np.ndarray:
    column = pq.read_table(f, columns=["tokens"]).column("tokens").combine_chunks()
    row_len = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).astype(TOKEN_DTYPE).reshape(-1, row_len)


def write_shard(tokens_NL: np.ndarray, f: IO[bytes], fmt: ShardFormat) -> None:
    {"npy": write_npy_shard, "parquet": write_parquet_shard}[fmt](tokens_NL, f)


def read_shard(f: IO[bytes], fmt: ShardFormat) -> np.ndarray:
    return {"npy": read_npy_shard, "parquet": read_parquet_shard}[fmt](f)


def shard_index_entry(file: str, shard: PackedShard) -> dict:
    """``{file, sequences, tokens, tokens_per_source}`` of one written shard."""
    return {"file": file, "sequences": int(shard.tokens_NL.shape[0]), "tokens": int(shard.tokens_NL.size),
            "tokens_per_source": source_token_counts(shard.sources_NL, shard.source_names)}


def build_index(entries: Sequence[dict], *, seq_len: int, fmt: ShardFormat, split: str,
                stats: PackStats | None = None) -> dict:
    """The index JSON object: format, dtype, row length, shards, totals (and ``stats``)."""
    totals: Counter = Counter()
    for e in entries:
        totals.update(e["tokens_per_source"])
    index = {"format": fmt, "dtype": "uint32", "seq_len": seq_len, "row_len": seq_len + 1,
             "split": split, "sequences": sum(e["sequences"] for e in entries),
             "tokens": sum(e["tokens"] for e in entries),
             "tokens_per_source": dict(sorted(totals.items())), "shards": list(entries)}
    if stats is not None:
        index["stats"] = stats.to_dict()
    return index


def write_index(index: dict, f: IO[str]) -> None:
    json.dump(index, f, indent=2, sort_keys=False)
    f.write("\n")
