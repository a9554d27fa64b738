"""Tokenizer training and tokenize/pack: round trips, digits, special tokens, packing, FIM,
mixture weights, validation split, shard files. CPU, deterministic (hypothesis derandomized)."""
from __future__ import annotations

import io
import json
import math
import random
from collections import Counter

import fsspec
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from deeprecipe.stages.tokenize_pack import (
    FimSplit, PackStats, SequencePacker, apply_fim, build_index, count_source_tokens,
    document_key, document_repeats, document_rng, encode_documents, encode_with_fim, fim_split,
    mixture_weights, pack_sequences, pack_table, read_shard, sampling_rates, shard_index_entry,
    source_token_counts, validation_split, write_index, write_shard,
)
from deeprecipe.stages.tokenizer_train import (
    EOS, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, MIN_VOCAB_SIZE, SPECIAL_TOKENS, load_tokenizer,
    save_tokenizer, special_token_ids, train_tokenizer,
)

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

WORDS = ["the", "model", "train", "token", "data", "def", "return", "import", "numpy", "über",
         "naïve", "café", "数据", "训练", "模型", "トークン", "данные", "😀", "🚀", "x", "y"]
SNIPPETS = ["x == y", "z += 1", "if (a && b) {", "}", "...", "<think>", "</think>",
            "price: $2024.50", "see http://a.b/c?d=1", "\tindent", "\r\n"]


def make_corpus(n_docs: int, seed: int = 0) -> list[str]:
    """Mixed-script text with frequent numbers (2024, 100, 3.14) so digit merges would be
    learned if digits were not split, and frequent literal special-token look-alikes."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        parts = []
        for _ in range(rng.randint(5, 60)):
            r = rng.random()
            parts.append(rng.choice(WORDS) if r < 0.7 else rng.choice(SNIPPETS) if r < 0.85
                         else rng.choice(["2024", "100", "3.14", "1000000", str(rng.randint(0, 99999))]))
        docs.append(" ".join(parts) + rng.choice(["\n", "\n\n", ".", ""]))
    return docs


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return make_corpus(1500)


@pytest.fixture(scope="module")
def tok(corpus) -> Tokenizer:
    return train_tokenizer(corpus, vocab_size=2048)


# GPT-2 byte <-> symbol table, written out independently of the tokenizers library.
def _byte_symbols() -> dict[str, int]:
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    symbols, extra = {}, 0
    for b in range(256):
        if b in keep:
            symbols[chr(b)] = b
        else:
            symbols[chr(256 + extra)] = b
            extra += 1
    return symbols


BYTE_OF_SYMBOL = _byte_symbols()

unicode_text = st.text(
    alphabet=st.one_of(
        st.characters(exclude_categories=("Cs",)),               # everything but surrogates
        st.sampled_from(list("😀🚀👍🏽🇩🇪漢字かなカナ한국어\u0301\u0308\u200d\u0000\t\r\n\x7f\x1b€ß9")),
    ),
    max_size=80,
)


# ---------------------------------------------------------------------------------------------
# training and the vocabulary
# ---------------------------------------------------------------------------------------------


def test_training_is_deterministic_and_respects_vocab_size(corpus, tok):
    again = train_tokenizer(iter(corpus), vocab_size=2048)
    assert again.to_str() == tok.to_str()
    assert MIN_VOCAB_SIZE < tok.get_vocab_size() <= 2048
    small = train_tokenizer(corpus, vocab_size=400)
    assert small.get_vocab_size() == 400
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(corpus, vocab_size=100)
    with pytest.raises(TypeError, match="text #1"):
        train_tokenizer(["ok", None], vocab_size=400)


def test_byte_alphabet_is_complete(tok):
    vocab = tok.get_vocab()
    assert all(sym in vocab for sym in BYTE_OF_SYMBOL)


def test_special_tokens_take_the_first_ids(tok):
    ids = special_token_ids(tok)
    assert list(ids) == list(SPECIAL_TOKENS)
    assert list(ids.values()) == list(range(len(SPECIAL_TOKENS)))


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------


@PROPERTY
@given(text=unicode_text)
def test_round_trip_text_and_bytes(tok, text):
    enc = tok.encode(text)
    assert tok.decode(enc.ids, skip_special_tokens=False) == text
    # byte level: the token symbols map back to exactly the UTF-8 bytes of the text
    raw = bytes(BYTE_OF_SYMBOL[c] for t in enc.tokens for c in t)
    assert raw == text.encode("utf-8")
    [plain] = encode_documents(tok, [text])
    assert plain.dtype == np.uint32
    assert tok.decode(plain.tolist(), skip_special_tokens=False) == text


def test_round_trip_fixed_cases(tok):
    cases = ["", " ", "  leading and trailing  ", "\n\n\r\n\t", "e\u0301\u0308", "👍🏽👨‍👩‍👧",
             "漢字とかなの混在テキスト", "\x00\x01\x1f\x7f", "a" * 5000, "٣٤٥ ١٢"]
    for text, ids in zip(cases, encode_documents(tok, cases, batch_size=3)):
        assert tok.decode(ids.tolist(), skip_special_tokens=False) == text


# ---------------------------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------------------------


@PROPERTY
@given(text=st.text(alphabet=st.sampled_from(list("0123456789 .,-+abc\n数")), max_size=60))
def test_every_ascii_digit_is_its_own_token(tok, text):
    for token in tok.encode(text).tokens:
        if any(c.isascii() and c.isdigit() for c in token):
            assert len(token) == 1, token


def test_frequent_numbers_are_still_split(tok):
    assert tok.encode("2024 1000000").tokens == ["2", "0", "2", "4", "Ġ", "1", "0", "0", "0", "0", "0", "0"]


# ---------------------------------------------------------------------------------------------
# line breaks and punctuation
# ---------------------------------------------------------------------------------------------

ASCII_PUNCT = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


@PROPERTY
@given(text=st.text(alphabet=st.sampled_from(list("ab xyz\n\r\t.,;:=+-()[]{}<>!?\"'/数😀")), max_size=60))
def test_line_breaks_and_punctuation_never_merge_with_words(tok, text):
    for token in tok.encode(text).tokens:
        piece = bytes(BYTE_OF_SYMBOL[c] for c in token).decode("utf-8", "replace")
        if "\n" in piece or "\r" in piece:
            assert piece in ("\n", "\r", "\r\n"), piece
        if ASCII_PUNCT & set(piece):
            assert set(piece.lstrip(" ")) <= ASCII_PUNCT, piece


def test_pre_tokenizer_pieces(tok):
    pieces = [p for p, _ in tok.pre_tokenizer.pre_tokenize_str("x == y...\n\nif(a)")]
    assert pieces == ["x", "Ġ==", "Ġy", "...", "Ċ", "Ċ", "if", "(", "a", ")"]
    assert [p for p, _ in tok.pre_tokenizer.pre_tokenize_str("a\r\n\n  b\n\n")] == ["a", "čĊ", "Ċ", "Ġ", "Ġb", "Ċ", "Ċ"]
    # punctuation is split before the GPT-2 regex, so contractions split too (as in DeepSeek's)
    assert [p for p, _ in tok.pre_tokenizer.pre_tokenize_str("it's")] == ["it", "'", "s"]


# ---------------------------------------------------------------------------------------------
# special tokens
# ---------------------------------------------------------------------------------------------


def test_special_tokens_are_single_ids(tok):
    ids = special_token_ids(tok)
    for token, token_id in ids.items():
        assert tok.encode(token).ids == [token_id]
        assert tok.encode(f"a {token}b").ids.count(token_id) == 1
        assert tok.decode([token_id], skip_special_tokens=False) == token


LOOKALIKES = ["<|EOS|>", "< |eos|>", "<|eos| >", "<|eos", "eos|>", "<|e os|>", "<|eos|\u200b>",
              "<think >", "< think>", "<Think>", "</ think>", "<|fim_prefix>", "<answer", "||eos||"]


def test_lookalikes_never_become_special_ids(tok):
    special = set(special_token_ids(tok).values())
    for text in LOOKALIKES:
        assert not special & set(tok.encode(text).ids), text
        assert tok.decode(tok.encode(text).ids, skip_special_tokens=False) == text


special_soup = st.lists(st.sampled_from(["<", "|", ">", "/", " ", "eos", "bos", "think", "fim_", "prefix",
                                         "answer", "_", "e", "x"] + list(SPECIAL_TOKENS)), max_size=25)


@PROPERTY
@given(parts=special_soup)
def test_special_ids_only_from_the_exact_literal(tok, parts):
    """Default encode: a special id appears exactly where its literal appears. Corpus encode
    (``encode_documents``): never, the literal is ordinary text; both round-trip."""
    text = "".join(parts)
    ids = special_token_ids(tok)
    encoded = tok.encode(text).ids
    # occurrences of literals, scanning left to right like the added-token matcher
    expected, i = Counter(), 0
    while i < len(text):
        hit = next((t for t in SPECIAL_TOKENS if text.startswith(t, i)), None)
        if hit:
            expected[hit] += 1
            i += len(hit)
        else:
            i += 1
    assert {t: encoded.count(ids[t]) for t in SPECIAL_TOKENS} == {t: expected[t] for t in SPECIAL_TOKENS}
    [plain] = encode_documents(tok, [text])
    assert not set(ids.values()) & set(plain.tolist())
    assert tok.decode(plain.tolist(), skip_special_tokens=False) == text


# ---------------------------------------------------------------------------------------------
# saving
# ---------------------------------------------------------------------------------------------


def test_save_and_load(tok, tmp_path):
    folder = tmp_path / "tok" / "v1"
    save_tokenizer(tok, str(folder), model_max_length=2048)
    loaded = Tokenizer.from_file(str(folder / "tokenizer.json"))
    sample = "Hello 2024 <|eos|> 数据 😀\n"
    assert loaded.encode(sample).ids == tok.encode(sample).ids
    config = json.loads((folder / "tokenizer_config.json").read_text())
    special_map = json.loads((folder / "special_tokens_map.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert (config["bos_token"], config["eos_token"], config["pad_token"]) == ("<|bos|>", "<|eos|>", "<|pad|>")
    assert config["model_max_length"] == 2048
    ids = special_token_ids(tok)
    assert {v["content"]: int(k) for k, v in config["added_tokens_decoder"].items()} == ids
    assert all(v["special"] for v in config["added_tokens_decoder"].values())
    assert special_map["eos_token"] == EOS
    assert set(special_map["additional_special_tokens"]) | {"<|bos|>", "<|eos|>", "<|pad|>"} == set(SPECIAL_TOKENS)
    # any fsspec filesystem
    save_tokenizer(tok, "memory://deeprecipe-test/tok")
    assert load_tokenizer("memory://deeprecipe-test/tok").to_str() == tok.to_str()


# ---------------------------------------------------------------------------------------------
# packing
# ---------------------------------------------------------------------------------------------

EOS_ID = 1
documents = st.lists(st.integers(0, 40), max_size=30).map(
    lambda lengths: [np.arange(1000 * i + 2, 1000 * i + 2 + n, dtype=np.uint32) for i, n in enumerate(lengths)])


@PROPERTY
@given(docs=documents, seq_len=st.integers(1, 33))
def test_packing_keeps_every_token_once(docs, seq_len):
    rows, dropped = pack_sequences(docs, seq_len, EOS_ID)
    stream = np.concatenate([np.append(d, np.uint32(EOS_ID)) for d in docs]) if docs else np.empty(0, np.uint32)
    assert rows.dtype == np.uint32 and rows.ndim == 2 and rows.shape[1] == seq_len + 1
    assert rows.size + dropped == len(stream)
    assert 0 <= dropped < seq_len + 1
    assert np.array_equal(rows.ravel(), stream[:rows.size])
    # each document token (all distinct) appears exactly once across rows + tail
    counts = Counter(rows.ravel().tolist()) + Counter(stream[rows.size:].tolist())
    assert all(counts[t] == 1 for d in docs for t in d.tolist())
    assert counts[EOS_ID] == len(docs)


@PROPERTY
@given(docs=documents, seq_len=st.integers(1, 17), cut=st.integers(0, 30))
def test_streaming_packer_matches_one_shot(docs, seq_len, cut):
    packer = SequencePacker(seq_len, EOS_ID)
    for d in docs[:cut]:
        packer.add(d, "a")
    first, src_first = packer.take_rows()
    for d in docs[cut:]:
        packer.add(d, "b")
    second, src_second = packer.take_rows()
    dropped = packer.finish()
    rows, dropped_once = pack_sequences(docs, seq_len, EOS_ID)
    assert np.array_equal(np.concatenate([first, second]), rows) and dropped == dropped_once
    n_a = sum(len(d) + 1 for d in docs[:cut])
    got = source_token_counts(np.concatenate([src_first, src_second]), packer.source_names)
    assert got.get("a", 0) == min(n_a, rows.size)
    assert got.get("a", 0) + got.get("b", 0) == rows.size


def test_finish_refuses_full_rows():
    packer = SequencePacker(3, EOS_ID)
    packer.add(np.arange(2, 10, dtype=np.uint32))
    with pytest.raises(RuntimeError):
        packer.finish()


# ---------------------------------------------------------------------------------------------
# FIM
# ---------------------------------------------------------------------------------------------

no_sentinels = unicode_text.filter(lambda t: "<|fim_" not in t)


@PROPERTY
@given(text=no_sentinels, seed=st.integers(0, 2**32 - 1))
def test_fim_psm_reassembles(text, seed):
    out = apply_fim(text, np.random.default_rng(seed), rate=1.0)
    assert out.startswith(FIM_PREFIX)
    assert [out.count(s) for s in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE)] == [1, 1, 1]
    prefix, rest = out[len(FIM_PREFIX):].split(FIM_SUFFIX)
    suffix, middle = rest.split(FIM_MIDDLE)
    assert prefix + middle + suffix == text
    assert apply_fim(text, np.random.default_rng(seed), rate=1.0) == out           # deterministic
    assert apply_fim(text, np.random.default_rng(seed), rate=0.0) == text


def test_fim_rate_is_respected():
    rng = np.random.default_rng(7)
    hits = sum(fim_split("some document text", rng, 0.1) is not None for _ in range(4000))
    assert 330 < hits < 470          # 400 ± ~4.5 sigma


@PROPERTY
@given(text=no_sentinels, seed=st.integers(0, 1000))
def test_fim_encoding_matches_psm_text(tok, text, seed):
    split = fim_split(text, np.random.default_rng(seed), 1.0)
    [ids] = encode_with_fim(tok, [text], [split])
    ids_list = ids.tolist()
    sid = special_token_ids(tok)
    assert [ids_list.count(sid[s]) for s in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE)] == [1, 1, 1]
    assert ids_list.index(sid[FIM_PREFIX]) == 0 < ids_list.index(sid[FIM_SUFFIX]) < ids_list.index(sid[FIM_MIDDLE])
    assert tok.decode(ids_list, skip_special_tokens=False) == split.psm()
    [plain] = encode_with_fim(tok, [text], [None])
    assert np.array_equal(plain, encode_documents(tok, [text])[0])


def test_fim_split_of_empty_text():
    assert fim_split("", np.random.default_rng(0), 1.0) == FimSplit("", "", "")


# ---------------------------------------------------------------------------------------------
# mixture
# ---------------------------------------------------------------------------------------------

COUNTS = {"web": 9_000_000, "code": 900_000, "math": 90_000, "empty": 0}


def test_mixture_weights_limits():
    natural = mixture_weights(COUNTS, 1.0)
    total = sum(COUNTS.values())
    assert all(math.isclose(natural[s], n / total) for s, n in COUNTS.items())
    uniform = mixture_weights(COUNTS, math.inf)
    assert uniform == {"web": 1 / 3, "code": 1 / 3, "math": 1 / 3, "empty": 0.0}
    near_uniform = mixture_weights(COUNTS, 1e9)
    assert all(abs(near_uniform[s] - 1 / 3) < 1e-6 for s in ("web", "code", "math"))
    maxima = [max(mixture_weights(COUNTS, t).values()) for t in (0.5, 1, 2, 5, 50)]
    assert maxima == sorted(maxima, reverse=True)      # higher T flattens
    assert math.isclose(sum(mixture_weights(COUNTS, 3.3).values()), 1.0)
    with pytest.raises(ValueError):
        mixture_weights(COUNTS, 0)


def test_sampling_rates_reach_target_shares():
    rates = sampling_rates(COUNTS, 2.0, target_tokens=5_000_000)
    weights = mixture_weights(COUNTS, 2.0)
    sampled = {s: rates[s] * n for s, n in COUNTS.items()}
    assert math.isclose(sum(sampled.values()), 5_000_000)
    assert all(math.isclose(sampled[s] / 5_000_000, weights[s]) for s in COUNTS)


def test_sampling_rates_pin_fixed_shares():
    counts = {**COUNTS, "<reasoning>": 40_000}
    rates = sampling_rates(counts, 2.0, fixed_shares={"<reasoning>": 0.4})
    sampled = {s: rates[s] * n for s, n in counts.items()}
    total = sum(sampled.values())
    assert math.isclose(sampled["<reasoning>"] / total, 0.4)
    assert math.isclose(total, sum(COUNTS.values()) / 0.6)     # the web keeps its own size
    web = mixture_weights(COUNTS, 2.0)                          # the rest: temperature shares
    assert all(math.isclose(sampled[s] / total, 0.6 * web[s]) for s in COUNTS)
    assert sampling_rates(counts, 2.0, fixed_shares={"<reasoning>": 0.0})["<reasoning>"] == 0.0
    for bad in ({"<reasoning>": 1.0}, {"<reasoning>": -0.1}, {"absent": 0.2}):
        with pytest.raises(ValueError):
            sampling_rates(counts, 2.0, fixed_shares=bad)


def test_pack_table_parses_special_tokens_only_when_asked(tok):
    table = pa.table({"text": ["Compute 2 + 2.\n<think>\n2 + 2 = 4\n</think>\n<answer>4</answer>"],
                      "source": ["<reasoning>"]})
    think = tok.token_to_id("<think>")
    for parse, want in ((False, 0), (True, 1)):
        packed = pack_table(tok, table, seq_len=8, split="train", val_fraction=0.0, seed=0,
                            parse_special=parse)
        assert int((packed.tokens_NL == think).sum()) == want
    counts = [count_source_tokens(tok, table, val_fraction=0.0, seed=0, parse_special=p)["<reasoning>"]
              for p in (False, True)]
    assert counts[1] < counts[0]       # four tags: one id each instead of several byte tokens


def test_document_repeats_are_deterministic_with_the_right_mean():
    keys = [f"doc-{i}" for i in range(20000)]
    for rate in (0.3, 1.0, 2.7):
        copies = document_repeats(keys, rate, seed=5)
        assert np.array_equal(copies, document_repeats(keys, rate, seed=5))
        assert set(np.unique(copies)) <= {math.floor(rate), math.floor(rate) + 1}
        assert abs(copies.mean() - rate) < 0.02


# ---------------------------------------------------------------------------------------------
# validation split
# ---------------------------------------------------------------------------------------------


def test_validation_split_deterministic_disjoint_order_free():
    ids = [document_key(f"document number {i}") for i in range(20000)]
    mask = validation_split(ids, 0.1, seed=3)
    assert np.array_equal(mask, validation_split(ids, 0.1, seed=3))
    assert abs(mask.mean() - 0.1) < 0.01
    perm = np.random.default_rng(0).permutation(len(ids))
    assert np.array_equal(validation_split([ids[i] for i in perm], 0.1, seed=3), mask[perm])
    val, train = {i for i, m in zip(ids, mask) if m}, {i for i, m in zip(ids, mask) if not m}
    assert not val & train and len(val) + len(train) == len(ids)
    assert not np.array_equal(validation_split(ids, 0.1, seed=4), mask)
    assert not validation_split(ids, 0.0, seed=3).any() and validation_split(ids, 1.0, seed=3).all()
    assert (validation_split(ids, 0.05, seed=3) <= mask).all()      # nested in the fraction
    with pytest.raises(ValueError):
        validation_split(ids, 1.5, seed=3)


# ---------------------------------------------------------------------------------------------
# one shard end to end
# ---------------------------------------------------------------------------------------------


def _table(n: int) -> pa.Table:
    rng = random.Random(1)
    texts = [f"doc{i:05d} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 40))) for i in range(n)]
    sources = [rng.choice(["web", "web", "web", "code", "math"]) for _ in range(n)]
    return pa.table({"text": texts + [None, "", "doc-nosource"], "source": sources + ["web", "web", None]})


def _docs_in(tok, rows) -> list[str]:
    text = tok.decode(rows.ravel().tolist(), skip_special_tokens=False)
    return text.split(EOS)[1:-1]          # complete documents only


def test_pack_table_split_mixture_fim_and_counts(tok):
    table = _table(1200)
    common = dict(seq_len=64, val_fraction=0.1, seed=11)
    counts = count_source_tokens(tok, table, val_fraction=0.1, seed=11)
    rates = sampling_rates(counts, temperature=math.inf)
    train = pack_table(tok, table, split="train", source_rates=rates, fim_rate=0.2, **common)
    val = pack_table(tok, table, split="validation", fim_rate=0.2, **common)
    # deterministic
    again = pack_table(tok, table, split="train", source_rates=rates, fim_rate=0.2, **common)
    assert np.array_equal(again.tokens_NL, train.tokens_NL)
    # split: disjoint documents, every non-empty input on one side
    assert train.stats.input_docs + val.stats.input_docs == 1201
    assert "unknown" in counts or val.stats.docs_per_source["unknown"] == 1
    names = lambda docs: {d.split()[0].replace(FIM_PREFIX, "") for d in docs if d.startswith(("doc", FIM_PREFIX + "doc"))}
    train_docs, val_docs = names(_docs_in(tok, train.tokens_NL)), names(_docs_in(tok, val.tokens_NL))
    assert train_docs and val_docs and not train_docs & val_docs
    # validation: no FIM, no re-sampling
    assert val.stats.fim_applied == 0 and val.stats.docs == val.stats.input_docs
    assert FIM_PREFIX not in tok.decode(val.tokens_NL.ravel().tolist(), skip_special_tokens=False)
    assert 0.1 < train.stats.fim_applied / train.stats.docs < 0.3
    # uniform mixture (T = inf): each source (web, code, math, unknown: one tiny document
    # up-sampled hundreds of times) near 1/4 of the tokens, the same share each (FIM adds a few)
    shares = {s: n / train.stats.tokens for s, n in train.stats.tokens_per_source.items()}
    assert set(shares) == set(counts) and all(abs(v - 1 / len(counts)) < 0.06 for v in shares.values()), shares
    # accounting
    for shard in (train, val):
        assert shard.tokens_NL.shape[1] == 65
        assert shard.stats.tokens == shard.tokens_NL.size + shard.stats.dropped_tail_tokens
        assert sum(source_token_counts(shard.sources_NL, shard.source_names).values()) == shard.tokens_NL.size
    with pytest.raises(KeyError, match="math"):
        pack_table(tok, table, split="train", source_rates={"web": 1.0, "code": 1.0}, **common)


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_shard_files_and_index(tok, fmt):
    shard = pack_table(tok, _table(300), seq_len=32, split="train", val_fraction=0.0, seed=0)
    buf = io.BytesIO()
    write_shard(shard.tokens_NL, buf, fmt)
    buf.seek(0)
    back = read_shard(buf, fmt)
    assert back.dtype == np.uint32 and np.array_equal(back, shard.tokens_NL)
    path = f"memory://deeprecipe-test/shards/part-00000.{fmt}"
    with fsspec.open(path, "wb") as f:
        write_shard(shard.tokens_NL, f, fmt)
    with fsspec.open(path, "rb") as f:
        assert np.array_equal(read_shard(f, fmt), shard.tokens_NL)
    entry = shard_index_entry(f"part-00000.{fmt}", shard)
    index = build_index([entry, entry], seq_len=32, fmt=fmt, split="train",
                        stats=shard.stats.merge(shard.stats))
    assert index["sequences"] == 2 * len(shard.tokens_NL)
    assert sum(index["tokens_per_source"].values()) == index["tokens"] == 2 * shard.tokens_NL.size
    assert index["stats"]["docs"] == 2 * shard.stats.docs
    text = io.StringIO()
    write_index(index, text)
    assert json.loads(text.getvalue()) == index


def test_pack_stats_merge():
    a = PackStats(docs=2, tokens=10, tokens_per_source=Counter(web=10))
    b = PackStats(docs=1, tokens=5, dropped_tail_tokens=3, tokens_per_source=Counter(web=2, code=3))
    m = a.merge(b).to_dict()
    assert (m["docs"], m["tokens"], m["dropped_tail_tokens"]) == (3, 15, 3)
    assert m["tokens_per_source"] == {"code": 3, "web": 12}


def test_document_rng_is_keyed():
    a = document_rng(b"k", 1, "fim").random(3)
    assert np.array_equal(a, document_rng(b"k", 1, "fim").random(3))
    assert not np.array_equal(a, document_rng(b"k", 2, "fim").random(3))


def test_saved_tokenizer_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    tok = train_tokenizer(["The council met on 12 May. <think>why</think>"] * 50, 400)
    save_tokenizer(tok, str(tmp_path))
    fast = transformers.PreTrainedTokenizerFast.from_pretrained(str(tmp_path))
    assert (fast.bos_token, fast.eos_token, fast.pad_token) == ("<|bos|>", "<|eos|>", "<|pad|>")
    text = "The council met on 2026-11-23."
    assert fast(text)["input_ids"] == tok.encode(text).ids
    assert fast.decode(fast(text)["input_ids"]) == text
