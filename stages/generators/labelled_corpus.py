"""Deterministic labelled text corpus for tests and benchmarks of the data-curation stages.

Every generator is a plain function of a ``random.Random``; ``make_corpus(seed)`` assembles
them into ``(docs, truth)``:

- ``docs``: ``id, url, domain, lang, text, kind`` (kind = natural / neardup / farpair / spam_* /
  pii / code / math / boilerplate).
- ``truth``: ``kind, doc_id, other_id, label, value, text`` -- one row per fact to check:
  ``nearpair`` / ``farpair`` (value = TRUE Jaccard of the 5-gram shingle sets, measured with
  ``minhash_dedup.word_shingles``), ``boilerplate`` (a planted cross-site sentence occurrence;
  label ``first`` or ``repeat``; value = 0 for a normalised-exact copy, 1 for a one-word edit),
  ``pii`` (label = placeholder type, text = the planted string), ``lookalike`` (label = what it
  is: version, date, price, isbn, math, code, number, ...; must survive redaction), ``quality``
  (label ``high`` / ``low``), ``topic`` (label ``math`` for math pages).

Text is synthetic: a small grammar over real stop words and generated content words per
language (en, de, fr, es), so n-gram statistics are learnable and unrelated documents share no
5-grams by accident. Prose generators take an optional ``sentence`` source (``SentenceFn``) and
``near_duplicate`` an optional ``vocabulary``, so ``stages.generators.synthetic_crawl`` fills the same
labelled structures with its news-site language packs; the defaults leave ``make_corpus`` as is.

``eval_items(seed, n)``: held-out evaluation items (generated arithmetic word problems) that the
crawl plants verbatim and decontamination uses as its built-in eval set.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Callable, Sequence

import pyarrow as pa

from deeprecipe.stages.minhash_dedup import normalise_words, word_shingles

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


def _sentence_source(lang: str, sentence: SentenceFn | None) -> SentenceFn:
    return sentence if sentence is not None else (lambda rng: natural_sentence(rng, lang))


def natural_page(rng: random.Random, lang: str, min_words: int = 150, max_words: int = 400,
                 sentence: SentenceFn | None = None) -> str:
    """Paragraphs (lines) of natural sentences, ``min_words..max_words`` words; sentences from
    ``sentence`` (default: ``natural_sentence`` of ``lang``)."""
    sentence = _sentence_source(lang, sentence)
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
    """True Jaccard of the word n-gram shingle sets (``minhash_dedup`` normalisation)."""
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


# ---------------------------------------------------------------------------------------------
# spam and low quality
# ---------------------------------------------------------------------------------------------

SPAM_WORDS = ["cheap", "buy", "best", "price", "discount", "casino", "free", "bonus", "win", "online",
              "replica", "watches", "pills", "deal", "offer", "click", "now", "sale"]
LOREM = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
         "et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris").split()


def spam_keyword_stuffing(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(15, 30)):
        lines.append(" ".join(rng.choice(SPAM_WORDS) for _ in range(rng.randint(4, 12))))
    return "\n".join(lines)


def spam_lorem_ipsum(rng: random.Random) -> str:
    paras = []
    for _ in range(rng.randint(3, 6)):
        words = [rng.choice(LOREM) for _ in range(rng.randint(40, 90))]
        paras.append("Lorem ipsum " + " ".join(words) + ".")
    return "\n".join(paras)


def spam_repeated_lines(rng: random.Random, lang: str = "en") -> str:
    base = [natural_sentence(rng, lang) for _ in range(3)]
    return "\n".join(rng.choice(base) for _ in range(rng.randint(20, 40)))


def spam_javascript(rng: random.Random) -> str:
    lines = []
    for i in range(rng.randint(20, 40)):
        v = "".join(rng.choice(string.ascii_lowercase) for _ in range(5))
        lines.append(rng.choice([
            f"var {v} = document.getElementById('{v}{i}');",
            f"function {v}() {{ return window.{v} || {{}}; }}",
            "Please enable JavaScript in your browser to view this page.",
            f"if ({v}.length > {i}) {{ {v}.push({i}); }}",
            f"$('#{v}').on('click', function() {{ {v}({i}); }});",
        ]))
    return "\n".join(lines)


def spam_bullets_ellipsis(rng: random.Random, lang: str = "en") -> str:
    lines = []
    for _ in range(rng.randint(15, 30)):
        words = natural_sentence(rng, lang).rstrip(".!?").split()[: rng.randint(3, 7)]
        lines.append(rng.choice(["• ", "- ", "* "]) + " ".join(words) + rng.choice(["...", "…"]))
    return "\n".join(lines)


SPAM_GENERATORS = {
    "spam_keywords": lambda rng, lang: spam_keyword_stuffing(rng),
    "spam_lorem": lambda rng, lang: spam_lorem_ipsum(rng),
    "spam_repeated": spam_repeated_lines,
    "spam_javascript": lambda rng, lang: spam_javascript(rng),
    "spam_bullets": spam_bullets_ellipsis,
}

# ---------------------------------------------------------------------------------------------
# PII and look-alikes
# ---------------------------------------------------------------------------------------------

_FIRST = ["anna", "john", "maria", "li", "omar", "sofia", "peter", "yuki", "carlos", "emma"]
_LAST = ["smith", "muller", "garcia", "chen", "okafor", "rossi", "dubois", "kim", "novak", "silva"]


def luhn_check_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return luhn_check_digit(number[:-1]) == number[-1]


def iban_check_digits(country: str, bban: str) -> str:
    num = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{98 - int(num) % 97:02d}"


def fake_email(rng: random.Random) -> str:
    sep = rng.choice([".", "_", ""])
    host = rng.choice(["example.com", "mail.example.org", "uni-test.edu", "firma.de", "correo.es"])
    return f"{rng.choice(_FIRST)}{sep}{rng.choice(_LAST)}{rng.randint(1, 99) if rng.random() < 0.3 else ''}@{host}"


def fake_phone(rng: random.Random) -> str:
    area, exch, line = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
    if area % 100 == 11:
        area += 1
    return rng.choice([
        f"({area}) {exch}-{line:04d}", f"{area}-{exch}-{line:04d}", f"{area}.{exch}.{line:04d}",
        f"+1 {area} {exch} {line:04d}", f"+1-{area}-{exch}-{line:04d}",
        f"+44 20 {rng.randint(7000, 8999)} {rng.randint(1000, 9999)}",
        f"+49 30 {rng.randint(1000000, 99999999)}", f"+33 1 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
        f"+34 912 {rng.randint(100, 999)} {rng.randint(100, 999)}",
    ])


def fake_ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    if rng.random() < 0.5:
        return ":".join(groups)
    return "2001:db8::" + ":".join(groups[:3])


def fake_card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("37", 15), ("6011", 16)])
    body = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    num = body + luhn_check_digit(body)
    if length == 15:
        groups = [num[:4], num[4:10], num[10:]]
    else:
        groups = [num[i : i + 4] for i in range(0, 16, 4)]
    return rng.choice([" ", "-", ""]).join(groups)


def fake_ssn(rng: random.Random) -> str:
    area = rng.randint(1, 899)
    area += area == 666
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def fake_iban(rng: random.Random) -> str:
    country, length = rng.choice([("DE", 18), ("GB", 18), ("FR", 23), ("ES", 20), ("NL", 14)])
    if country == "GB":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + "".join(str(rng.randint(0, 9)) for _ in range(14))
    elif country == "NL":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + "".join(str(rng.randint(0, 9)) for _ in range(10))
    else:
        bban = "".join(str(rng.randint(0, 9)) for _ in range(length))
    iban = country + iban_check_digits(country, bban) + bban
    if rng.random() < 0.5:
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


PII_GENERATORS = {"EMAIL": fake_email, "PHONE": fake_phone, "IP_ADDRESS": fake_ip, "CARD": fake_card,
                  "SSN": fake_ssn, "IBAN": fake_iban}


LOOKALIKE_KINDS = ("version", "date", "price", "isbn", "math", "code", "number", "card_invalid",
                   "time", "iban_invalid", "year_range", "decimal")


def lookalike(rng: random.Random, kinds: Sequence[str] = LOOKALIKE_KINDS) -> tuple[str, str]:
    """A string that resembles PII but is not: ``(kind, text)``, kind one of ``kinds``."""
    kind = rng.choice(list(kinds))
    r = rng.randint
    if kind == "version":
        text = rng.choice([f"v{r(0, 9)}.{r(0, 30)}.{r(0, 99)}", f"version {r(1, 9)}.{r(0, 20)}.{r(0, 9)}",
                           f"{r(1, 20)}.{r(0, 9)}.{r(1000, 99999)}.{r(256, 999)}", f"Python {r(2, 3)}.{r(0, 13)}.{r(0, 9)}"])
    elif kind == "date":
        text = rng.choice([f"{r(1990, 2030)}-{r(1, 12):02d}-{r(1, 28):02d}", f"{r(1, 28):02d}/{r(1, 12):02d}/{r(1990, 2030)}",
                           f"{r(1, 28):02d}.{r(1, 12):02d}.{r(1990, 2030)}", f"March {r(1, 28)}, {r(1990, 2030)}"])
    elif kind == "price":
        text = rng.choice([f"${r(1, 9)},{r(100, 999)}.{r(0, 99):02d}", f"€{r(1, 999)}.{r(0, 99):02d}",
                           f"USD {r(10, 99)},{r(100, 999)}", f"£{r(1, 99)}.99"])
    elif kind == "isbn":
        text = rng.choice([f"ISBN 978-{r(0, 9)}-{r(10, 99)}-{r(100000, 999999)}-{r(0, 9)}",
                           f"978-{r(0, 9)}-{r(100, 999)}-{r(10000, 99999)}-{r(0, 9)}", f"0-{r(100, 999)}-{r(10000, 99999)}-{r(0, 9)}"])
    elif kind == "math":
        text = rng.choice([f"{r(2, 99)} + {r(2, 99)} = {r(100, 300)}", f"x^2 + {r(2, 9)}x - {r(2, 9)} = 0",
                           f"{r(100, 999)} * {r(100, 999)} = {r(10000, 999999)}", f"3.{r(10000, 99999)}", f"{r(1, 9)}/{r(2, 9)}"])
    elif kind == "code":
        text = rng.choice([f"arr[{r(0, 255)}][{r(0, 255)}] = 0x{r(0, 0xFFFFFF):06x};", f"std::vector<int> v({r(1, 99)});",
                           f"for (int i = 0; i < {r(10, 999)}; i++)", f"return {{ 'id': {r(1000, 9999)}, 'x': {r(1, 99)} }}"])
    elif kind == "number":
        text = rng.choice([str(r(10**9, 10**10 - 1)), f"{r(1, 999)},{r(100, 999)},{r(100, 999)}", f"order #{r(10**7, 10**8)}"])
    elif kind == "card_invalid":
        body = "4" + "".join(str(r(0, 9)) for _ in range(14))
        bad = str((int(luhn_check_digit(body)) + r(1, 9)) % 10)
        text = " ".join((body + bad)[i : i + 4] for i in range(0, 16, 4))
    elif kind == "time":
        text = rng.choice([f"{r(0, 23):02d}:{r(0, 59):02d}:{r(0, 59):02d}", f"{r(1, 12)}:{r(0, 59):02d} pm"])
    elif kind == "iban_invalid":
        bban = "".join(str(r(0, 9)) for _ in range(18))
        good = iban_check_digits("DE", bban)
        text = "DE" + f"{(int(good) + r(1, 50)) % 97 + 2:02d}" + bban
    elif kind == "year_range":
        text = f"{r(1900, 2000)}-{r(2001, 2030)}"
    else:
        text = f"{r(0, 999)}.{r(0, 999)}.{r(0, 999)}"
    return kind, text


FrameFn = Callable[[random.Random, str], str]
"""Puts a planted string into a sentence: ``frame(rng, item) -> sentence containing item``."""

_EN_FRAMES = ("Contact: {}.", "You can reach us at {} today.", "Ref {} (see above).", "Details: {}", "({})")


def parenthetical_frame(sentence: SentenceFn) -> FrameFn:
    """A frame that writes a natural sentence (from ``sentence``) with the item in parentheses
    before its final punctuation: '... at the town hall (anna.smith@example.com).' Only the
    item itself is new to a language model of the sentence source."""
    def frame(rng: random.Random, item: str) -> str:
        text = sentence(rng)
        end = len(text.rstrip(".!?\u201c\u201d\u00bb\u00ab\"' "))
        return f"{text[:end]} ({item}){text[end:]}"
    return frame


def pii_sentences(rng: random.Random, lang: str = "en", n_pii: int = 4, n_look: int = 4,
                  sentence: SentenceFn | None = None, lookalike_kinds: Sequence[str] = LOOKALIKE_KINDS,
                  n_sentences: int | None = None, frame: FrameFn | None = None,
                  ) -> tuple[list[str], list, list]:
    """``n_sentences`` (default 8-14) natural sentences (from ``sentence``) with ``n_pii`` planted
    PII strings (distinct types) and ``n_look`` look-alikes, each in a sentence of its own made
    by ``frame`` (default: short English frames such as 'Contact: {}.').

    Returns ``(sentences, [(type, planted)], [(kind, lookalike)])``."""
    sentence = _sentence_source(lang, sentence)
    sents = [sentence(rng) for _ in range(n_sentences if n_sentences is not None else rng.randint(8, 14))]
    pii = [(t, PII_GENERATORS[t](rng)) for t in rng.sample(sorted(PII_GENERATORS), n_pii)]
    look = [lookalike(rng, lookalike_kinds) for _ in range(n_look)]
    if frame is None:
        frame = lambda r, item: r.choice(_EN_FRAMES).format(item)  # noqa: E731
    for _, s in pii + look:
        sents.insert(rng.randrange(len(sents) + 1), frame(rng, s))
    return sents, pii, look


def pii_page(rng: random.Random, lang: str = "en", n_pii: int = 4, n_look: int = 4) -> tuple[str, list, list]:
    """Natural page with planted PII and look-alikes between sentences.

    Returns ``(text, [(type, planted)], [(kind, lookalike)])``."""
    sents, pii, look = pii_sentences(rng, lang, n_pii, n_look)
    return " ".join(sents), pii, look


# ---------------------------------------------------------------------------------------------
# code and math
# ---------------------------------------------------------------------------------------------


def code_page(rng: random.Random) -> str:
    lx = lexicon("en")
    out = []
    for _ in range(rng.randint(3, 6)):
        fn, arg = lx.pick(rng, lx.verbs), lx.pick(rng, lx.nouns)
        out += [f"def {fn}_{arg}({arg}, n={rng.randint(1, 9)}):",
                f'    """Return the {lx.pick(rng, lx.adjs)} {arg} of the input."""',
                f"    total = {{}}",
                f"    for i in range(n):",
                f"        total[i] = {arg}[i] * {rng.randint(2, 9)} + 0x{rng.randint(0, 255):02x}",
                f"    return total", ""]
    return "\n".join(out)


def math_sentence(rng: random.Random) -> str:
    lx = lexicon("en")
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    return rng.choice([
        f"Let $f(x) = x^{a} + {b}x$; then the derivative is $f'(x) = {a}x^{a - 1} + {b}$.",
        f"By the theorem of the {lx.pick(rng, lx.nouns)}, every prime $p > {a}$ divides $p^{b} - p$.",
        f"Proof. Suppose $n$ is an integer with $n^2 = {a * a}$; hence $n = \\pm {a}$, which proves the lemma.",
        f"We compute the integral $\\int_0^{a} x^{b} \\, dx = {a}^{b + 1}/{b + 1}$ and the sum of the series.",
        f"The matrix $A$ has eigenvalues $\\lambda_1 = {a}$ and $\\lambda_2 = {b}$, so its determinant is ${a * b}$.",
        f"Consider the equation ${a}x + {b} = 0$; solving for $x$ gives $x = -{b}/{a}$.",
        f"Corollary. If the {lx.pick(rng, lx.nouns)} is bounded then the limit of $a_n$ exists and equals {a}.",
    ])


def math_page(rng: random.Random, sentence: SentenceFn | None = None) -> str:
    """4-8 paragraphs (lines) of 2-4 sentences, ~60 % of them math (LaTeX in ``$...$``), the rest
    from ``sentence`` (default: English ``natural_sentence``)."""
    sentence = _sentence_source("en", sentence)
    paras = []
    for _ in range(rng.randint(4, 8)):
        sents = [math_sentence(rng) if rng.random() < 0.6 else sentence(rng) for _ in range(rng.randint(2, 4))]
        paras.append(" ".join(sents))
    return "\n".join(paras)


# ---------------------------------------------------------------------------------------------
# boilerplate
# ---------------------------------------------------------------------------------------------


def boilerplate_sentences(rng: random.Random, n: int) -> list[str]:
    """Distinct long 'site furniture' sentences (>= 12 words) shared across sites."""
    lx = lexicon("en")
    out = []
    for _ in range(n):
        out.append(rng.choice([
            "By continuing to browse the {a} pages of this {n} you agree to the use of cookies for {b} and {c}.",
            "Subscribe to the {a} newsletter of the {n} to receive weekly updates on {b} offers and {c} news.",
            "All content on this {n} is provided for {a} information only and does not constitute {b} or {c} advice.",
            "Copyright notice: the {a} {n} and all related {b} material are protected by {c} law in every country.",
        ]).format(a=lx.pick(rng, lx.adjs), n=lx.pick(rng, lx.nouns), b=lx.pick(rng, lx.nouns), c=lx.pick(rng, lx.nouns)))
    return out


def boilerplate_variant(rng: random.Random, sentence: str, edit: bool,
                        vocabulary: Sequence[str] | None = None) -> str:
    """Normalisation-level variant (case, punctuation, spaces) or, with ``edit``, one word changed
    (to a word of ``vocabulary``; default: the generated English nouns)."""
    words = sentence.split(" ")
    if edit:
        i = rng.randrange(1, len(words) - 1)
        choices = [w for w in (vocabulary or lexicon("en").nouns) if w.lower() != words[i].lower()]
        words[i] = choices[int(len(choices) * rng.random() ** 1.6)]
    text = " ".join(words)
    return rng.choice([text, text.upper(), text.rstrip(".") + "!", text.replace(" ", "  ", 2), text.lower()])


# ---------------------------------------------------------------------------------------------
# held-out evaluation items (the decontamination targets)
# ---------------------------------------------------------------------------------------------

_EVAL_NAMES = ["Amira", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiroshi", "Ines",
               "Jonas", "Keira", "Lorenzo", "Maya", "Nikolai", "Oona", "Pavel", "Quinn", "Rosa"]
_EVAL_GOODS = ["apples", "notebooks", "tickets", "candles", "bicycles", "lemons", "stamps", "pencils",
               "jars of honey", "bags of rice", "postcards", "tomato plants"]
_EVAL_PLACES = ["market", "bakery", "bookshop", "station kiosk", "harbour stall", "garden centre"]
_EVAL_TOWNS = ["Oakridge", "Belmonte", "Kirchdorf", "Saint-Aubin", "Valverde", "Millbrook", "Torrance",
               "Lindenau", "Castelnou", "Ashford"]


def _eval_purchase(rng: random.Random) -> str:
    name, friend = rng.sample(_EVAL_NAMES, 2)
    goods, place = rng.choice(_EVAL_GOODS), rng.choice(_EVAL_PLACES)
    a, price = rng.randint(12, 96), rng.randint(2, 19)
    b = rng.randint(2, a - 3)
    return (f"Question: {name} buys {a} {goods} at the {place} for {price} dollars each and later gives "
            f"{b} of them to {friend}. How many of the {a} {goods} does {name} keep, and what did "
            f"all {a} cost? Answer: {name} keeps {a - b} {goods}; they cost {a * price} dollars.")


def _eval_train(rng: random.Random) -> str:
    start, end = rng.sample(_EVAL_TOWNS, 2)
    hour, minute, hours = rng.randint(5, 12), rng.randrange(0, 60, 5), rng.randint(2, 9)
    speed, number = rng.randint(35, 140), rng.randint(100, 999)
    return (f"Question: Train {number} leaves {start} at {hour}:{minute:02d} and travels at {speed} "
            f"kilometres per hour towards {end}, which lies {speed * hours} kilometres away. At what "
            f"time does train {number} reach {end} if it never stops? Answer: at "
            f"{hour + hours}:{minute:02d}, after {hours} hours.")


def _eval_garden(rng: random.Random) -> str:
    name = rng.choice(_EVAL_NAMES)
    width, length = rng.randint(3, 99), rng.randint(100, 400)
    return (f"Question: {name} owns a rectangular garden {width} metres wide and {length} metres long. "
            f"How many metres of fence does {name} need around the {width} by {length} garden, and "
            f"what is its area? Answer: {2 * (width + length)} metres of fence and {width * length} "
            f"square metres.")


def _eval_reading(rng: random.Random) -> str:
    name = rng.choice(_EVAL_NAMES)
    per_day, days_total = rng.randint(8, 45), rng.randint(6, 30)
    pages = per_day * days_total - rng.randint(0, per_day - 1)
    after = rng.randint(2, days_total - 1)
    return (f"Question: {name} reads {per_day} pages every evening from a novel with {pages} pages. "
            f"After {after} evenings, how many of the {pages} pages remain unread, and on which evening "
            f"does {name} finish? Answer: {pages - per_day * after} pages remain; {name} finishes on "
            f"evening {days_total}.")


def _eval_sequence(rng: random.Random) -> str:
    first, step, count = rng.randint(2, 60), rng.randint(3, 17), rng.randint(5, 8)
    terms = [first + k * step for k in range(count)]
    name, town = rng.choice(_EVAL_NAMES), rng.choice(_EVAL_TOWNS)
    return (f"Question: {name} writes {terms[0]}, {terms[1]}, {terms[2]} and {terms[3]} on the {town} "
            f"club board. Which number follows {terms[3]}, and what is the sum of {name}'s first "
            f"{count} numbers from {terms[0]} to {terms[-1]}? Answer: {terms[4]}, and the sum is "
            f"{sum(terms)}.")


EVAL_TEMPLATES = (_eval_purchase, _eval_train, _eval_garden, _eval_reading, _eval_sequence)


EVAL_NGRAM = 13  # decontamination's n-gram length (words); eval items share none of this length


def _word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = normalise_words(text)
    return {tuple(words[k:k + n]) for k in range(len(words) - n + 1)}


def eval_items(seed: int, n: int) -> list[str]:
    """The first ``n`` held-out evaluation items of ``seed``: generated arithmetic word problems
    with their answers ("Question: ... Answer: ..."), 39-51 words each, the five templates in
    turn. Item ``i`` is the first candidate of its own random stream ``(seed, i, attempt)`` that
    shares no ``EVAL_NGRAM``-word n-gram with items ``0..i-1``, so a 13-gram match names exactly
    one item, and the list is prefix-stable (``eval_items(s, k) == eval_items(s, n)[:k]``).
    The generated crawl plants some of them verbatim (label ``contaminated``); decontamination
    gets the same list as its built-in eval set."""
    items: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for index in range(n):
        template = EVAL_TEMPLATES[index % len(EVAL_TEMPLATES)]
        for attempt in range(1000):
            text = template(random.Random(f"eval-item/{seed}/{index}/{attempt}"))
            grams = _word_ngrams(text, EVAL_NGRAM)
            if not grams & seen:
                break
        else:  # pragma: no cover - needs thousands of items of one template
            raise ValueError(f"cannot make {n} eval items without shared {EVAL_NGRAM}-grams")
        items.append(text)
        seen |= grams
    return items


# ---------------------------------------------------------------------------------------------
# assembly
# ---------------------------------------------------------------------------------------------

DOC_SCHEMA = pa.schema([("id", pa.string()), ("url", pa.string()), ("domain", pa.string()),
                        ("lang", pa.string()), ("text", pa.string()), ("kind", pa.string())])
TRUTH_SCHEMA = pa.schema([("kind", pa.string()), ("doc_id", pa.string()), ("other_id", pa.string()),
                          ("label", pa.string()), ("value", pa.float64()), ("text", pa.string())])


class _Builder:
    def __init__(self, rng: random.Random):
        self.rng, self.docs, self.truth = rng, [], []

    def add(self, text: str, kind: str, lang: str = "en", domain: str | None = None) -> str:
        i = len(self.docs)
        domain = domain or f"site{self.rng.randint(0, 9999):04d}.{self.rng.choice(['com', 'org', 'net', 'de', 'fr', 'es'])}"
        doc_id = f"doc{i:06d}"
        self.docs.append(dict(id=doc_id, url=f"https://{domain}/{kind}/{i}.html", domain=domain, lang=lang,
                              text=text, kind=kind))
        return doc_id

    def fact(self, kind, doc_id, label, other_id=None, value=None, text=None):
        self.truth.append(dict(kind=kind, doc_id=doc_id, other_id=other_id, label=label, value=value, text=text))


def make_corpus(
    seed: int = 0, natural: int = 200, near_pairs: int = 200, far_pairs: int = 200, spam: int = 100,
    pii: int = 150, code: int = 20, math: int = 60, boilerplate_docs: int = 150,
    math_domains: int = 6,
) -> tuple[pa.Table, pa.Table]:
    """The labelled corpus: ``(docs, truth)`` (see the module docstring for the columns)."""
    b = _Builder(random.Random(seed))
    rng = b.rng
    for _ in range(natural):
        lang = rng.choice(LANGS)
        b.fact("quality", b.add(natural_page(rng, lang), "natural", lang), "high")
    for k in range(near_pairs):
        base = natural_page(rng, "en")
        target = rng.uniform(0.9, 0.99) if k % 4 else rng.uniform(0.6, 0.9)
        other, j = near_duplicate(rng, base, target)
        a, c = b.add(base, "neardup"), b.add(other, "neardup")
        b.fact("nearpair", a, "near", other_id=c, value=j)
    for _ in range(far_pairs):
        base = natural_page(rng, "en")
        other, j = far_pair(rng, base, rng.uniform(0.05, 0.5))
        a, c = b.add(base, "farpair"), b.add(other, "farpair")
        b.fact("farpair", a, "far", other_id=c, value=j)
    kinds = sorted(SPAM_GENERATORS)
    for k in range(spam):
        kind = kinds[k % len(kinds)]
        b.fact("quality", b.add(SPAM_GENERATORS[kind](rng, "en"), kind), "low")
    for _ in range(pii):
        text, planted, looks = pii_page(rng)
        d = b.add(text, "pii")
        for t, s in planted:
            b.fact("pii", d, t, text=s)
        for t, s in looks:
            b.fact("lookalike", d, t, text=s)
    for _ in range(code):
        b.add(code_page(rng), "code")
    mdomains = [f"math{i}.example.edu" for i in range(math_domains)]
    for _ in range(math):
        b.fact("topic", b.add(math_page(rng), "math", domain=rng.choice(mdomains)), "math")
    shared = boilerplate_sentences(rng, 12)
    seen: set[int] = set()
    for _ in range(boilerplate_docs):
        sents = [natural_sentence(rng, "en") for _ in range(rng.randint(6, 12))]
        planted = []
        for k in rng.sample(range(len(shared)), rng.randint(1, 2)):
            edit = k in seen and rng.random() < 0.25
            planted.append((k, edit, boilerplate_variant(rng, shared[k], edit)))
        for _, _, s in planted:
            sents.insert(rng.randrange(len(sents) + 1), s)
        d = b.add("\n".join(sents), "boilerplate")
        for k, edit, s in planted:
            b.fact("boilerplate", d, "repeat" if k in seen else "first", value=float(edit), text=s)
            seen.add(k)
    docs = pa.Table.from_pylist(b.docs, schema=DOC_SCHEMA)
    return docs, pa.Table.from_pylist(b.truth, schema=TRUTH_SCHEMA)


def seed_corpus(rng: random.Random, n: int, kind: str = "natural", lang: str = "en") -> list[str]:
    """Trusted seed texts (not in any crawl): ``natural`` pages of ``lang`` or ``math`` pages."""
    return [math_page(rng) if kind == "math" else natural_page(rng, lang) for _ in range(n)]
