"""Generated prose in four languages (en, de, fr, es): a small grammar over real stop words and
generated content words per language (``Lexicon``), so n-gram statistics are learnable and
unrelated documents share no 5-grams by accident; and pairs of texts at a measured word-5-gram
Jaccard (near-duplicates and far pairs), measured with ``text.word_shingles``.

Prose generators take an optional ``sentence`` source (``SentenceFn``) and ``near_duplicate``
an optional ``vocabulary``, so the crawl generator fills the same structures with its news-site
language packs."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

from deeprecipe.stages.text import word_shingles

LANGS = ("en", "de", "fr", "es")

SentenceFn = Callable[[random.Random], str]
"""A source of natural sentences: ``sentence(rng) -> str``.  Generators that write prose take
one optionally (default: this module's own grammar, ``natural_sentence(rng, lang)``), so the
crawl generator can fill the same labelled structures with its news-site language packs."""

STOP = {
    "en": dict(det=["the", "a", "this", "that", "every", "some"], prep=["of", "in", "with", "for", "on", "from", "to"],
               conj=["and", "but", "because", "while", "so"], aux=["is", "was", "has been", "will be", "can be"],
               pron=["it", "they", "we", "he", "she"]),
    "de": dict(det=["der", "die", "das", "ein", "eine", "jeder"], prep=["von", "mit", "in", "auf", "für", "zu"],
               conj=["und", "aber", "weil", "während", "denn"], aux=["ist", "war", "wird", "kann", "hat"],
               pron=["es", "sie", "wir", "er", "man"]),
    "fr": dict(det=["le", "la", "les", "un", "une", "ce"], prep=["de", "dans", "avec", "pour", "sur", "à"],
               conj=["et", "mais", "parce que", "tandis que", "donc"], aux=["est", "était", "sera", "peut être", "a été"],
               pron=["il", "elle", "nous", "ils", "on"]),
    "es": dict(det=["el", "la", "los", "un", "una", "este"], prep=["de", "en", "con", "para", "sobre", "a"],
               conj=["y", "pero", "porque", "mientras", "así que"], aux=["es", "era", "será", "puede ser", "ha sido"],
               pron=["él", "ella", "nosotros", "ellos", "se"]),
}
_SYLLABLES = {
    "en": (["b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "st", "tr", "pl"], ["a", "e", "i", "o", "u", "ea", "ou"]),
    "de": (["b", "d", "f", "g", "k", "l", "m", "n", "r", "s", "t", "sch", "st", "z", "w"], ["a", "e", "i", "o", "u", "ei", "au", "ä", "ü"]),
    "fr": (["b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "ch"], ["a", "e", "i", "o", "ou", "é", "eu", "ai"]),
    "es": (["b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "ll", "ñ"], ["a", "e", "i", "o", "u", "ia", "ue"]),
}


@dataclass
class Lexicon:
    """Stop words and generated content words of one language."""

    lang: str
    nouns: list[str]
    verbs: list[str]
    adjs: list[str]

    def pick(self, rng: random.Random, words: list[str]) -> str:
        # mild Zipf: index ~ floor(n * u**1.6)
        return words[int(len(words) * rng.random() ** 1.6)]


def make_lexicon(lang: str, seed: int = 7, nouns: int = 2500, verbs: int = 900, adjs: int = 700) -> Lexicon:
    """Content words for ``lang`` from a fixed seed (identical across corpora of any seed)."""
    rng = random.Random(f"{lang}-{seed}")
    cons, vows = _SYLLABLES[lang]
    stop = {w for ws in STOP[lang].values() for w in ws}
    seen: set[str] = set()

    def words(n: int, suffix: str) -> list[str]:
        out = []
        while len(out) < n:
            w = "".join(rng.choice(cons) + rng.choice(vows) for _ in range(rng.randint(2, 3))) + suffix
            if w not in seen and w not in stop:
                seen.add(w)
                out.append(w)
        return out

    return Lexicon(lang, words(nouns, ""), words(verbs, {"en": "s", "de": "t", "fr": "e", "es": "a"}[lang]), words(adjs, ""))


_LEXICONS: dict[str, Lexicon] = {}


def lexicon(lang: str) -> Lexicon:
    if lang not in _LEXICONS:
        _LEXICONS[lang] = make_lexicon(lang)
    return _LEXICONS[lang]


# ---------------------------------------------------------------------------------------------
# natural text
# ---------------------------------------------------------------------------------------------


def noun_phrase(rng: random.Random, lx: Lexicon) -> str:
    s = STOP[lx.lang]
    parts = [rng.choice(s["det"])]
    if rng.random() < 0.5:
        parts.append(lx.pick(rng, lx.adjs))
    parts.append(lx.pick(rng, lx.nouns))
    if rng.random() < 0.35:
        parts += [rng.choice(s["prep"]), rng.choice(s["det"]), lx.pick(rng, lx.nouns)]
    return " ".join(parts)


def clause(rng: random.Random, lx: Lexicon) -> str:
    s = STOP[lx.lang]
    subj = noun_phrase(rng, lx) if rng.random() < 0.8 else rng.choice(s["pron"])
    if rng.random() < 0.3:
        return f"{subj} {rng.choice(s['aux'])} {lx.pick(rng, lx.adjs)} {rng.choice(s['prep'])} {noun_phrase(rng, lx)}"
    return f"{subj} {lx.pick(rng, lx.verbs)} {noun_phrase(rng, lx)}"


def natural_sentence(rng: random.Random, lang: str) -> str:
    """One sentence of 6-30 words, capitalised, ending in '.', '!' or '?'."""
    lx = lexicon(lang)
    text = clause(rng, lx)
    while rng.random() < 0.55 and len(text.split()) < 22:
        text += f"{rng.choice([',', ''])} {rng.choice(STOP[lang]['conj'])} {clause(rng, lx)}"
    end = rng.choices([".", "!", "?"], [0.9, 0.04, 0.06])[0]
    return text[0].upper() + text[1:] + end


def sentence_source(lang: str, sentence: SentenceFn | None) -> SentenceFn:
    return sentence if sentence is not None else (lambda rng: natural_sentence(rng, lang))


def natural_page(rng: random.Random, lang: str, min_words: int = 150, max_words: int = 400,
                 sentence: SentenceFn | None = None) -> str:
    """Paragraphs (lines) of natural sentences, ``min_words..max_words`` words; sentences from
    ``sentence`` (default: ``natural_sentence`` of ``lang``)."""
    sentence = sentence_source(lang, sentence)
    target = rng.randint(min_words, max_words)
    paras, n = [], 0
    while n < target:
        para = " ".join(sentence(rng) for _ in range(rng.randint(2, 5)))
        paras.append(para)
        n += len(para.split())
    return "\n".join(paras)


# ---------------------------------------------------------------------------------------------
# near-duplicate and far pairs at measured Jaccard
# ---------------------------------------------------------------------------------------------


def shingle_jaccard(a: str, b: str, n: int = 5) -> float:
    """True Jaccard of the word n-gram shingle sets (``text.normalise_words``)."""
    sa, sb = set(word_shingles(a, n)), set(word_shingles(b, n))
    return len(sa & sb) / max(1, len(sa | sb))


def near_duplicate(rng: random.Random, text: str, target: float, lang: str = "en",
                   vocabulary: Sequence[str] | None = None, jitter: bool = True) -> tuple[str, float]:
    """Copy of ``text`` edited word by word (substitute / delete / insert) until the shingle
    Jaccard reaches ``target``; returns the copy closest to ``target`` and its measured Jaccard.
    Substituted and inserted words come from ``vocabulary`` (default: the generated lexicon of
    ``lang``). Line structure is kept; with ``jitter`` a doubled space is added (invisible to
    shingles, and to HTML, which collapses it)."""
    lx = lexicon(lang)
    substitutes = list(vocabulary) if vocabulary is not None else lx.nouns + lx.adjs
    inserts = list(vocabulary) if vocabulary is not None else lx.nouns
    lines = [line.split(" ") for line in text.split("\n")]
    best, best_j = text, 1.0
    for _ in range(400):
        li = rng.randrange(len(lines))
        words = lines[li]
        i = rng.randrange(len(words))
        op = rng.random()
        if op < 0.6:
            words[i] = lx.pick(rng, substitutes)
        elif op < 0.8 and len(words) > 3:
            del words[i]
        else:
            words.insert(i, lx.pick(rng, inserts))
        cand = "\n".join(" ".join(w) for w in lines)
        j = shingle_jaccard(text, cand)
        if abs(j - target) < abs(best_j - target):
            best, best_j = cand, j
        if j <= target:
            break
    if jitter:  # invisible to the normalised shingles
        best = best.replace(". ", ".  ", 1)
    return best, shingle_jaccard(text, best)


def near_duplicate_sentences(rng: random.Random, paragraphs: Sequence[Sequence[str]], target: float,
                             sentence: SentenceFn, phrases: Sequence[Sequence[str]] = (),
                             ) -> tuple[list[list[str]], float]:
    """An edited re-publication of an article given as paragraphs of sentences: edits that keep
    the text natural (a phrase swapped for another of its group in ``phrases``, a sentence
    rewritten with a fresh one from ``sentence``, deleted, or added) until the shingle Jaccard
    of the joined texts (paragraphs one per line) reaches ``target``; returns the edited
    paragraphs closest to ``target`` and their measured Jaccard."""
    def joined(ps):
        return "\n".join(" ".join(p) for p in ps if p)

    base = [list(p) for p in paragraphs]
    ref = set(word_shingles(joined(base)))
    # longest first, ties by text: a set's order changes with PYTHONHASHSEED
    groups = [sorted(set(g), key=lambda p: (-len(p), p)) for g in phrases if len(set(g)) > 1]
    cur = [list(p) for p in base]
    best, best_j = [list(p) for p in base], 1.0
    for _ in range(400):
        pi = rng.randrange(len(cur))
        para = cur[pi]
        si = rng.randrange(len(para)) if para else 0
        op = rng.random()
        if op < 0.55 and para and groups:
            text = para[si]
            present = [(g, p) for g in groups for p in g if f" {p}" in f" {text}"]
            if not present:
                continue
            group, old = rng.choice(present)
            para[si] = text.replace(old, rng.choice([p for p in group if p != old]), 1)
        elif op < 0.75 and para:
            para[si] = sentence(rng)
        elif op < 0.85 and sum(map(len, cur)) > 3 and len(para) > 1:
            del para[si]
        else:
            para.insert(rng.randint(0, len(para)), sentence(rng))
        cand = set(word_shingles(joined(cur)))
        j = len(ref & cand) / max(1, len(ref | cand))
        if abs(j - target) < abs(best_j - target):
            best, best_j = [list(p) for p in cur], j
        if j <= target:
            break
    return best, best_j


def far_pair(rng: random.Random, text: str, target: float, lang: str = "en",
             sentence: SentenceFn | None = None) -> tuple[str, float]:
    """A page sharing one contiguous block with ``text`` (rest new, from ``sentence``) at
    Jaccard <= ``target``."""
    words = text.split(" ")
    share = max(0.0, min(1.0, 2 * target / (1 + target)))  # J = s / (2 - s) for equal lengths
    k = int(len(words) * share * 0.97)
    start = rng.randrange(0, len(words) - k + 1)
    fresh = natural_page(rng, lang, len(words) - k, len(words) - k + 5, sentence).split(" ")
    other = " ".join(words[start : start + k] + fresh[: max(1, len(words) - k)])
    return other, shingle_jaccard(text, other)

