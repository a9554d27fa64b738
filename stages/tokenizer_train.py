"""Byte-level BPE tokenizer (DeepSeek style) trained with HF ``tokenizers``.

Pre-tokenization, in order (a BPE merge never crosses a pre-token boundary):

1. line breaks (``\\r\\n``, ``\\r``, ``\\n``) are isolated, one pre-token each;
2. runs of punctuation/symbols (``\\p{P}``, ``\\p{S}``, with one optional leading space) are
   isolated, so ``" =="`` or ``"..."`` may merge but never with letters;
3. every digit is its own pre-token (``Digits(individual_digits=True)``): numbers become digit
   sequences, ``"2024"`` -> ``2 0 2 4``;
4. ``ByteLevel`` (GPT-2 regex: words with one leading space, whitespace runs) maps bytes to
   the 256-symbol byte alphabet, so every string is encodable and nothing is ``<unk>``.

No normalizer: ``decode(encode(text)) == text`` for every string (no NFC, no stripping).
No post-processor: ``encode`` adds nothing; packing appends ``<|eos|>`` itself.

Special tokens (``SPECIAL_TOKENS``) take ids ``0 .. len(SPECIAL_TOKENS)-1`` in that order.
They are "added tokens": with the tokenizer's default settings the exact literal string (e.g.
``"<|eos|>"``) in input text is matched to the special id; anything spelled differently
(``"< |eos| >"``, ``"<|EOS|>"``, ``"<|eos"``) is ordinary text. ``stages.tokenize_pack`` encodes
corpus text with that matching switched off (``encode_special_tokens = True``), so a crawled
page that contains ``"<|eos|>"`` gets ordinary tokens, never a control id.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from collections.abc import Iterable, Iterator

import fsspec
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from deeprecipe.pipeline.config import option

BOS = "<|bos|>"
EOS = "<|eos|>"
PAD = "<|pad|>"
SYSTEM = "<|system|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX = "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"

SPECIAL_TOKENS: tuple[str, ...] = (
    BOS, EOS, PAD, SYSTEM, USER, ASSISTANT,
    THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE,
    FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX,
)
BYTE_ALPHABET_SIZE = 256
MIN_VOCAB_SIZE = BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS)

LINE_BREAK_PATTERN = r"\r\n|\r|\n"
PUNCTUATION_PATTERN = r" ?[\p{P}\p{S}]+"


@dataclass(frozen=True)
class TokenizerTrainConfig:
    vocab_size: int = option("BPE vocabulary size, special tokens included")
    min_frequency: int = option("a merge needs a pair seen at least this often")
    max_docs: int = option("documents to train on (first N by shard order)")


def build_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Line breaks, punctuation runs, single digits, then GPT-2 byte-level words."""
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LINE_BREAK_PATTERN), behavior="isolated"),
        pre_tokenizers.Split(Regex(PUNCTUATION_PATTERN), behavior="isolated"),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])


def new_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE tokenizer with the recipe's pre-tokenizer and decoder."""
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = build_pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    return tok


def train_tokenizer(texts_iter: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """Train BPE on ``texts_iter`` (consumed once) up to ``vocab_size`` ids, specials included.

    The vocabulary always holds the specials (ids 0..12) and all 256 byte symbols; merges fill
    the rest, each seen at least ``min_frequency`` times (so a small corpus may end below
    ``vocab_size``). tiny profile: 2K-4K; small: 32K; V3: 129,280.
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"vocab_size={vocab_size} is below {MIN_VOCAB_SIZE} "
                         f"(256 byte symbols + {len(SPECIAL_TOKENS)} special tokens); raise it")
    tok = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_strings(texts_iter), trainer=trainer)
    return tok


def _strings(texts: Iterable[str]) -> Iterator[str]:
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text #{i} is {type(text).__name__}, not str; pass decoded text "
                            "(drop nulls before training)")
        yield text


def special_token_ids(tok: Tokenizer) -> dict[str, int]:
    """``{special token: id}`` for every entry of ``SPECIAL_TOKENS``; raises if one is missing."""
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    missing = [t for t, i in ids.items() if i is None]
    if missing:
        raise ValueError(f"tokenizer lacks special tokens {missing}; train it with train_tokenizer")
    return ids


# ---------------------------------------------------------------------------------------------
# saving / loading (any fsspec URL: local path, s3://...)
# ---------------------------------------------------------------------------------------------

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_MAP_FILE = "special_tokens_map.json"


def transformers_config(tok: Tokenizer, model_max_length: int) -> tuple[dict, dict]:
    """(``tokenizer_config.json``, ``special_tokens_map.json``) contents for
    ``transformers.PreTrainedTokenizerFast.from_pretrained``."""
    ids = special_token_ids(tok)
    roles = {BOS: "bos_token", EOS: "eos_token", PAD: "pad_token"}
    extra = [t for t in SPECIAL_TOKENS if t not in roles]
    special_map = {role: token for token, role in roles.items()}
    special_map["additional_special_tokens"] = extra
    added = {str(ids[t]): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                           "single_word": False, "special": True} for t in SPECIAL_TOKENS}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        **special_map,
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
    }
    return config, special_map


def save_tokenizer(tok: Tokenizer, folder: str, model_max_length: int = 4096) -> list[str]:
    """Write ``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json`` into
    ``folder`` (created if needed; any fsspec URL). Returns the written file paths."""
    config, special_map = transformers_config(tok, model_max_length)
    fs, root = fsspec.core.url_to_fs(folder)
    fs.makedirs(root, exist_ok=True)
    contents = {TOKENIZER_FILE: tok.to_str(pretty=True),
                CONFIG_FILE: json.dumps(config, indent=2, ensure_ascii=False),
                SPECIAL_MAP_FILE: json.dumps(special_map, indent=2, ensure_ascii=False)}
    paths = []
    for name, text in contents.items():
        path = f"{root.rstrip('/')}/{name}"
        with fs.open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        paths.append(path)
    return paths


def load_tokenizer(folder: str) -> Tokenizer:
    """Read ``folder/tokenizer.json`` (any fsspec URL)."""
    with fsspec.open(f"{folder.rstrip('/')}/{TOKENIZER_FILE}", "r", encoding="utf-8") as f:
        return Tokenizer.from_str(f.read())
